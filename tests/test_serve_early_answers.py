"""Answers given before the request body has arrived (413 too large, 401 without a token) reach
the client: the server closes gracefully, reading and dropping what the client still sends,
instead of resetting the connection under it (the reset also discards the answer)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import LiveServer, start_server
from tests.servers import create_token
from tests.wire import status_of

LIMIT = 1 << 20  # max_upload_bytes of the server under test
BODY = 8 << 20  # what the clients send: far more than the limit and the socket buffers


@pytest.fixture
def server(store_dir: Path) -> Iterator[LiveServer]:
    live = start_server(
        "--store",
        str(store_dir),
        "--port",
        "0",
        "--workers",
        "1",
        env={"FILEDOCK_MAX_UPLOAD_BYTES": str(LIMIT)},
    )
    yield live
    assert live.stop() == 0


def send_all_then_read(url: str, head: bytes, chunked: bool) -> bytes:
    """Send head and a BODY-byte body whole, reading nothing before (as many HTTP clients
    do); then the whole answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        piece = b"x" * (64 << 10)
        for _ in range(BODY // len(piece)):
            sock.sendall(b"10000\r\n" + piece + b"\r\n" if chunked else piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def problem_of(answer: bytes) -> dict[str, object]:
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_client_that_sends_its_whole_body_receives_the_413(
    server: LiveServer, store_dir: Path, chunked: bool
) -> None:
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % BODY
    head = b"PUT /api/v1/files/big.bin HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n\r\n"
    answer = send_all_then_read(server.url, head, chunked)
    assert status_of(answer) == 413, answer[:300]
    assert problem_of(answer)["code"] == "too-large"
    assert not list(store_dir.glob("big*"))


def test_a_client_without_a_token_that_sends_its_whole_body_receives_the_401(
    tmp_path: Path,
) -> None:
    config = tmp_path / "filedock.toml"
    create_token(config, "read,write")
    live = start_server(
        "--store", str(tmp_path / "store"), "--port", "0", "--workers", "1", "--config", str(config)
    )
    try:
        head = b"PUT /api/v1/files/big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        answer = send_all_then_read(live.url, head % BODY, chunked=False)
    finally:
        assert live.stop() == 0
    assert status_of(answer) == 401, answer[:300]
    assert problem_of(answer)["code"] == "unauthorized"


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_curl_uploading_too_much_prints_the_413(
    server: LiveServer, tmp_path: Path, chunked: bool
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (64 << 20))
    framing = ["-H", "Transfer-Encoding: chunked"] if chunked else ["-H", "Expect:"]
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\\n%{http_code}",
            "-T",
            str(big),
            *framing,
            server.url + "/api/v1/files/big.bin",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr  # not 55/56: a reset connection
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "413"
    assert json.loads(body)["code"] == "too-large"
