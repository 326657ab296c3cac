"""Unfinished tus uploads are bounded per client (API.md section 7), on a real server with
two workers: the count is kept in the store, whichever worker answers."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import LiveServer, start_server
from tests.servers import create_token

TUS = {"Tus-Resumable": "1.0.0"}
LIMITS = {"FILEDOCK_MAX_OPEN_UPLOADS": "3", "FILEDOCK_MAX_OPEN_UPLOAD_BYTES": "1000"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem_code(self) -> str:
        assert self.headers["content-type"] == "application/problem+json"
        code: str = json.loads(self.body)["code"]
        return code


def send(
    url: str, method: str, path: str, headers: dict[str, str], body: bytes = b"", source: str = ""
) -> Answer:
    """One request from the loopback address source (another client than 127.0.0.1)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=60, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, path, body=body, headers=TUS | headers)
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def create(url: str, length: int, path: str, source: str = "", token: str = "") -> Answer:
    meta = "path " + base64.b64encode(path.encode()).decode()
    headers = {"Upload-Length": str(length), "Upload-Metadata": meta}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return send(url, "POST", "/api/v1/uploads", headers, source=source)


def records(store: Path) -> int:
    folder = store / ".filedock" / "state" / "uploads"
    return len(list(folder.glob("*.json"))) if folder.exists() else 0


@pytest.fixture
def limited(store_dir: Path) -> Iterator[LiveServer]:
    server = start_server("--store", str(store_dir), "--port", "0", "--workers", "2", env=LIMITS)
    yield server
    server.stop()


def test_open_uploads_are_bounded_per_client_address(limited: LiveServer, store_dir: Path) -> None:
    url = limited.url
    locations = []
    for i in range(3):
        answer = create(url, 100, f"up/{i}.bin")
        assert answer.status == 201, answer.body
        locations.append(urlsplit(answer.headers["location"]).path)
    refused = create(url, 100, "up/3.bin")
    assert refused.status == 403 and refused.problem_code() == "too-many-uploads"
    assert refused.headers["tus-resumable"] == "1.0.0"
    assert records(store_dir) == 3  # the refused one left nothing behind

    # another client (another address) has its own allowance
    assert create(url, 100, "other/0.bin", source="127.0.0.2").status == 201

    # a finished upload frees its place...
    done = send(
        url, "PATCH", locations[0],
        {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        b"x" * 100,
    )  # fmt: skip
    assert done.status == 204, done.body
    assert (store_dir / "up" / "0.bin").read_bytes() == b"x" * 100
    assert create(url, 100, "up/4.bin").status == 201
    assert create(url, 100, "up/5.bin").status == 403

    # ...and so does a terminated one
    assert send(url, "DELETE", locations[1], {}).status == 204
    assert create(url, 100, "up/5.bin").status == 201
    assert create(url, 100, "up/6.bin").status == 403


def test_the_bytes_open_uploads_claim_are_bounded(limited: LiveServer) -> None:
    url = limited.url
    assert create(url, 600, "a.bin").status == 201
    refused = create(url, 401, "b.bin")
    assert refused.status == 403 and refused.problem_code() == "too-many-uploads"
    assert create(url, 400, "b.bin").status == 201  # 1000 in all: at the limit, not past it
    assert create(url, 1, "c.bin").status == 403


def test_open_uploads_are_bounded_per_token(store_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "filedock.toml"
    first, second = create_token(config, "write"), create_token(config, "write")
    server = start_server(
        "--store", str(store_dir), "--port", "0", "--workers", "2", "--config", str(config),
        env=LIMITS,
    )  # fmt: skip
    try:
        url = server.url
        for i in range(3):  # one token, from two addresses: one client
            source = "127.0.0.2" if i % 2 else ""
            assert create(url, 10, f"t/{i}", source=source, token=first).status == 201
        refused = create(url, 10, "t/3", source="127.0.0.3", token=first)
        assert refused.status == 403 and refused.problem_code() == "too-many-uploads"
        assert create(url, 10, "u/0", token=second).status == 201
    finally:
        server.stop()
