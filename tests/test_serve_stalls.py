"""Clients that stall cannot take the server's threads: each read and write of a request is
bounded by `client_timeout`. One worker with two threads, so two stalled clients would
otherwise leave nobody to answer."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import LiveServer, start_server, wait_for
from tests.wire import status_of

TIMEOUT = 2  # client_timeout of the server under test, in seconds
# How long /healthz may take while two clients stall: the timeout plus room for a busy machine.
# Without the timeout it never answers (the stalled clients hold both threads for ever).
ANSWERED_WITHIN = TIMEOUT + 10


@pytest.fixture
def server(store_dir: Path) -> Iterator[LiveServer]:
    live = start_server(
        "--store", str(store_dir), "--port", "0", "--workers", "1",
        # any body rate: these tests are about stalls; the rate has its own test below
        env={"FILEDOCK_THREADS": "2", "FILEDOCK_CLIENT_TIMEOUT": str(TIMEOUT),
             "FILEDOCK_BODY_MIN_RATE": "0"},
    )  # fmt: skip
    yield live
    assert live.stop() == 0


def trickle_until_closed(sock: socket.socket, trickle: bytes, deadline: float) -> bytes:
    """Send trickle a byte every 0.5 s (well within client_timeout) until the server closes
    the connection: what the server sent. Fails if it is still open at deadline."""
    sock.settimeout(0.5)
    answer = b""
    for byte in itertools.cycle(trickle):
        assert time.monotonic() < deadline, "the server never closed the connection"
        try:
            if not answer:
                sock.sendall(bytes([byte]))
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset: closed too
            return answer
        if not data:
            return answer
        answer += data
    raise AssertionError("unreachable")


def connect(live: LiveServer, first_bytes: bytes) -> socket.socket:
    parts = urlsplit(live.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(first_bytes)
    return sock


def answer_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def lines_with(live: LiveServer, text: str) -> list[str]:
    return [line for line in list(live.output) if text in line]


def healthz_seconds(live: LiveServer) -> float:
    started = time.monotonic()
    response = requests.get(live.url + "/healthz", timeout=ANSWERED_WITHIN + 5)
    assert response.status_code == 200
    return time.monotonic() - started


def test_stalled_uploads_are_dropped_and_store_nothing(server: LiveServer, store_dir: Path) -> None:
    stalled = [
        connect(
            server,
            b"PUT /api/v1/files/half%d.bin HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000\r\n\r\nthe first bytes" % i,
        )  # fmt: skip
        for i in range(2)
    ]
    time.sleep(0.5)  # both threads are now waiting for the rest of a body
    assert healthz_seconds(server) < ANSWERED_WITHIN
    for sock in stalled:
        answer = answer_of(sock)
        assert status_of(answer) == 400, answer[:300]
        assert b"stalled" in answer
    assert not list(store_dir.glob("half*"))
    assert not [p for p in (store_dir / ".filedock").rglob("*.part")]


def test_stalled_request_headers_are_dropped(server: LiveServer) -> None:
    stalled = [connect(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(2)]
    time.sleep(0.5)
    assert healthz_seconds(server) < ANSWERED_WITHIN
    for sock in stalled:
        assert answer_of(sock) == b""  # closed: there was no request to answer


def test_a_client_that_never_reads_its_download_is_dropped(
    server: LiveServer, store_dir: Path
) -> None:
    size = 64 << 20
    (store_dir / "big.bin").write_bytes(b"\0" * size)
    parts = urlsplit(server.url)
    stalled = []
    try:
        for _ in range(2):
            sock = socket.socket()
            stalled.append(sock)
            # A small receive window (set before connecting, when it is negotiated): the
            # socket buffers on both sides then hold a few MiB at most, far less than the file.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
            sock.settimeout(30)
            sock.connect((parts.hostname, parts.port))
            sock.sendall(b"GET /api/v1/files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(1, socket.MSG_PEEK)  # its download has begun: a thread sends it
        assert healthz_seconds(server) < ANSWERED_WITHIN
        # Read nothing until the server has given up on both downloads (it logs each then).
        wait_for(lambda: len(lines_with(server, '"GET /api/v1/files/big.bin ')) == 2, 60)
        for sock in stalled:
            received = len(answer_of(sock))  # the connection ends short of the whole file
            assert 0 < received < size
    finally:
        for sock in stalled:
            sock.close()


def test_a_slow_but_steady_upload_is_not_dropped(server: LiveServer, store_dir: Path) -> None:
    body = b"0123456789"
    sock = connect(server, b"PUT /api/v1/files/slow.bin HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 10\r\nConnection: close\r\n\r\n")  # fmt: skip
    for byte in body:  # 10 bytes over 5 s: longer than the timeout, never stalled for it
        time.sleep(0.5)
        sock.sendall(bytes([byte]))
    assert status_of(answer_of(sock)) == 201
    assert (store_dir / "slow.bin").read_bytes() == body


def test_a_head_sent_slowly_but_steadily_is_dropped_after_header_timeout(
    store_dir: Path,
) -> None:
    live = start_server(
        "--store", str(store_dir), "--port", "0", "--workers", "1",
        env={"FILEDOCK_CLIENT_TIMEOUT": str(TIMEOUT), "FILEDOCK_HEADER_TIMEOUT": "3"},
    )  # fmt: skip
    try:
        sock = connect(live, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        with sock:
            started = time.monotonic()
            # A header that never ends: no read ever waits long, the head as a whole does.
            assert trickle_until_closed(sock, b"X-Slow: more", started + 60) == b""
            assert time.monotonic() - started >= 3 - 0.5
    finally:
        assert live.stop() == 0


def test_a_body_slower_than_body_min_rate_is_dropped(store_dir: Path) -> None:
    live = start_server(
        "--store", str(store_dir), "--port", "0", "--workers", "1",
        env={"FILEDOCK_CLIENT_TIMEOUT": str(TIMEOUT), "FILEDOCK_BODY_MIN_RATE": "100"},
    )  # fmt: skip
    try:
        sock = connect(live, b"PUT /api/v1/files/slow.bin HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 100000\r\n\r\n")  # fmt: skip
        with sock:
            # 2 bytes a second: each read waits 0.5 s, never the 2 s of client_timeout
            answer = trickle_until_closed(sock, b"0123456789", time.monotonic() + 60)
        assert status_of(answer) == 400, answer[:300]
        assert b"slower than 100 bytes/s" in answer
        assert not list(store_dir.glob("slow*"))
    finally:
        assert live.stop() == 0


@pytest.mark.parametrize("setting", ["FILEDOCK_HEADER_TIMEOUT=0", "FILEDOCK_BODY_MIN_RATE=-1"])
def test_header_timeout_and_body_min_rate_are_checked(store_dir: Path, setting: str) -> None:
    name, value = setting.split("=")
    with pytest.raises(RuntimeError, match=name[len("FILEDOCK_") :].lower()):
        start_server("--store", str(store_dir), "--port", "0", env={name: value})


def test_client_timeout_must_be_positive(store_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="client_timeout must be at least 1"):
        start_server("--store", str(store_dir), "--port", "0",
                     env={"FILEDOCK_CLIENT_TIMEOUT": "0"})  # fmt: skip
