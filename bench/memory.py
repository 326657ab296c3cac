#!/usr/bin/env python3
"""Memory of `filedock serve` while it streams a large file in and out.

Starts a server on a temporary store, PUTs a SIZE file (2 GiB by default) as a raw body with
Content-Length, then GETs it back, sampling the resident memory of the whole server process
tree (master and workers, from /proc) all the while. Prints idle and peak RSS per phase, and
whether downloads went through sendfile(2) (counted with strace, when it is installed).

    python bench/memory.py [--size-mib 2048]

Needs only the standard library and requests; run from the repository (or with filedock
installed)."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


class PatternBody:
    """A body of `size` bytes made on the fly (so the client needs no memory or disk),
    with a length, so requests sends Content-Length rather than chunks."""

    def __init__(self, size: int) -> None:
        self.size, self.sent = size, 0
        self.block = bytes(range(256)) * (MIB // 256)
        self.digest = hashlib.sha256()

    def __len__(self) -> int:
        return self.size - self.sent

    def read(self, n: int = -1) -> bytes:
        n = MIB if n is None or n < 0 else min(n, MIB)
        n = min(n, self.size - self.sent)
        data = self.block[:n]
        self.sent += n
        self.digest.update(data)
        return data


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return found


def rss_kib(pids: list[int]) -> int:
    """Summed VmRSS of the processes, in KiB."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total += int(match.group(1)) if match else 0
    return total


class Sampler(threading.Thread):
    """Samples the RSS of a process tree every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kib(tree(self.pid)))
            time.sleep(0.02)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def start_server(store: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["FILEDOCK_MAX_UPLOAD_BYTES"] = str(64 << 30)
    process = subprocess.Popen(
        [sys.executable, "-m", "filedock", "serve", "--store", str(store), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"filedock: serving .* at (http://\S+?)/?$", line.strip())
        if match:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
            return process, match.group(1)
    raise SystemExit("filedock serve did not start")


def wait_for_workers(pid: int, url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(tree(pid)) > 1 and requests.get(url + "/healthz", timeout=10).ok:
            return
        time.sleep(0.1)
    raise SystemExit("the workers did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    size = parser.parse_args().size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="filedock-bench-") as tmp:
        server, url = start_server(Path(tmp) / "store")
        strace = None
        try:
            wait_for_workers(server.pid, url)
            requests.put(url + "/api/v1/files/warm.txt", data=b"warm", timeout=30)
            requests.get(url + "/api/v1/files/warm.txt", timeout=30)
            time.sleep(0.5)
            idle = rss_kib(tree(server.pid))
            print(f"size                 {size / MIB:.0f} MiB, {len(tree(server.pid))} processes")
            print(f"idle RSS             {idle / 1024:.1f} MiB")

            body = PatternBody(size)
            sampler = Sampler(server.pid)
            sampler.start()
            started = time.monotonic()
            response = requests.put(url + "/api/v1/files/big.bin", data=body, timeout=3600)
            seconds = time.monotonic() - started
            peak = sampler.stop()
            assert response.status_code == 201, response.text
            assert response.json()["sha256"] == body.digest.hexdigest()
            print(f"upload   peak RSS    {peak / 1024:.1f} MiB (+{(peak - idle) / 1024:.1f} MiB), "
                  f"{size / MIB / seconds:.0f} MiB/s")  # fmt: skip

            trace = Path(tmp) / "strace.txt"
            workers = tree(server.pid)[1:]
            if shutil.which("strace"):
                args = ["strace", "-f", "-e", "trace=sendfile", "-o", str(trace)]
                for pid in workers:
                    args += ["-p", str(pid)]
                strace = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
                assert strace.stderr is not None
                for _ in workers:
                    strace.stderr.readline()  # "Process N attached"
            idle = rss_kib(tree(server.pid))
            sampler = Sampler(server.pid)
            sampler.start()
            started = time.monotonic()
            digest, received = hashlib.sha256(), 0
            with requests.get(url + "/api/v1/files/big.bin", stream=True, timeout=3600) as got:
                for chunk in got.iter_content(MIB):
                    digest.update(chunk)
                    received += len(chunk)
            seconds = time.monotonic() - started
            peak = sampler.stop()
            assert received == size and digest.hexdigest() == body.digest.hexdigest()
            print(f"download peak RSS    {peak / 1024:.1f} MiB (+{(peak - idle) / 1024:.1f} MiB), "
                  f"{size / MIB / seconds:.0f} MiB/s")  # fmt: skip
            if strace is not None:
                strace.send_signal(signal.SIGINT)
                strace.wait(30)
                calls = [ln for ln in trace.read_text().splitlines() if "sendfile(" in ln]
                sent = sum(
                    int(ln.rsplit("=", 1)[1])
                    for ln in calls
                    if ln.rsplit("=", 1)[1].strip().isdigit()
                )
                print(f"sendfile             {'yes' if calls else 'NO'}: {len(calls)} calls, "
                      f"{sent / MIB:.0f} MiB")  # fmt: skip
            else:
                print("sendfile             unknown (strace is not installed)")
        finally:
            if strace is not None and strace.poll() is None:
                strace.kill()
            server.send_signal(signal.SIGTERM)
            server.wait(60)


if __name__ == "__main__":
    main()
