"""Operations over HTTP (API.md section 9): X-Request-ID, /metrics, /readyz."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from filedock.app import create_app
from filedock.auth import hash_token
from filedock.config import Settings, Token
from tests.api.test_files import buffered

FILE_RULE = "/api/v1/files/<anypath:key>"
JSON_RULE = "/api/v1/json/<anypath:key>"
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client that reads and closes each response (and the file behind it)."""
    return buffered(app)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape(client: FlaskClient, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def is_generated(request_id: str) -> bool:
    return len(request_id) == 32 and uuid.UUID(hex=request_id).version == 4


# -- X-Request-ID ----------------------------------------------------------------------------


def test_request_id_is_generated_when_absent(client: FlaskClient) -> None:
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5
    assert all(is_generated(request_id) for request_id in ids)


@pytest.mark.parametrize(
    "request_id",
    ["abc-123", "0f3c2a9e-5d1b-4c7a-9e2f-1a2b3c4d5e6f", "a.b_c:d/e+f=g@h~i%s", "x" * 128],
)
def test_sane_request_id_is_echoed(client: FlaskClient, request_id: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["", "has space", "x" * 129, 'quo"te', "back\\slash", "tab\there", "caf\u00e9", "a\x7fb"],
)
def test_insane_request_id_is_replaced(client: FlaskClient, request_id: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": request_id})
    echoed = response.headers["X-Request-ID"]
    assert echoed != request_id and is_generated(echoed)


def test_request_id_on_every_kind_of_response(store_dir: Path) -> None:
    tokens = (Token(hash_token("admin-secret"), ("admin",), name="admin"),)
    tokens += (Token(hash_token("reader-secret"), ("read",), name="reader"),)
    client = buffered(create_app(Settings(store=str(store_dir), tokens=tokens)))
    admin = {"Authorization": "Bearer admin-secret"}
    reader = {"Authorization": "Bearer reader-secret"}
    cases = [
        (client.get("/healthz"), 200),
        (client.get("/no/such/route"), 404),
        (client.delete("/healthz"), 405),
        (client.get("/api/v1/files/x"), 401),
        (client.put("/api/v1/files/x", data=b"x", headers=reader), 403),
        (client.get("/api/v1/files/a//b", headers=admin), 400),  # refused before any hook
        (client.get("/api/v1/files/missing", headers=admin), 404),
        (client.get("/getJsonFromFile/missing.json", headers=admin), 404),
        (client.get("/getJsonFromFile/missing.json"), 401),
        (client.post("/uploadFiles", headers=admin), 400),
        (client.post("/api/v1/uploads", headers=admin), 412),  # no Tus-Resumable
        (client.options("/api/v1/files/x", headers={"Origin": "http://a.example",
                                                    "Access-Control-Request-Method": "PUT"}), 200),
    ]  # fmt: skip
    for response, status in cases:
        assert response.status_code == status, (response.request.path, response.data)
        assert is_generated(response.headers["X-Request-ID"]), response.request.path
    # and a client's own id on a denied request
    response = client.get("/api/v1/files/x", headers={"X-Request-ID": "trace-7"})
    assert response.status_code == 401 and response.headers["X-Request-ID"] == "trace-7"
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]


def test_unhandled_error_log_carries_the_request_id(
    client: FlaskClient, store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The server's state folder replaced by a file: creating the signing key then fails
    # in a way no handler expects.
    client.get("/healthz")
    for item in (store_dir / ".filedock").iterdir():
        subprocess.run(["rm", "-rf", str(item)], check=True)
    (store_dir / ".filedock").rmdir()
    (store_dir / ".filedock").write_text("not a folder")
    with caplog.at_level(logging.ERROR, logger="filedock"):
        response = client.post(
            "/api/v1/presign",
            json={"path": "a%sb", "method": "GET", "expires_in": 60},
            headers={"X-Request-ID": "boom-%s-%d"},
        )
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "boom-%s-%d"
    assert str(store_dir) not in response.get_data(as_text=True)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.request_id == "boom-%s-%d"  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert record.getMessage() == "unhandled error in POST '/api/v1/presign'"


def test_app_warning_carries_the_request_id(
    store_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "filedock.toml"
    config.write_text(f'[[tokens]]\nhash = "{hash_token("a-secret")}"\nscopes = ["read"]\n')
    client = buffered(create_app(Settings.load(str(config), env={}, store=str(store_dir))))
    config.write_text("not = [valid toml %s")  # kept tokens, and a warning saying so
    with caplog.at_level(logging.WARNING, logger="filedock"):
        response = client.get("/api/v1/files", headers={"Authorization": "Bearer a-secret"})
    assert response.status_code == 200
    [record] = [r for r in caplog.records if "keeping the previous tokens" in r.getMessage()]
    assert record.request_id == response.headers["X-Request-ID"]  # type: ignore[attr-defined]


# -- /metrics --------------------------------------------------------------------------------


def test_requests_are_counted_by_url_rule_method_and_status(client: FlaskClient) -> None:
    client.put("/api/v1/files/a/one.txt", data=b"1")
    client.put("/api/v1/files/b/two.txt", data=b"22")
    client.get("/api/v1/files/a/one.txt")
    client.get("/api/v1/files/nothing-here")
    client.get("/no/such/route/%s")
    client.open("/healthz", method="BREW")
    text = scrape(client)
    count = "filedock_requests_total"
    assert value(text, count, route=FILE_RULE, method="PUT", status="201") == 2
    assert value(text, count, route=FILE_RULE, method="GET", status="200") == 1
    assert value(text, count, route=FILE_RULE, method="GET", status="404") == 1
    assert value(text, count, route="unmatched", method="GET", status="404") == 1
    assert value(text, count, route="unmatched", method="other", status="405") == 1
    routes = {dict(labels)["route"] for name, labels in samples(text) if name == count}
    assert not any("one.txt" in route or "such" in route for route in routes)


def test_bytes_sent_and_received(client: FlaskClient) -> None:
    body = bytes(range(256)) * 40
    put = client.put("/api/v1/files/data.bin", data=body)
    full = client.get("/api/v1/files/data.bin")
    part = client.get("/api/v1/files/data.bin", headers={"Range": "bytes=100-199"})
    head = client.head("/api/v1/files/data.bin")
    unchanged = client.get(
        "/api/v1/files/data.bin", headers={"If-None-Match": full.headers["ETag"]}
    )
    assert (full.status_code, part.status_code, head.status_code) == (200, 206, 200)
    assert unchanged.status_code == 304 and len(part.data) == 100
    text = scrape(client)
    sent = len(put.data) + len(full.data) + 100  # HEAD and 304 send no body
    assert value(text, "filedock_sent_bytes_total") == sent
    assert value(text, "filedock_received_bytes_total") == len(body)


def test_bytes_received_counts_what_was_read(store_dir: Path) -> None:
    # A body refused from its declared length before it is read (413) is not counted.
    client = buffered(create_app(Settings(store=str(store_dir), max_upload_bytes=16)))
    client.put("/api/v1/files/small", data=b"0123456789")
    assert client.put("/api/v1/files/big", data=b"x" * 17).status_code == 413
    assert value(scrape(client), "filedock_received_bytes_total") == 10


def test_upload_seconds_histogram(client: FlaskClient) -> None:
    client.put("/api/v1/files/f1", data=b"abc")
    client.post("/api/v1/files", data={"file": [(io.BytesIO(b"a"), "f2.txt")]})
    client.put("/api/v1/json/d.json", data=b"{}", content_type="application/json")
    client.patch(
        "/api/v1/json/d.json", data=b'{"a":1}', content_type="application/merge-patch+json"
    )
    created = client.post(
        "/api/v1/uploads",
        headers={**TUS, "Upload-Length": "3", "Upload-Metadata": "filename "
                 + base64.b64encode(b"t.txt").decode()},
    )  # fmt: skip
    assert created.status_code == 201, created.data
    patched = client.patch(
        created.headers["Location"],
        data=b"abc",
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert patched.status_code == 204, patched.data
    client.get("/api/v1/files/f1")
    text = scrape(client)
    counts = {
        dict(labels)["route"]: sample
        for (name, labels), sample in samples(text).items()
        if name == "filedock_upload_seconds_count"
    }
    assert counts == {
        FILE_RULE: 1,
        "/api/v1/files": 1,
        JSON_RULE: 2,
        "/api/v1/uploads": 1,
        "/api/v1/uploads/<upload_id>": 1,
    }
    assert value(text, "filedock_upload_seconds_bucket", route=JSON_RULE, le="+Inf") == 2
    assert value(text, "filedock_upload_seconds_sum", route=JSON_RULE) > 0


def test_compat_upload_is_timed(client: FlaskClient) -> None:
    response = client.post(
        "/uploadFiles", data={"FILES_LIST": [(io.BytesIO(b"hello"), "a.txt")], "FILE_NAME": "p"}
    )
    assert response.status_code == 200, response.data
    text = scrape(client)
    assert value(text, "filedock_upload_seconds_count", route="/uploadFiles") == 1
    assert value(text, "filedock_received_bytes_total") == response.request.content_length


def test_metrics_need_an_admin_token_when_tokens_are_configured(store_dir: Path) -> None:
    tokens = (
        Token(hash_token("admin-secret"), ("admin",), name="admin"),
        Token(hash_token("reader-secret"), ("read", "write"), name="reader"),
        Token(hash_token("team-secret"), ("admin",), "team-a", "team"),
    )
    client = buffered(create_app(Settings(store=str(store_dir), tokens=tokens)))
    assert client.get("/metrics").status_code == 401
    assert (
        client.get("/metrics", headers={"Authorization": "Bearer reader-secret"}).status_code == 403
    )
    # an admin limited to a prefix does not see counts about the whole store
    assert (
        client.get("/metrics", headers={"Authorization": "Bearer team-secret"}).status_code == 403
    )
    text = scrape(client, Authorization="Bearer admin-secret")
    assert value(text, "filedock_requests_total", route="/metrics", method="GET", status="403") == 2


def test_metrics_are_open_without_tokens(client: FlaskClient) -> None:
    assert "filedock_requests_total" in scrape(client)


def test_each_app_counts_its_own_requests(store_dir: Path) -> None:
    first = buffered(create_app(Settings(store=str(store_dir))))
    second = buffered(create_app(Settings(store=str(store_dir))))
    first.get("/healthz")
    first.get("/healthz")
    second.get("/healthz")
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    assert value(scrape(first), "filedock_requests_total", **labels) == 2
    assert value(scrape(second), "filedock_requests_total", **labels) == 1


# -- /readyz ---------------------------------------------------------------------------------


@pytest.fixture
def read_only_state(app: Flask, store_dir: Path) -> Iterator[Path]:
    """The store's state folder on a read-only file system (a tmpfs mounted ro over it):
    chmod would not stop root, which the tests run as."""
    state = store_dir / ".filedock"
    state.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", str(state)], check=True)


def test_readyz_is_200_when_the_store_is_writable(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json == {"status": "ready"}


def test_readyz_is_503_when_the_store_is_not_writable(
    client: FlaskClient, read_only_state: Path
) -> None:
    with pytest.raises(OSError):
        (read_only_state / "probe").write_text("x")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body is not None and body["status"] == 503 and body["code"] == "not-ready"
    assert str(read_only_state) not in json.dumps(body)
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_metric_families_and_types(client: FlaskClient) -> None:
    types = {family.name: family.type for family in text_string_to_metric_families(scrape(client))}
    assert types["filedock_requests"] == "counter"
    assert types["filedock_received_bytes"] == "counter"
    assert types["filedock_sent_bytes"] == "counter"
    assert types["filedock_upload_seconds"] == "histogram"


def test_no_content_answers_have_no_content_type(client: FlaskClient) -> None:
    """A 204 has no content, so it names no media type (Flask's default was text/html)."""
    tus = {"Tus-Resumable": "1.0.0"}
    assert client.put("/api/v1/files/gone.txt", data=b"x").status_code == 201
    created = client.post(
        "/api/v1/uploads", headers=tus | {"Upload-Length": "1", "Upload-Metadata": "filename eA=="}
    )
    assert created.status_code == 201
    answers = [
        client.delete("/api/v1/files/gone.txt"),
        client.options("/api/v1/uploads", headers=tus),
        client.patch(
            created.headers["Location"],
            data=b"x",
            headers=tus | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 204, answer.data
        assert "Content-Type" not in answer.headers
        assert answer.data == b""
