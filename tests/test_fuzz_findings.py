"""Regression tests, through HTTP, for what fuzzing and the hostile corpus found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask.testing import FlaskClient

from tests.conftest import LiveServer, start_server
from tests.wire import raw


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    root = tmp_path_factory.mktemp("findings")
    store = root / "store"
    store.mkdir()
    live = start_server("--store", str(store), "--port", "0", "--workers", "1")
    yield live, store
    assert live.stop() == 0


def test_a_long_listing_request_line_is_served(server: tuple[LiveServer, Path]) -> None:
    """A 1024-byte prefix, percent-encoded, plus the cursor after a 1024-byte path made a
    request line over gunicorn's default limit (4094 bytes): its HTML 414 instead of a page."""
    live, store = server
    folder = "/".join(["\u00e9" * 127] * 4)  # 4 segments of 254 bytes
    for name in ("a", "b"):
        response = requests.put(f"{live.url}/api/v1/files/{folder}/{name}", data=b"x", timeout=30)
        assert response.status_code == 201, response.text
    params = {"prefix": folder + "/", "limit": "1"}
    first = requests.get(f"{live.url}/api/v1/files", params=params, timeout=30)
    assert first.status_code == 200
    cursor = first.json()["next_cursor"]
    second = requests.get(
        f"{live.url}/api/v1/files", params=params | {"cursor": cursor}, timeout=30
    )
    assert len(second.request.path_url) > 4094
    assert second.status_code == 200, second.text[:300]
    assert [item["path"] for item in second.json()["items"]] == [f"{folder}/b"]


def test_compat_refuses_a_path_that_is_not_utf8(server: tuple[LiveServer, Path]) -> None:
    """The original endpoint let U+FFFD stand in for invalid UTF-8, so `bad%FF` reached an
    object named `bad\ufffd`; the native routes already refused it."""
    live, store = server
    (store / "bad\ufffdname.json").write_text('{"reached": true}')
    request = (
        b"GET /getJsonFromFile/bad%FFname.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    response = raw(live.url, request)
    assert response.startswith(b"HTTP/1.1 400"), response[:300]
    assert b'"STATUS":"false"' in response and b"not valid UTF-8" in response
    assert b"reached" not in response
    ok = raw(live.url, request.replace(b"%FF", b"%EF%BF%BD"))  # U+FFFD itself is a fine name
    assert ok.startswith(b"HTTP/1.1 200") and b'"reached":true' in ok


def test_a_range_of_a_json_object_is_not_described_as_json(client: FlaskClient) -> None:
    """Downloads are raw bytes: the document gave them a schema, so a 206 with the first
    byte of a JSON object was held to be a JSON body."""
    client.put("/api/v1/files/list.json", data=b"[1, 2]", content_type="application/json")
    response = client.get("/api/v1/files/list.json", headers={"Range": "bytes=0-0"}, buffered=True)
    assert (response.status_code, response.data) == (206, b"[")
    document = client.get("/api/v1/openapi.json").json
    download = document["paths"]["/api/v1/files/{path}"]["get"]["responses"]
    assert download["200"]["content"] == {"*/*": {}}
    assert download["206"]["content"] == {"*/*": {}}


def problem_of(response: bytes) -> tuple[int, dict[str, object]]:
    """The status and problem body of a raw answer, which must be application/problem+json."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/problem+json\r\n" in head, response[:300]
    problem = json.loads(body)
    assert problem["status"] == int(head.split(b" ", 2)[1])
    return problem["status"], problem


@pytest.mark.parametrize(
    ("request_bytes", "status", "code", "detail"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "too-large", "line"),
        (b"NONSENSE\r\n\r\n", 400, "bad-request", "NONSENSE"),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "bad-request", "Bad Header"),
        (b"GET / HTTP/9.1\r\nHost: x\r\n\r\n", 400, "bad-request", "HTTP version"),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
            431,
            "too-large",
            "headers",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"y" * 9000 + b"\r\n\r\n",
            431,
            "too-large",
            "header",
        ),  # fmt: skip
    ],
    ids=["long-line", "no-method", "bad-header-name", "bad-version", "many-headers", "long-header"],
)
def test_requests_the_server_refuses_itself_get_a_problem(
    server: tuple[LiveServer, Path], request_bytes: bytes, status: int, code: str, detail: str
) -> None:
    """gunicorn answers these before the app sees them; it answered in HTML."""
    live, _ = server
    answer_status, problem = problem_of(raw(live.url, request_bytes))
    assert (answer_status, problem["code"]) == (status, code)
    assert detail.lower() in str(problem["detail"]).lower()
    assert problem["title"] and problem["type"] == "about:blank"
    # The worker is fine afterwards.
    assert requests.get(live.url + "/healthz", timeout=10).status_code == 200


BAD_CHUNKS = b"5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n"
FORM = "multipart/form-data; boundary=b"


@pytest.mark.parametrize(
    ("method", "target", "content_type"),
    [
        ("PUT", "/api/v1/files/chunky.bin", "application/octet-stream"),
        ("POST", "/api/v1/files", FORM),
        ("PUT", "/api/v1/json/chunky.json", "application/json"),
        ("PATCH", "/api/v1/json/chunky.json", "application/merge-patch+json"),
        ("POST", "/api/v1/presign", "application/json"),
    ],
)
def test_a_malformed_chunked_body_is_a_problem_and_stores_nothing(
    server: tuple[LiveServer, Path], method: str, target: str, content_type: str
) -> None:
    """gunicorn raises its own parse error from the body stream: it was a 500."""
    live, store = server
    before = sorted(p.name for p in store.iterdir())
    request = (
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: {content_type}\r\nConnection: close\r\n\r\n"
    ).encode() + BAD_CHUNKS
    status, problem = problem_of(raw(live.url, request))
    assert status == 400 and problem["code"] == "bad-request", problem
    assert sorted(p.name for p in store.iterdir()) == before
    assert requests.get(live.url + "/healthz", timeout=10).status_code == 200


def test_a_malformed_chunked_body_on_the_original_upload(server: tuple[LiveServer, Path]) -> None:
    live, store = server
    before = sorted(p.name for p in store.iterdir())
    request = (
        b"POST /uploadFiles HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: " + FORM.encode() + b"\r\nConnection: close\r\n\r\n" + BAD_CHUNKS
    )
    response = raw(live.url, request)
    assert response.startswith(b"HTTP/1.1 400"), response[:300]
    assert b'"STATUS":"false"' in response
    assert sorted(p.name for p in store.iterdir()) == before


def test_a_malformed_chunked_tus_patch_keeps_the_offset(server: tuple[LiveServer, Path]) -> None:
    live, _ = server
    tus = {"Tus-Resumable": "1.0.0"}
    created = requests.post(
        live.url + "/api/v1/uploads",
        headers=tus | {"Upload-Length": "10", "Upload-Metadata": "filename Y2h1bmt5LnR4dA=="},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    target = urlsplit(created.headers["Location"]).path
    request = (
        f"PATCH {target} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        "Content-Type: application/offset+octet-stream\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + BAD_CHUNKS
    status, problem = problem_of(raw(live.url, request))
    assert status == 400 and problem["code"] == "bad-request", problem
    head = requests.head(live.url + target, headers=tus, timeout=10)
    assert head.headers["Upload-Offset"] == "0"
