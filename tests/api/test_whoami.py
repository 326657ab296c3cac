"""GET /api/v1/whoami (API.md section 8): what the caller may do."""

from __future__ import annotations

import time
from pathlib import Path

import requests
from flask.testing import FlaskClient

from filedock import access
from filedock.app import create_app
from filedock.config import Settings
from tests.api.test_access import TOKENS, WWW_AUTHENTICATE, basic, bearer
from tests.servers import token_server


def test_open_server_is_anonymous_with_every_scope(client: FlaskClient) -> None:
    response = client.get("/api/v1/whoami")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == {
        "anonymous": True,
        "scopes": ["read", "write", "admin"],
        "prefix": None,
        "name": None,
    }


def token_client(store_dir: Path) -> FlaskClient:
    return create_app(Settings(store=str(store_dir), tokens=tuple(TOKENS.values()))).test_client()


def test_each_token_sees_its_own_scopes_and_prefix(store_dir: Path) -> None:
    client = token_client(store_dir)
    expected = {
        "admin": (["read", "write", "admin"], None),
        "reader": (["read"], None),
        "writer": (["write"], None),
        "team-a": (["read", "write"], "team-a"),
    }
    for name, (scopes, prefix) in expected.items():
        response = client.get("/api/v1/whoami", headers=bearer(name))
        assert response.status_code == 200, name
        assert response.json == {
            "anonymous": False,
            "scopes": scopes,
            "prefix": prefix,
            "name": name,
        }


def test_basic_auth_with_the_token_as_password(store_dir: Path) -> None:
    response = token_client(store_dir).get("/api/v1/whoami", headers=basic("", "reader-secret"))
    assert response.status_code == 200
    assert response.json["name"] == "reader"


def test_missing_or_unknown_token_is_401(store_dir: Path) -> None:
    client = token_client(store_dir)
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = client.get("/api/v1/whoami", headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.json["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE


def test_a_signed_link_is_not_a_token(store_dir: Path) -> None:
    client = token_client(store_dir)
    app = client.application
    with app.test_request_context("/"):
        url = access.presign_url("GET", "api/v1/whoami", int(time.time()) + 60)
    query = url.partition("?")[2]
    response = client.get("/api/v1/whoami?" + query)
    assert response.status_code == 403
    assert response.json["code"] == "forbidden"


def test_whoami_is_in_the_openapi_document(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").json
    operation = document["paths"]["/api/v1/whoami"]["get"]
    reference = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][reference.rpartition("/")[2]]
    assert schema["required"] == ["anonymous", "scopes", "prefix", "name"]
    assert "401" in operation["responses"]


def test_over_the_wire_with_tokens_from_the_config_file(tmp_path: Path) -> None:
    with token_server(tmp_path) as live:
        url = live.url + "/api/v1/whoami"
        headers = {"Authorization": f"Bearer {live.read_token}"}
        response = requests.get(url, headers=headers, timeout=30)
        assert response.status_code == 200
        assert response.json() == {
            "anonymous": False,
            "scopes": ["read"],
            "prefix": None,
            "name": "token-2",
        }
        assert requests.get(url, timeout=30).status_code == 401
