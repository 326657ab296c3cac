"""CORS (API.md section 9): configured origins, preflights, exposed headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from filedock.app import create_app
from filedock.auth import hash_token
from filedock.config import Settings, Token

EXPOSED = [
    "ETag", "Location", "Content-Range", "Content-Digest", "Upload-Offset", "Upload-Length",
    "Upload-Expires", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size",
]  # fmt: skip
REQUEST_HEADERS = [
    "Authorization", "Content-Type", "Content-Digest", "If-Match", "If-None-Match", "Range",
    "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Checksum", "Upload-Defer-Length",
    "Tus-Resumable", "X-HTTP-Method-Override",
]  # fmt: skip


@pytest.fixture
def configured(store_dir: Path) -> FlaskClient:
    (store_dir / "doc.json").write_text("{}")
    settings = Settings(
        store=str(store_dir),
        cors_origins=("https://app.example", "https://admin.example"),
        tokens=(Token(hash_token("t"), ("admin",)),),
    )
    return create_app(settings).test_client()


def header_list(value: str | None) -> set[str]:
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


def test_a_configured_origin_is_echoed(configured: FlaskClient) -> None:
    for origin in ("https://app.example", "https://admin.example"):
        response = configured.get(
            "/getJsonFromFile/doc.json", headers={"Origin": origin, "Authorization": "Bearer t"}
        )
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert "Origin" in response.headers.get("Vary", "")
        assert header_list(response.headers.get("Access-Control-Expose-Headers")) >= {
            h.lower() for h in EXPOSED
        }


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://app.example.evil", "http://app.example", "null"]
)
def test_another_origin_gets_no_cors(configured: FlaskClient, origin: str) -> None:
    response = configured.get(
        "/getJsonFromFile/doc.json", headers={"Origin": origin, "Authorization": "Bearer t"}
    )
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = configured.options(
        "/api/v1/presign",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_preflight_allows_the_api_headers(configured: FlaskClient) -> None:
    response = configured.options(
        "/api/v1/presign",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": ", ".join(REQUEST_HEADERS),
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert header_list(response.headers.get("Access-Control-Allow-Headers")) >= {
        h.lower() for h in REQUEST_HEADERS
    }
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Max-Age"] == "600"


def test_default_is_any_origin(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"Origin": "https://anyone.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert header_list(response.headers.get("Access-Control-Expose-Headers")) >= {
        h.lower() for h in EXPOSED
    }


ONE_ORIGIN = ("https://app.example",)
TWO_ORIGINS = ("https://app.example", "https://b.example")


@pytest.mark.parametrize("origins", [ONE_ORIGIN, TWO_ORIGINS])
def test_answers_that_depend_on_the_origin_say_so(
    store_dir: Path, origins: tuple[str, ...]
) -> None:
    # with a list of origins, one URL gets CORS headers for one Origin and none for another:
    # every answer carries Vary: Origin, once, so a cache never hands one to the other
    client = create_app(Settings(store=str(store_dir), cors_origins=origins)).test_client()
    for origin in ("https://app.example", "https://evil.example", None):
        headers = {"Origin": origin} if origin else {}
        for response in (
            client.get("/healthz", headers=headers),
            client.options(
                "/api/v1/presign", headers={**headers, "Access-Control-Request-Method": "POST"}
            ),
        ):
            listed = ",".join(response.headers.getlist("Vary")).split(",")
            vary = [item.strip().lower() for item in listed]
            assert vary.count("origin") == 1, (origin, response.headers)


def test_any_origin_needs_no_vary(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"Origin": "https://anyone.example"})
    assert "origin" not in response.headers.get("Vary", "").lower()
