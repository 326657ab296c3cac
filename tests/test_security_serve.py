"""Auth, signed links and --read-only on a real `filedock serve`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import requests

from filedock.auth import hash_token
from tests.conftest import start_server

TOKEN = "serve-test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def write_config(path: Path, extra: str = "") -> Path:
    path.write_text(
        extra + f'[[tokens]]\nname = "admin"\nhash = "{hash_token(TOKEN)}"\nscopes = ["admin"]\n'
    )
    return path


def test_a_signed_link_survives_a_restart(store_dir: Path, tmp_path: Path) -> None:
    (store_dir / "doc.json").write_text('{"kept": true}')
    config = write_config(tmp_path / "filedock.toml")
    args = ("--config", str(config), "--store", str(store_dir), "--port", "0")
    server = start_server(*args)
    try:
        response = requests.post(
            server.url + "/api/v1/presign",
            json={"path": "doc.json", "method": "GET", "expires_in": 600},
            headers=AUTH,
            timeout=30,
        )
        assert response.status_code == 200
        query = response.json()["url"].split("?", 1)[1]
    finally:
        assert server.stop() == 0
    server = start_server(*args)
    try:
        response = requests.get(f"{server.url}/getJsonFromFile/doc.json?{query}", timeout=30)
        assert response.status_code == 200
        assert response.json()["LABELS_MAPPING"] == {"kept": True}
        forged = query.replace("expires=", "expires=1")
        response = requests.get(f"{server.url}/getJsonFromFile/doc.json?{forged}", timeout=30)
        assert response.status_code == 403
    finally:
        assert server.stop() == 0


WRITES = [
    ("PUT", "/api/v1/files/a.txt", {}),
    ("POST", "/api/v1/files", {}),
    ("DELETE", "/api/v1/files/doc.json", {}),
    ("PATCH", "/api/v1/json/doc.json", {"Content-Type": "application/merge-patch+json"}),
    ("PUT", "/api/v1/json/doc.json", {"Content-Type": "application/json"}),
    ("POST", "/api/v1/uploads", {"Tus-Resumable": "1.0.0", "Upload-Length": "1"}),
    ("PATCH", "/api/v1/uploads/abc", {"Tus-Resumable": "1.0.0"}),
    ("DELETE", "/api/v1/uploads/abc", {"Tus-Resumable": "1.0.0"}),
    ("POST", "/api/v1/uploads/abc", {"X-HTTP-Method-Override": "PATCH"}),
]


@pytest.mark.parametrize("with_token", [False, True])
def test_read_only_answers_every_write_with_403(
    store_dir: Path, tmp_path: Path, with_token: bool
) -> None:
    (store_dir / "doc.json").write_text('{"v": 1}')
    args = ["--store", str(store_dir), "--port", "0", "--read-only"]
    headers = {}
    if with_token:
        args += ["--config", str(write_config(tmp_path / "filedock.toml"))]
        headers = AUTH
    server = start_server(*args)
    try:
        for method, path, extra in WRITES:
            response = requests.request(
                method, server.url + path, data=b"{}", headers={**headers, **extra}, timeout=30
            )
            assert response.status_code == 403, (method, path)
            assert response.headers["Content-Type"] == "application/problem+json"
            assert response.json()["code"] == "read-only"
        response = requests.post(
            server.url + "/uploadFiles",
            files={"FILES_LIST": ("x.txt", io.BytesIO(b"x"))},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 403
        assert response.json() == {"STATUS": "false", "error": "the server is read-only"}
        response = requests.get(
            server.url + "/getJsonFromFile/doc.json",
            headers={**headers, "X-HTTP-Method-Override": "DELETE"},
            timeout=30,
        )
        assert response.status_code == 403
        assert response.json() == {"STATUS": "false", "error": "the server is read-only"}
        response = requests.post(
            server.url + "/api/v1/presign",
            json={"path": "doc.json", "method": "PUT", "expires_in": 60},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 403 and response.json()["code"] == "read-only"
        response = requests.get(
            server.url + "/getJsonFromFile/doc.json", headers=headers, timeout=30
        )
        assert response.status_code == 200  # reads still work
        assert sorted(p.name for p in store_dir.iterdir()) == [".filedock", "doc.json"]
        assert (store_dir / "doc.json").read_text() == '{"v": 1}'
    finally:
        assert server.stop() == 0
