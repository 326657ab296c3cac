"""tus uploads obey tokens: creating and continuing an upload need write on its target."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from filedock.app import create_app
from filedock.config import Settings
from tests.api.test_access import TOKENS, bearer

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def app(store_dir: Path) -> Flask:
    return create_app(Settings(store=str(store_dir), tokens=tuple(TOKENS.values())))


def metadata(path: str) -> str:
    return "path " + base64.b64encode(path.encode()).decode()


def create(client: FlaskClient, path: str, who: str | None, length: int = 4) -> object:
    headers = TUS | {"Upload-Length": str(length), "Upload-Metadata": metadata(path)}
    if who:
        headers |= bearer(who)
    return client.post("/api/v1/uploads", headers=headers)


def test_creation_needs_a_token(client: FlaskClient) -> None:
    response = create(client, "x.bin", None)
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert response.headers["WWW-Authenticate"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("who", "path", "status"),
    [
        ("reader", "x.bin", 403),
        ("writer", "x.bin", 201),
        ("admin", "x.bin", 201),
        ("team-a", "team-a/x.bin", 201),
        ("team-a", "team-ab/x.bin", 403),
        ("team-a", "x.bin", 403),
    ],
)
def test_creation_needs_write_on_the_target(
    client: FlaskClient, who: str, path: str, status: int
) -> None:
    assert create(client, path, who).status_code == status  # type: ignore[attr-defined]


def test_continuation_needs_write_on_the_target(client: FlaskClient, store_dir: Path) -> None:
    url = create(client, "team-a/up.bin", "team-a").headers["Location"]  # type: ignore[attr-defined]
    chunk = TUS | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    assert client.head(url, headers=TUS).status_code == 401
    assert client.head(url, headers=TUS | bearer("reader")).status_code == 403
    assert client.patch(url, data=b"data", headers=chunk).status_code == 401
    assert client.patch(url, data=b"data", headers=chunk | bearer("reader")).status_code == 403
    assert client.delete(url, headers=TUS | bearer("reader")).status_code == 403
    assert not (store_dir / "team-a" / "up.bin").exists()
    assert client.head(url, headers=TUS | bearer("team-a")).headers["Upload-Offset"] == "0"
    assert client.patch(url, data=b"data", headers=chunk | bearer("team-a")).status_code == 204
    assert (store_dir / "team-a" / "up.bin").read_bytes() == b"data"


def test_method_override_cannot_reach_delete_with_a_read_token(client: FlaskClient) -> None:
    created = create(client, "o.bin", "writer")
    url = created.headers["Location"]  # type: ignore[attr-defined]
    headers = TUS | {"X-HTTP-Method-Override": "DELETE"} | bearer("reader")
    assert client.post(url, headers=headers).status_code == 403
    assert client.head(url, headers=TUS | bearer("writer")).status_code == 200
