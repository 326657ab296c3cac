"""Plain GETs of cached documents are answered by the worker's main loop, without a thread.

One worker with one thread: a client that holds the thread (an upload stalled mid-body, or
a large answer it does not read) shows whether a document GET still needs one. Without the
main loop's answers, each GET below waits for the thread, which client_timeout (60 s here)
frees only long after the test's 10-second timeout."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import LiveServer, start_server, wait_for
from tests.servers import token_server
from tests.wire import body_of, header_of, status_of

DOC = {"ironman": "1", "thor": "3", "name": "ä"}
ANSWERED_WITHIN = 10  # seconds; the thread is held for client_timeout, 60 s
# Larger than the kernel lets a socket's send buffer grow (tcp_wmem's maximum, 4 MiB by
# default) plus the small receive buffer of the client that does not read.
BIG_DOC_BYTES = 12 << 20


@pytest.fixture
def server(store_dir: Path) -> Iterator[LiveServer]:
    (store_dir / "doc.json").write_text(json.dumps(DOC))
    live = start_server(
        "--store", str(store_dir), "--port", "0", "--workers", "1",
        env={"FILEDOCK_THREADS": "1", "FILEDOCK_CLIENT_TIMEOUT": "60"},
    )  # fmt: skip
    yield live
    assert live.stop() == 0


def connect(live: LiveServer, receive_buffer: int = 0) -> socket.socket:
    parts = urlsplit(live.url)
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(ANSWERED_WITHIN)
    sock.connect((parts.hostname, parts.port))
    return sock


_LEFT: dict[int, bytes] = {}  # bytes read past an answer, by socket: the next answer's


def read_answer(sock: socket.socket) -> bytes:
    """The next whole answer from a kept-alive connection (a body has a Content-Length)."""
    data = _LEFT.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the head ended: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    declared = re.search(rb"\r\nContent-Length: (\d+)", head)
    length = int(declared[1]) if declared else 0
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "closed before the body ended"
        body += chunk
    if len(body) > length:
        _LEFT[sock.fileno()] = body[length:]
    return head + b"\r\n\r\n" + body[:length]


def get(path: str, *fields: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def without_date(answer: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*", b"", answer)


def hold_the_thread(live: LiveServer, store_dir: Path) -> socket.socket:
    """Start an upload and stall mid-body: the worker's only thread waits on it. Returns
    once the upload is being written (its staging file exists)."""
    staging = store_dir / ".filedock" / "staging"
    before = set(staging.iterdir())
    sock = connect(live)
    sock.sendall(
        b"PUT /api/v1/files/held.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        + b"x" * 10
    )
    wait_for(lambda: set(staging.iterdir()) - before != set())
    return sock


def test_cached_documents_are_answered_while_the_only_thread_is_held(
    server: LiveServer, store_dir: Path
) -> None:
    paths = ["/api/v1/json/doc.json", "/getJsonFromFile/doc.json"]
    for path in paths:  # the first GET of each reads the document into the cache
        assert requests.get(server.url + path, timeout=ANSWERED_WITHIN).status_code == 200
    with hold_the_thread(server, store_dir) as upload:
        here = {}
        with connect(server) as sock:
            for path in paths:
                sock.sendall(get(path, "X-Request-ID: same-id"))
                here[path] = read_answer(sock)
        assert status_of(here[paths[0]]) == 200
        assert json.loads(body_of(here[paths[0]])) == DOC
        assert json.loads(body_of(here[paths[1]])) == {"STATUS": "true", "LABELS_MAPPING": DOC}
        assert header_of(here[paths[0]], "Connection") == "keep-alive"
        upload.sendall(b"x" * 990)  # the upload ends: the thread is free again
        assert status_of(read_answer(upload)) == 201

    # The same requests, answered by a thread (a field named twice is not a plain GET
    # for the main loop): byte for byte the same answers but for the Date.
    with connect(server) as sock:
        for path in paths:
            sock.sendall(get(path, "X-Request-ID: same-id", "X-Twice: a", "X-Twice: b"))
            assert without_date(read_answer(sock)) == without_date(here[path])


def test_a_kept_alive_connection_is_answered_again_and_pipelined_gets_in_order(
    server: LiveServer,
) -> None:
    path = "/api/v1/json/doc.json"
    assert requests.get(server.url + path, timeout=ANSWERED_WITHIN).status_code == 200
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(get(path))
            assert json.loads(body_of(read_answer(sock))) == DOC
        sock.sendall(get(path, "X-Request-ID: one") + get(path, "X-Request-ID: two"))
        first, second = read_answer(sock), read_answer(sock)
        assert (header_of(first, "X-Request-ID"), header_of(second, "X-Request-ID")) == (
            "one",
            "two",
        )
        sock.sendall(get(path, "Connection: close"))
        last = read_answer(sock)
        assert header_of(last, "Connection") == "close"
        assert sock.recv(1) == b""


def test_what_the_main_loop_does_not_answer_the_app_does(
    server: LiveServer, store_dir: Path
) -> None:
    (store_dir / "bad.json").write_bytes(b"{not json")
    with connect(server) as sock:
        for path, status in [
            ("/api/v1/json/doc.json?pointer=/thor", 200),
            ("/api/v1/json/missing.json", 404),
            ("/api/v1/json/bad.json", 422),
            ("/api/v1/json/../doc.json", 400),
        ]:
            for _ in range(2):  # the second time the document may be cached
                sock.sendall(get(path))
                answer = read_answer(sock)
                assert status_of(answer) == status, (path, answer[:300])
        sock.sendall(get("/api/v1/json/doc.json", "If-None-Match: *"))
        assert status_of(read_answer(sock)) == 304


def test_a_changed_document_is_served_in_its_new_version(
    server: LiveServer, store_dir: Path
) -> None:
    url = server.url + "/api/v1/json/doc.json"
    assert requests.get(url, timeout=ANSWERED_WITHIN).json() == DOC
    assert requests.put(url, json={"v": 2}, timeout=ANSWERED_WITHIN).status_code == 200
    with connect(server) as sock:
        sock.sendall(get("/api/v1/json/doc.json"))
        assert json.loads(body_of(read_answer(sock))) == {"v": 2}


def test_a_large_answer_a_client_does_not_read_holds_neither_the_loop_nor_its_bytes(
    server: LiveServer, store_dir: Path
) -> None:
    wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    assert wmem_max + (1 << 20) < BIG_DOC_BYTES, "the answer would fit in the socket buffer"
    big = json.dumps({"text": "x" * (BIG_DOC_BYTES - 20)}).encode()
    (store_dir / "big.json").write_bytes(big)
    assert requests.get(server.url + "/api/v1/json/big.json", timeout=60).content == big
    assert requests.get(server.url + "/api/v1/json/doc.json", timeout=60).status_code == 200

    with connect(server, receive_buffer=64 << 10) as slow:
        slow.sendall(get("/api/v1/json/big.json"))
        # it reads nothing yet; the rest of its answer waits in the only thread
        with connect(server) as sock:
            for _ in range(3):
                sock.sendall(get("/api/v1/json/doc.json"))
                assert json.loads(body_of(read_answer(sock))) == DOC
        answer = read_answer(slow)
        assert status_of(answer) == 200 and body_of(answer) == big
        slow.sendall(get("/api/v1/json/doc.json"))  # still kept alive
        assert json.loads(body_of(read_answer(slow))) == DOC


def test_a_server_with_tokens_answers_only_who_may_read(tmp_path: Path) -> None:
    with token_server(tmp_path) as live:
        (tmp_path / "store" / "doc.json").write_text(json.dumps(DOC))
        read = f"Authorization: Bearer {live.read_token}"
        with connect(live.server) as sock:
            for fields in [(read,), (read,), (), ("Authorization: Bearer nope",), (read,)]:
                sock.sendall(get("/api/v1/json/doc.json", *fields))
                answer = read_answer(sock)
                assert status_of(answer) == (200 if fields == (read,) else 401), answer[:300]
