"""POST /api/v1/presign and the signed links it returns (API.md section 8)."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from filedock import auth
from filedock.app import create_app
from filedock.config import Settings, Token

TOKENS = (
    Token(auth.hash_token("admin-secret"), ("admin",), name="admin"),
    Token(auth.hash_token("reader-secret"), ("read",), name="reader"),
    Token(auth.hash_token("writer-secret"), ("write",), name="writer"),
    Token(auth.hash_token("team-a-secret"), ("read", "write"), "team-a", "team-a"),
)


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-secret"}


@pytest.fixture
def app(store_dir: Path) -> Flask:
    (store_dir / "doc.json").write_text('{"v": 1}')
    (store_dir / "other.json").write_text('{"other": true}')
    return create_app(Settings(store=str(store_dir), tokens=TOKENS))


def presign(
    client: FlaskClient,
    path: str,
    method: str = "GET",
    expires_in: object = 600,
    who: str = "admin",
) -> tuple[str, dict[str, str]]:
    """The link's path and query parameters."""
    response = client.post(
        "/api/v1/presign",
        json={"path": path, "method": method, "expires_in": expires_in},
        headers=bearer(who),
    )
    assert response.status_code == 200, response.json
    assert set(response.json) == {"url", "expires_at"}
    parts = urlsplit(response.json["url"])
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def compat_get(client: FlaskClient, path: str, query: dict[str, str], method: str = "GET") -> int:
    return client.open(f"/getJsonFromFile/{path}?{urlencode(query)}", method=method).status_code


def test_presign_returns_a_relative_files_url(client: FlaskClient) -> None:
    before = int(time.time())
    response = client.post(
        "/api/v1/presign",
        json={"path": "a b/c%d.json", "method": "PUT", "expires_in": 3600},
        headers=bearer("admin"),
    )
    assert response.status_code == 200
    url = urlsplit(response.json["url"])
    assert (url.scheme, url.netloc) == ("", "")
    assert url.path == "/api/v1/files/a%20b/c%25d.json"
    expires = int(parse_qs(url.query)["expires"][0])
    assert before + 3600 <= expires <= int(time.time()) + 3600
    expires_at = response.json["expires_at"]
    assert expires_at.endswith("Z")
    assert datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() == (
        expires
    )


def test_a_link_reads_without_a_token(client: FlaskClient) -> None:
    path, query = presign(client, "doc.json")
    assert path == "/api/v1/files/doc.json"
    response = client.get(f"/getJsonFromFile/doc.json?{urlencode(query)}")
    assert response.status_code == 200
    assert response.json == {"STATUS": "true", "LABELS_MAPPING": {"v": 1}}
    assert compat_get(client, "doc.json", {}) == 401


def test_any_change_to_a_link_is_403(client: FlaskClient) -> None:
    _, query = presign(client, "doc.json")
    assert compat_get(client, "other.json", query) == 403  # another path
    assert compat_get(client, "doc.json", query, method="HEAD") == 403  # another method
    later = {**query, "expires": str(int(query["expires"]) + 1)}
    assert compat_get(client, "doc.json", later) == 403  # another expiry
    forged = {**query, "signature": query["signature"][:-2] + "AA"}
    assert compat_get(client, "doc.json", forged) == 403
    assert compat_get(client, "doc.json", {"signature": query["signature"]}) == 403
    _, put_query = presign(client, "doc.json", method="PUT")
    assert compat_get(client, "doc.json", put_query) == 403  # a PUT link does not read
    response = client.get(f"/getJsonFromFile/doc.json?{urlencode(forged)}")
    assert response.json["STATUS"] == "false"
    assert compat_get(client, "doc.json", query) == 200


def test_a_link_does_not_work_with_an_override(client: FlaskClient) -> None:
    _, query = presign(client, "doc.json")
    response = client.get(
        f"/getJsonFromFile/doc.json?{urlencode(query)}",
        headers={"X-HTTP-Method-Override": "DELETE"},
    )
    assert response.status_code == 403


def test_a_link_is_no_good_on_endpoints_without_one_path(client: FlaskClient) -> None:
    _, query = presign(client, "up.txt", method="PUT")
    response = client.post(
        f"/uploadFiles?{urlencode(query)}",
        data={"FILES_LIST": (io.BytesIO(b"x"), "up.txt")},
    )
    assert response.status_code == 403
    assert response.json["STATUS"] == "false"


def test_an_expired_link_is_403(store_dir: Path) -> None:
    (store_dir / "doc.json").write_text("{}")
    settings = Settings(store=str(store_dir), tokens=TOKENS, secret_key="configured secret")
    client = create_app(settings).test_client()
    key = b"configured secret"
    past, future = int(time.time()) - 1, int(time.time()) + 60
    for expires, status in ((past, 403), (future, 200)):
        query = {"expires": str(expires), "signature": auth.sign(key, "GET", "doc.json", expires)}
        assert compat_get(client, "doc.json", query) == status


