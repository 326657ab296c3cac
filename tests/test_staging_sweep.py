"""A writer that dies mid-upload (kill -9, a crash) leaves its staging file behind; the next
process to open the store removes it, and never a file another live server is still writing."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.conftest import LiveServer, start_server, wait_for
from tests.wire import status_of

LENGTH = 1 << 20
# Whole reads of the server's body reader (256 KiB), so the staging files reach these sizes.
ALIVE_SENT, DYING_SENT = 256 << 10, 512 << 10


def begin_upload(live: LiveServer, name: str, first: bytes) -> socket.socket:
    parts = urlsplit(live.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(
        f"PUT /api/v1/files/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {LENGTH}\r\n"
        "Connection: close\r\n\r\n".encode()
        + first
    )
    return sock


def staging_sizes(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (store / ".filedock" / "staging").glob("*.part")}


def worker_pids(live: LiveServer) -> list[int]:
    booted = re.compile(r"Booting worker with pid: (\d+)")
    return [int(m) for line in list(live.output) for m in booted.findall(line)]


def test_a_killed_writer_leaves_no_staging_file_and_spares_live_ones(store_dir: Path) -> None:
    keeps = start_server("--store", str(store_dir), "--port", "0", "--workers", "1")
    dies = start_server("--store", str(store_dir), "--port", "0", "--workers", "1")
    alive_body, dying_body = os.urandom(LENGTH), os.urandom(LENGTH)
    alive = begin_upload(keeps, "kept.bin", alive_body[:ALIVE_SENT])
    dying = begin_upload(dies, "lost.bin", dying_body[:DYING_SENT])
    try:
        wait_for(lambda: sorted(staging_sizes(store_dir).values()) == [ALIVE_SENT, DYING_SENT])
        [alive_part] = [n for n, size in staging_sizes(store_dir).items() if size == ALIVE_SENT]

        [worker] = worker_pids(dies)
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(dies)) == 2, timeout=30)  # its replacement booted
        wait_for(lambda: list(staging_sizes(store_dir)) == [alive_part])
        dying.close()

        # The live upload was not touched: it finishes and is stored whole.
        alive.sendall(alive_body[ALIVE_SENT:])
        answer = b""
        while chunk := alive.recv(65536):
            answer += chunk
        alive.close()
        assert status_of(answer) == 201, answer[:300]
        assert (store_dir / "kept.bin").read_bytes() == alive_body
        assert not (store_dir / "lost.bin").exists()
        assert staging_sizes(store_dir) == {}
        # The dead worker's owner record went with its files; the live servers keep theirs.
        records = list((store_dir / ".filedock" / "owners").iterdir())
        assert len(records) == 1 and records[0].suffix == ".lock"
    finally:
        alive.close()
        dying.close()
        codes = [keeps.stop(), dies.stop()]
    assert codes == [0, 0]


def test_old_staging_files_of_no_known_writer_are_removed_at_start(store_dir: Path) -> None:
    staging = store_dir / ".filedock" / "staging"
    staging.mkdir(parents=True)
    old, young = staging / "0123abcd.part", staging / "4567abcd.part"
    old.write_bytes(b"left by a crash an hour ago")
    young.write_bytes(b"a writer may be naming its owner record right now")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    live = start_server("--store", str(store_dir), "--port", "0", "--workers", "1")
    try:
        assert not old.exists()
        assert young.exists()
        put = requests.put(live.url + "/api/v1/files/a.txt", data=b"still works", timeout=10)
        assert put.status_code == 201
    finally:
        assert live.stop() == 0


def test_a_read_only_store_with_leftovers_is_served(store_dir: Path, tmp_path: Path) -> None:
    """An old store, mounted read-only: its leftovers cannot be swept, and need not be."""
    (store_dir / "a.txt").write_text("hello")
    state = store_dir / ".filedock"
    for name in ("staging", "meta", "locks", "state"):
        (state / name).mkdir(parents=True)
    old = state / "staging" / "0123abcd.part"
    old.write_bytes(b"left by a crash")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    mounted = tmp_path / "read-only"
    mounted.mkdir()
    subprocess.run(["mount", "--bind", str(store_dir), str(mounted)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True)
        live = start_server("--store", str(mounted), "--port", "0", "--read-only")
        try:
            got = requests.get(live.url + "/api/v1/files/a.txt", timeout=10)
            assert got.status_code == 200 and got.text == "hello"
            put = requests.put(live.url + "/api/v1/files/b.txt", data=b"no", timeout=10)
            assert put.status_code == 403 and put.json()["code"] == "read-only"
        finally:
            assert live.stop() == 0
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    assert old.exists()
