"""The files API obeys tokens: scopes, prefixes, filtered listings and signed links."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from filedock.app import create_app
from filedock.auth import hash_token
from filedock.config import Settings, Token
from tests.api.test_access import TOKENS, bearer

DROPBOX = Token(hash_token("dropbox-secret"), ("write",), "inbox", "dropbox")


@pytest.fixture
def app(store_dir: Path) -> Flask:
    for path in ("team-a/one.txt", "team-a/sub/two.txt", "team-ab/three.txt", "root.txt"):
        (store_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (store_dir / path).write_text(path)
    return create_app(Settings(store=str(store_dir), tokens=(*TOKENS.values(), DROPBOX)))


def listed(client: FlaskClient, who: str, prefix: str = "") -> list[str]:
    response = client.get(f"/api/v1/files?prefix={prefix}", headers=bearer(who))
    assert response.status_code == 200
    return [item["path"] for item in response.json["items"]]


def test_listing_needs_a_token(client: FlaskClient) -> None:
    assert client.get("/api/v1/files").status_code == 401


def test_listing_shows_only_what_the_token_may_read(client: FlaskClient) -> None:
    everything = ["root.txt", "team-a/one.txt", "team-a/sub/two.txt", "team-ab/three.txt"]
    assert listed(client, "admin") == everything
    assert listed(client, "reader") == everything
    assert listed(client, "team-a") == ["team-a/one.txt", "team-a/sub/two.txt"]
    assert listed(client, "team-a", "team") == ["team-a/one.txt", "team-a/sub/two.txt"]
    assert client.get("/api/v1/files", headers=bearer("writer")).status_code == 403


def status(client: FlaskClient, method: str, url: str, who: str, body: bytes = b"") -> int:
    with client.open(url, method=method, data=body, headers=bearer(who)) as response:
        return response.status_code


def test_prefix_covers_its_folder_not_its_siblings(client: FlaskClient) -> None:
    with client.get("/api/v1/files/team-a/one.txt", headers=bearer("team-a")) as response:
        assert response.status_code == 200
    assert status(client, "GET", "/api/v1/files/team-ab/three.txt", "team-a") == 403
    assert status(client, "PUT", "/api/v1/files/team-ab/new.txt", "team-a", b"x") == 403
    assert status(client, "PUT", "/api/v1/files/team-a/new.txt", "team-a", b"x") == 201


def test_write_only_token_is_a_drop_box(client: FlaskClient, store_dir: Path) -> None:
    assert status(client, "PUT", "/api/v1/files/inbox/report.csv", "dropbox", b"a,b") == 201
    assert status(client, "GET", "/api/v1/files/inbox/report.csv", "dropbox") == 403
    assert status(client, "GET", "/api/v1/meta/inbox/report.csv", "dropbox") == 403
    assert status(client, "PUT", "/api/v1/files/other.csv", "dropbox", b"a,b") == 403
    assert (store_dir / "inbox" / "report.csv").read_bytes() == b"a,b"


def test_multipart_checks_each_target(client: FlaskClient, store_dir: Path) -> None:
    response = client.post(
        "/api/v1/files",
        data={"file": (io.BytesIO(b"ok"), "ok.txt"), "dir": "team-a"},
        headers=bearer("team-a"),
    )
    assert response.status_code == 201
    response = client.post(
        "/api/v1/files",
        data={"file": (io.BytesIO(b"no"), "no.txt"), "dir": "team-ab"},
        headers=bearer("team-a"),
    )
    assert response.status_code == 403
    assert response.json["errors"][0]["code"] == "forbidden"
    assert not (store_dir / "team-ab" / "no.txt").exists()
    anonymous = client.post("/api/v1/files", data={"file": (io.BytesIO(b"x"), "x.txt")})
    assert anonymous.status_code == 401
    response = client.post(
        "/api/v1/files", data={"file": (io.BytesIO(b"x"), "x.txt")}, headers=bearer("reader")
    )
    assert response.status_code == 403


def presigned(client: FlaskClient, path: str, method: str) -> str:
    response = client.post(
        "/api/v1/presign",
        json={"path": path, "method": method, "expires_in": 600},
        headers=bearer("admin"),
    )
    assert response.status_code == 200
    return str(response.json["url"])


def test_signed_put_uploads_without_a_token_and_only_there(
    client: FlaskClient, store_dir: Path
) -> None:
    url = presigned(client, "inbox/signed.bin", "PUT")
    assert client.put(url, data=b"signed bytes").status_code == 201
    assert (store_dir / "inbox" / "signed.bin").read_bytes() == b"signed bytes"
    assert client.get(url).status_code == 403  # a PUT link does not read
    other = url.replace("inbox/signed.bin", "inbox/other.bin")
    assert client.put(other, data=b"x").status_code == 403
    assert not (store_dir / "inbox" / "other.bin").exists()


def test_signed_get_downloads_without_a_token(client: FlaskClient) -> None:
    url = presigned(client, "team-a/one.txt", "GET")
    with client.get(url) as response:
        assert response.status_code == 200
        assert response.data == b"team-a/one.txt"
    assert client.delete(url).status_code == 403
    assert client.put(url, data=b"overwrite").status_code == 403
