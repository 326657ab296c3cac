"""Files API v1 against a real `filedock serve`: curl, raw sockets, killed clients, sendfile."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import LiveServer, start_server
from tests.hostile import HOSTILE_URL_PATHS, SENTINEL
from tests.wire import raw, status_of

API = "/api/v1"


def curl(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["curl", "-sS", *args], check=True, capture_output=True, text=True, cwd=cwd, timeout=60
    ).stdout


def leftovers(store_dir: Path) -> tuple[list[str], list[str]]:
    """(objects, staging files) in the store."""
    found = []
    for dirpath, dirnames, filenames in os.walk(store_dir):
        dirnames[:] = [d for d in dirnames if d != ".filedock"]
        found += [os.path.relpath(os.path.join(dirpath, f), store_dir) for f in filenames]
    return sorted(found), os.listdir(store_dir / ".filedock" / "staging")


def wait_for_nothing_left(store_dir: Path, timeout: float = 30) -> tuple[list[str], list[str]]:
    deadline = time.monotonic() + timeout
    state = leftovers(store_dir)
    while state != ([], []) and time.monotonic() < deadline:
        time.sleep(0.1)
        state = leftovers(store_dir)
    return state


def test_curl_upload_and_resumed_download(
    live_server: LiveServer, store_dir: Path, tmp_path: Path
) -> None:
    data = os.urandom(3 << 20)
    local = tmp_path / "upload.bin"
    local.write_bytes(data)
    url = f"{live_server.url}{API}/files/big/upload.bin"
    out = curl("-T", str(local), "-w", "\n%{http_code}", url)
    body, code = out.rsplit("\n", 1)
    assert code == "201", body + "\n" + "".join(live_server.output[-40:])
    assert hashlib.sha256(data).hexdigest() in body
    assert (store_dir / "big" / "upload.bin").read_bytes() == data

    partial = tmp_path / "download.bin"
    partial.write_bytes(data[: 1 << 20])  # an interrupted download
    code = curl("-C", "-", "-o", str(partial), "-w", "%{http_code}", url)
    assert code == "206"
    assert partial.read_bytes() == data


def test_chunked_upload_with_curl(live_server: LiveServer, store_dir: Path) -> None:
    data = os.urandom(1 << 20)
    result = subprocess.run(
        ["curl", "-sS", "-T", "-", "-H", "Transfer-Encoding: chunked", "-w", "%{http_code}",
         "-o", "/dev/null", f"{live_server.url}{API}/files/chunked.bin"],
        input=data, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    assert result.stdout == b"201"
    assert (store_dir / "chunked.bin").read_bytes() == data


def test_chunked_upload_past_the_limit_is_stopped(store_dir: Path) -> None:
    server = start_server(
        "--store", str(store_dir), "--port", "0", env={"FILEDOCK_MAX_UPLOAD_BYTES": "1048576"}
    )
    try:
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
            sock.sendall(
                f"PUT {API}/files/huge.bin HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"%x\r\n" % (256 << 10) + b"x" * (256 << 10) + b"\r\n"
            sent = 0
            answer = b""
            try:
                while sent < (64 << 20) and not answer:
                    sock.sendall(chunk)
                    sent += 256 << 10
                    sock.settimeout(0.001)
                    try:
                        answer = sock.recv(65536)
                    except TimeoutError:
                        pass
                    sock.settimeout(20)
            except (BrokenPipeError, ConnectionResetError):
                pass
            sock.settimeout(20)
            while b"}" not in answer:  # the rest of the problem+json body
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        assert status_of(answer) == 413
        assert b"too-large" in answer
        assert sent < (64 << 20)  # answered long before the client was done
        assert wait_for_nothing_left(store_dir) == ([], [])
    finally:
        assert server.stop() == 0


def half_upload(url: str) -> socket.socket:
    """Start a 20 MiB upload and send only half of it."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
    head = f"PUT {API}/files/half.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {20 << 20}\r\n\r\n"
    sock.sendall(head.encode())
    sock.sendall(b"h" * (10 << 20))
    return sock


def test_client_that_disconnects_mid_upload_leaves_nothing(
    live_server: LiveServer, store_dir: Path
) -> None:
    sock = half_upload(live_server.url)
    sock.close()
    assert wait_for_nothing_left(store_dir) == ([], [])
    assert requests.get(f"{live_server.url}{API}/files/half.bin", timeout=10).status_code == 404
    assert requests.get(f"{live_server.url}/healthz", timeout=10).status_code == 200


KILLED_CLIENT = """
import socket, sys, time
sock = socket.create_connection(("{host}", {port}))
sock.sendall(b"PUT /api/v1/files/killed.bin HTTP/1.1\\r\\nHost: x\\r\\n")
sock.sendall(b"Content-Length: 20971520\\r\\n\\r\\n")
sock.sendall(b"k" * (10 << 20))
print("sent", flush=True)
time.sleep(60)
"""


