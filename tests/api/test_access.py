"""Tokens over HTTP (API.md section 8), through Flask's test client."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from filedock import access
from filedock.app import create_app
from filedock.auth import hash_token
from filedock.config import Settings, Token

WWW_AUTHENTICATE = 'Bearer realm="filedock", Basic realm="filedock"'
TOKENS = {
    "admin": Token(hash_token("admin-secret"), ("admin",), name="admin"),
    "reader": Token(hash_token("reader-secret"), ("read",), name="reader"),
    "writer": Token(hash_token("writer-secret"), ("write",), name="writer"),
    "team-a": Token(hash_token("team-a-secret"), ("read", "write"), "team-a", "team-a"),
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-secret"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def app(store_dir: Path) -> Flask:
    (store_dir / "team-a").mkdir()
    (store_dir / "team-a" / "doc.json").write_text('{"team": "a"}')
    (store_dir / "team-ab.json").write_text('{"team": "ab"}')
    (store_dir / "root.json").write_text('{"root": true}')
    return create_app(Settings(store=str(store_dir), tokens=tuple(TOKENS.values())))


def upload(client: FlaskClient, headers: dict[str, str], prefix: str = "", **extra: str) -> object:
    data: dict[str, object] = {"FILES_LIST": (io.BytesIO(b"bytes"), "up.txt"), "FILE_NAME": prefix}
    data.update(extra)
    return client.post("/uploadFiles", data=data, headers=headers)


def assert_unauthorized_problem(response: object) -> None:
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert response.mimetype == "application/problem+json"  # type: ignore[attr-defined]
    assert response.json["code"] == "unauthorized"  # type: ignore[attr-defined]
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE  # type: ignore[attr-defined]


def test_without_a_token_is_401(client: FlaskClient) -> None:
    response = client.get("/getJsonFromFile/root.json")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert response.json["STATUS"] == "false"  # the compat endpoints keep their shape
    response = client.post(
        "/api/v1/presign", json={"path": "root.json", "method": "GET", "expires_in": 60}
    )
    assert_unauthorized_problem(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer " + hash_token("admin-secret")},
        {"Authorization": "Basic"},
        {"Authorization": "Basic %%%"},
        {"Authorization": "Basic " + base64.b64encode(b"admin-secret").decode()},
        {"Authorization": "Basic " + base64.b64encode(b":\xff\xfeadmin").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"admin-secret").decode()[:-1]},
        {"Authorization": "Negotiate abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "a" * 10_000},
    ],
)
def test_unknown_or_malformed_credentials_are_401(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/presign",
        json={"path": "root.json", "method": "GET", "expires_in": 60},
        headers=headers,
    )
    assert_unauthorized_problem(response)
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "headers", [bearer("reader"), basic("", "reader-secret"), basic("anyone", "reader-secret")]
)
def test_bearer_and_basic(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get("/getJsonFromFile/root.json", headers=headers)
    assert response.status_code == 200
    assert response.json == {"STATUS": "true", "LABELS_MAPPING": {"root": True}}


def test_scopes_are_independent(client: FlaskClient, store_dir: Path) -> None:
    assert client.get("/getJsonFromFile/root.json", headers=bearer("writer")).status_code == 403
    response = upload(client, bearer("reader"))
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert response.json["STATUS"] == "false"  # type: ignore[attr-defined]
    assert not (store_dir / "up.txt").exists()
    assert upload(client, bearer("writer")).status_code == 200  # type: ignore[attr-defined]
    assert (store_dir / "up.txt").read_bytes() == b"bytes"
    assert client.get("/getJsonFromFile/up.txt", headers=bearer("admin")).status_code == 422


def test_a_write_only_token_cannot_read_a_document_through_patch(
    client: FlaskClient, store_dir: Path
) -> None:
    # PATCH answers with the whole new document, so it needs read as well as write
    for body, media_type in (
        ("{}", "application/merge-patch+json"),
        ('[{"op": "test", "path": "/root", "value": true}]', "application/json-patch+json"),
    ):
        response = client.patch(
            "/api/v1/json/root.json", data=body, content_type=media_type, headers=bearer("writer")
        )
        assert response.status_code == 403, response.data
        assert response.json["code"] == "forbidden"
        assert b"true" not in response.data
    assert (store_dir / "root.json").read_text() == '{"root": true}'
    response = client.patch(
        "/api/v1/json/root.json",
        data='{"more": 1}',
        content_type="application/merge-patch+json",
        headers=bearer("admin"),
    )
    assert response.status_code == 200
    assert response.json == {"root": True, "more": 1}


def test_prefix_covers_the_folder_and_nothing_beside_it(client: FlaskClient) -> None:
    headers = bearer("team-a")
    assert client.get("/getJsonFromFile/team-a/doc.json", headers=headers).status_code == 200
    assert client.get("/getJsonFromFile/team-a", headers=headers).status_code == 404  # a folder
    for path in ("team-ab.json", "root.json", "team-a/../root.json", "x/team-a/y"):
        response = client.get(f"/getJsonFromFile/{path}", headers=headers)
        assert response.status_code == 403, path
        assert response.json["STATUS"] == "false"
    # an unprefixed token reaches the handler, which refuses the bad path itself
    response = client.get("/getJsonFromFile/team-a/../root.json", headers=bearer("admin"))
    assert response.status_code == 400


def test_upload_files_needs_write_on_each_name(client: FlaskClient, store_dir: Path) -> None:
    # a prefixed token cannot write at the root, where /uploadFiles stores
    response = upload(client, bearer("team-a"), prefix="team-a")
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert response.json == {  # type: ignore[attr-defined]
        "STATUS": "false",
        "error": "this token may not write team-aup.txt",
    }
    assert not (store_dir / "team-aup.txt").exists()
    assert list((store_dir / ".filedock").rglob("staging/*")) == []


def test_method_override_cannot_widen_a_token(client: FlaskClient) -> None:
    for method in ("DELETE", "PATCH", "PUT", "POST"):
        response = client.get(
            "/getJsonFromFile/root.json",
            headers={**bearer("reader"), "X-HTTP-Method-Override": method},
        )
        assert response.status_code == 403, method
    # a write-only token cannot read by overriding a POST to GET or HEAD either
    for method in ("GET", "HEAD"):
        response = client.post(
            "/api/v1/presign",
            json={"path": "root.json", "method": "GET", "expires_in": 60},
            headers={**bearer("writer"), "X-HTTP-Method-Override": method},
        )
        assert response.status_code == 403, method
    response = client.options(
        "/getJsonFromFile/root.json", headers={"X-HTTP-Method-Override": "DELETE"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_public_endpoints(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_preflight_needs_no_token(client: FlaskClient) -> None:
    response = client.options(
        "/api/v1/presign",
        headers={
            "Origin": "https://app.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_errors_on_denied_requests_carry_cors(client: FlaskClient) -> None:
    response = client.get("/getJsonFromFile/root.json", headers={"Origin": "https://app.test"})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_unknown_route_is_404(client: FlaskClient) -> None:
    assert client.get("/no/such/route").status_code == 404


def test_open_without_tokens(store_dir: Path) -> None:
    (store_dir / "root.json").write_text("{}")
    client = create_app(Settings(store=str(store_dir))).test_client()
    assert client.get("/getJsonFromFile/root.json").status_code == 200
    # a header is ignored rather than refused on an open server
    response = client.get("/getJsonFromFile/root.json", headers={"Authorization": "Bearer x"})
    assert response.status_code == 200


def test_require_and_allowed_for_other_endpoints(app: Flask) -> None:
    with app.test_request_context("/", headers=bearer("team-a")):
        access.check_request()
        assert access.allowed("read", "team-a/x") and access.allowed("write", "team-a")
        assert not access.allowed("read", "team-ab") and not access.allowed("read", None)
        access.require("write", "team-a/y")
        with pytest.raises(access.AccessDenied) as info:
            access.require("read", "root.json")
        assert info.value.status == 403
    with app.test_request_context("/"):  # no credentials: require() is a 401
        with pytest.raises(access.AccessDenied) as info:
            access.require("read", "team-a/x")
        assert info.value.status == 401


def test_revoke_takes_effect_without_restart(store_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "filedock.toml"
    config.write_text(
        f'[[tokens]]\nname = "a"\nhash = "{hash_token("a-secret")}"\nscopes = ["read"]\n'
    )
    (store_dir / "x.json").write_text("{}")
    client = create_app(Settings.load(str(config), env={}, store=str(store_dir))).test_client()
    headers = {"Authorization": "Bearer a-secret"}
    assert client.get("/getJsonFromFile/x.json", headers=headers).status_code == 200
    config.write_text(
        f'[[tokens]]\nname = "b"\nhash = "{hash_token("b-secret")}"\nscopes = ["read"]\n'
        "# revoked a\n"
    )
    assert client.get("/getJsonFromFile/x.json", headers=headers).status_code == 401
    headers = {"Authorization": "Bearer b-secret"}
    assert client.get("/getJsonFromFile/x.json", headers=headers).status_code == 200
    config.write_text("not = [valid toml")  # a broken edit keeps the previous tokens
    assert client.get("/getJsonFromFile/x.json", headers=headers).status_code == 200
    config.write_text("port = 5000\n")  # revoking the last token locks, never opens
    assert client.get("/getJsonFromFile/x.json", headers=headers).status_code == 401
    assert client.get("/getJsonFromFile/x.json").status_code == 401
    assert json.loads(client.get("/healthz").data) == {"status": "ok"}