def test_the_caller_needs_the_scope_on_the_path(client: FlaskClient) -> None:
    def status(who: str, path: str, method: str) -> int:
        return client.post(
            "/api/v1/presign",
            json={"path": path, "method": method, "expires_in": 60},
            headers=bearer(who),
        ).status_code

    assert status("reader", "doc.json", "GET") == 200
    assert status("reader", "doc.json", "PUT") == 403
    assert status("writer", "doc.json", "PUT") == 200
    assert status("writer", "doc.json", "GET") == 403
    assert status("team-a", "team-a/x.json", "PUT") == 200
    assert status("team-a", "team-ab/x.json", "GET") == 403
    assert status("team-a", "doc.json", "GET") == 403


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"path": "doc.json", "method": "GET", "expires_in": 0}, 400, "bad-request"),
        ({"path": "doc.json", "method": "GET", "expires_in": 604801}, 400, "bad-request"),
        ({"path": "doc.json", "method": "GET", "expires_in": "60"}, 400, "bad-request"),
        ({"path": "doc.json", "method": "GET", "expires_in": 1.5}, 400, "bad-request"),
        ({"path": "doc.json", "method": "GET", "expires_in": True}, 400, "bad-request"),
        ({"path": "doc.json", "method": "DELETE", "expires_in": 60}, 400, "bad-request"),
        ({"path": "doc.json", "method": "get", "expires_in": 60}, 400, "bad-request"),
        ({"method": "GET", "expires_in": 60}, 400, "bad-request"),
        ({"path": ["doc.json"], "method": "GET"}, 400, "bad-request"),
        ({"path": "../sentinel.json", "method": "GET"}, 400, "invalid-path"),
        ({"path": ".filedock/state/presign-key", "method": "GET"}, 400, "invalid-path"),
        ([1, 2], 400, "bad-request"),
    ],
)
def test_bad_requests(client: FlaskClient, body: object, status: int, code: str) -> None:
    response = client.post("/api/v1/presign", json=body, headers=bearer("admin"))
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == code


def test_bad_bodies(client: FlaskClient) -> None:
    def post(data: bytes, content_type: str = "application/json") -> tuple[int, str]:
        response = client.post(
            "/api/v1/presign", data=data, content_type=content_type, headers=bearer("admin")
        )
        return response.status_code, response.json["code"]

    assert post(b"{") == (400, "bad-request")
    assert post(b"[" * 100_000) in ((400, "bad-request"), (413, "too-large"))
    assert post(b'{"path": "' + b"x" * 70_000 + b'"}') == (413, "too-large")
    assert post(b'{"path": "doc.json", "method": "GET"}', "text/plain") == (
        415,
        "unsupported-media-type",
    )


def test_expires_in_defaults_to_an_hour(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/presign", json={"path": "doc.json", "method": "GET"}, headers=bearer("admin")
    )
    expires = int(parse_qs(urlsplit(response.json["url"]).query)["expires"][0])
    assert 3500 < expires - time.time() <= 3600


def test_read_only_server_signs_reads_only(store_dir: Path) -> None:
    (store_dir / "doc.json").write_text("{}")
    client = create_app(Settings(store=str(store_dir), tokens=TOKENS, read_only=True)).test_client()
    _, query = presign(client, "doc.json")
    assert compat_get(client, "doc.json", query) == 200
    response = client.post(
        "/api/v1/presign",
        json={"path": "doc.json", "method": "PUT", "expires_in": 60},
        headers=bearer("admin"),
    )
    assert response.status_code == 403 and response.json["code"] == "read-only"


def test_the_key_is_shared_by_every_app_on_a_store(store_dir: Path) -> None:
    (store_dir / "doc.json").write_text("{}")
    first = create_app(Settings(store=str(store_dir), tokens=TOKENS)).test_client()
    second = create_app(Settings(store=str(store_dir), tokens=TOKENS)).test_client()
    _, query = presign(first, "doc.json")
    _, query_two = presign(second, "doc.json")
    assert compat_get(second, "doc.json", query) == 200
    assert compat_get(first, "doc.json", query_two) == 200
    key = store_dir / ".filedock" / "state" / "presign-key"
    assert len(key.read_bytes()) == 32
    assert list(key.parent.glob("*.tmp")) == []


def test_a_link_follows_its_path_not_its_first_content(
    client: FlaskClient, store_dir: Path
) -> None:
    """A GET link names a path: after delete and replace it serves the new object."""
    _, query = presign(client, "doc.json")
    assert client.get(f"/getJsonFromFile/doc.json?{urlencode(query)}").json["LABELS_MAPPING"] == {
        "v": 1
    }
    (store_dir / "doc.json").unlink()
    assert compat_get(client, "doc.json", query) == 404
    response = client.post(
        "/uploadFiles",
        data={"FILES_LIST": (io.BytesIO(b'{"v": 2}'), "doc.json")},
        headers=bearer("admin"),
    )
    assert response.json["SAVED_FILES"] == ["doc.json"]
    assert client.get(f"/getJsonFromFile/doc.json?{urlencode(query)}").json["LABELS_MAPPING"] == {
        "v": 2
    }