def test_killed_client_mid_upload_leaves_nothing(live_server: LiveServer, store_dir: Path) -> None:
    parts = urlsplit(live_server.url)
    code = KILLED_CLIENT.format(host=parts.hostname, port=parts.port)
    client = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "sent"
        # the upload is in progress: its staging file exists, no object does
        deadline = time.monotonic() + 20
        while not leftovers(store_dir)[1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leftovers(store_dir)[0] == []
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        if client.stdout is not None:
            client.stdout.close()
    assert wait_for_nothing_left(store_dir) == ([], [])


def test_concurrent_writers_never_mix(live_server: LiveServer, store_dir: Path) -> None:
    url = f"{live_server.url}{API}/files/contended.bin"
    bodies = [bytes([65 + i]) * (2 << 20) for i in range(4)]
    tags = {f'"{hashlib.sha256(b).hexdigest()}"' for b in bodies}
    seen: list[tuple[str, bytes]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(body: bytes) -> None:
        try:
            for _ in range(3):
                assert requests.put(url, data=body, timeout=60).status_code in (200, 201)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        while not stop.is_set():
            response = requests.get(url, timeout=60)
            if response.status_code == 200:
                seen.append((response.headers["ETag"], response.content))

    writers = [threading.Thread(target=write, args=(b,)) for b in bodies]
    reader = threading.Thread(target=read)
    for thread in [*writers, reader]:
        thread.start()
    for thread in writers:
        thread.join(120)
    stop.set()
    reader.join(60)
    assert errors == []
    final = (store_dir / "contended.bin").read_bytes()
    assert final in bodies
    for tag, content in seen:
        assert content in bodies
        assert tag == f'"{hashlib.sha256(content).hexdigest()}"'
        assert tag in tags
    assert leftovers(store_dir) == (["contended.bin"], [])


ENDPOINTS = [("GET", "files"), ("HEAD", "files"), ("PUT", "files"), ("DELETE", "files"),
             ("GET", "meta")]  # fmt: skip


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    """One server for the many hostile-path requests, with a sentinel beside its store."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "sentinel.json").write_text(SENTINEL)
    store = root / "store"
    store.mkdir()
    server = start_server("--store", str(store), "--port", "0")
    yield server, store
    server.stop()


@pytest.mark.parametrize(("method", "area"), ENDPOINTS)
def test_hostile_paths_over_the_wire(
    module_server: tuple[LiveServer, Path], method: str, area: str
) -> None:
    server, store = module_server
    for path in HOSTILE_URL_PATHS:
        body = b'{"secret": "evil"}'
        request = (
            f"{method} {API}/{area}/{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        response = raw(server.url, request)
        status = status_of(response)
        assert 400 <= status < 500, (path, response[:300])
        assert b"secret" not in response.split(b"\r\n\r\n", 1)[1], path
        assert (store.parent / "sentinel.json").read_text() == SENTINEL
        assert leftovers(store) == ([], [])


def test_invalid_utf8_path_is_400_over_the_wire(module_server: tuple[LiveServer, Path]) -> None:
    server, store = module_server
    for method, area in ENDPOINTS:
        request = f"{method} {API}/{area}/bad%FFname HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        response = raw(server.url, (request + "Content-Length: 1\r\n\r\nx").encode())
        assert status_of(response) == 400, (method, response[:300])
        if method != "HEAD":
            assert b'"code":"invalid-path"' in response
            assert b"not valid UTF-8" in response
    assert leftovers(store) == ([], [])


def test_downloads_use_sendfile(store_dir: Path, tmp_path: Path) -> None:
    (store_dir / "big.bin").write_bytes(os.urandom(4 << 20))
    server = start_server("--store", str(store_dir), "--port", "0", "--workers", "1")
    trace = tmp_path / "trace.txt"
    try:
        worker = server.first_worker()
        strace = subprocess.Popen(
            ["strace", "-f", "-e", "trace=sendfile", "-o", str(trace), "-p", str(worker)],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert strace.stderr is not None
            assert "attached" in strace.stderr.readline()
            url = f"{server.url}{API}/files/big.bin"
            whole = requests.get(url, timeout=60)
            part = requests.get(url, headers={"Range": "bytes=1000-2999999"}, timeout=60)
        finally:
            strace.send_signal(signal.SIGINT)
            strace.wait(20)
            if strace.stderr is not None:
                strace.stderr.close()
        assert whole.content == (store_dir / "big.bin").read_bytes()
        assert part.status_code == 206
        assert part.content == whole.content[1000:3000000]
        calls = [line for line in trace.read_text().splitlines() if "sendfile(" in line]
        assert calls, trace.read_text()
        sent = sum(int(line.rsplit("=", 1)[1]) for line in calls)
        assert sent == len(whole.content) + len(part.content)
        assert any(", [1000] " in line for line in calls)  # the range is sent from its offset
    finally:
        assert server.stop() == 0


def test_curl_is_available() -> None:
    assert shutil.which("curl") and shutil.which("strace")
