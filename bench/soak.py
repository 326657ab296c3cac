"""Soak: a mixed load through nginx on three filedock instances sharing one store, while one
instance is restarted every minute (make soak; SOAK_SECONDS=300 by default). The store is a
folder, or with --store s3 (make soak SOAK_STORE=s3) a bucket of a SeaweedFS started here.

Clients upload files (PUT), download them again, increment a JSON counter (JSON Patch with a
test), and upload through tus (tuspy). The restarts alternate between a graceful one (SIGTERM)
and a crash (SIGKILL of the instance's every process). A request that fails for a reason a restart explains
(connection refused or reset, 502, 503, 504) is retried; one that then succeeds is not an
error. At the end every acknowledged write is checked: each file acknowledged is there with
its SHA-256, and the counter holds at least every increment acknowledged.

Reported: operations and HTTP requests, errors, acknowledged writes lost (must be 0), and the
resident memory of each instance (gunicorn's arbiter and workers together) at start and end."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
from tusclient import client as tus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster import Cluster, process_tree  # noqa: E402
from tests.seaweed import Seaweed  # noqa: E402

RETRY_STATUSES = {502, 503, 504}
RETRIES = 8
# A chunk is retried for 12 s, as tus-js-client's default delays (9 s) nearly do: an instance
# killed in the middle of a chunk leaves its lease on the upload (8 s on S3, storage/locks.py).
TUS_RETRIES = 24
COUNTER = "/api/v1/json/soak/counter.json"


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (an instance: arbiter and workers)."""
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


@dataclass
class Tally:
    """What the clients did, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    operations: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    retried: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    files: dict[str, str] = field(default_factory=dict)  # acknowledged path -> sha256
    increments: int = 0  # acknowledged

    def add(self, **counts: int) -> None:
        with self.lock:
            self.requests += counts.get("requests", 0)
            self.retried += counts.get("retried", 0)


class Client:
    """One client thread: an HTTP session through nginx that retries what a restart explains."""

    def __init__(self, cluster: Cluster, tally: Tally, number: int) -> None:
        self.cluster, self.tally, self.number = cluster, tally, number
        self.session = requests.Session()
        self.session.headers.update(cluster.headers)
        self.random = random.Random(number)
        self.sequence = 0

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        """The answer, after retrying connection failures and 502/503/504."""
        for attempt in range(RETRIES):
            self.tally.add(requests=1, retried=int(attempt > 0))
            try:
                response = self.session.request(
                    method, self.cluster.url + path, timeout=60, **kwargs
                )  # type: ignore[arg-type]
            except requests.ConnectionError:
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status_code in RETRY_STATUSES:
                time.sleep(0.2 * (attempt + 1))
                continue
            return response
        raise ConnectionError(f"{method} {path}: no answer after {RETRIES} attempts")

    def upload(self) -> None:
        self.sequence += 1
        path = f"soak/c{self.number}/f{self.sequence}.bin"
        data = self.random.randbytes(self.random.randint(16 << 10, 256 << 10))
        response = self.request("PUT", f"/api/v1/files/{path}", data=data)
        if response.status_code not in (200, 201):
            raise AssertionError(f"PUT {response.status_code}")
        sha = hashlib.sha256(data).hexdigest()
        if response.json()["sha256"] != sha:
            raise AssertionError("PUT answered another sha256")
        with self.tally.lock:
            self.tally.files[path] = sha

    def download(self) -> None:
        with self.tally.lock:
            if not self.tally.files:
                return
            path, sha = self.random.choice(list(self.tally.files.items()))
        response = self.request("GET", f"/api/v1/files/{path}")
        if response.status_code != 200:
            raise AssertionError(f"GET {response.status_code}")
        if hashlib.sha256(response.content).hexdigest() != sha:
            raise AssertionError("GET served other bytes")

    def increment(self) -> None:
        for _ in range(200):
            current = self.request("GET", COUNTER)
            if current.status_code != 200:
                raise AssertionError(f"GET counter {current.status_code}")
            n = current.json()["n"]
            patch = [{"op": "test", "path": "/n", "value": n},
                     {"op": "replace", "path": "/n", "value": n + 1}]  # fmt: skip
            response = self.request(
                "PATCH", COUNTER, data=json.dumps(patch),
                headers={"Content-Type": "application/json-patch+json"},
            )  # fmt: skip
            if response.status_code == 200:
                with self.tally.lock:
                    self.tally.increments += 1
                return
            if response.status_code != 409:
                raise AssertionError(f"PATCH {response.status_code}")
        raise AssertionError("PATCH: the counter kept changing")

    def tus_upload(self) -> None:
        self.sequence += 1
        path = f"soak/c{self.number}/t{self.sequence}.bin"
        data = self.random.randbytes(1 << 20)
        uploader = tus.TusClient(
            self.cluster.url + "/api/v1/uploads", headers=self.cluster.headers
        ).uploader(
            file_stream=io.BytesIO(data), chunk_size=256 << 10, metadata={"path": path},
            retries=TUS_RETRIES, retry_delay=0.5,
        )  # fmt: skip
        attempts = 0
        while True:
            attempts += 1
            try:
                uploader.upload()
                break
            except Exception:
                # The creation itself failed (tuspy retries only the chunks): start again.
                if attempts >= RETRIES or uploader.url:
                    raise
                time.sleep(0.5)
        self.tally.add(requests=1 + (len(data) + (256 << 10) - 1) // (256 << 10))
        with self.tally.lock:
            self.tally.files[path] = hashlib.sha256(data).hexdigest()

    def run(self, until: float) -> None:
        operations = [
            ("upload", self.upload, 3),
            ("download", self.download, 4),
            ("json-patch", self.increment, 3),
            ("tus", self.tus_upload, 1),
        ]
        names = [o[0] for o in operations]
        weights = [o[2] for o in operations]
        actions = {o[0]: o[1] for o in operations}
        while time.monotonic() < until:
            name = self.random.choices(names, weights)[0]
            try:
                actions[name]()
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with self.tally.lock:
                    self.tally.errors[f"{name}: {str(exc)[:80]}"] += 1
            with self.tally.lock:
                self.tally.operations[name] += 1


def check(cluster: Cluster, tally: Tally) -> dict[str, object]:
    """Every acknowledged write, read back once everything is up."""
    session = requests.Session()
    session.headers.update(cluster.headers)
    lost = []
    for path, sha in tally.files.items():
        response = session.get(f"{cluster.url}/api/v1/files/{path}", timeout=60)
        if response.status_code != 200 or hashlib.sha256(response.content).hexdigest() != sha:
            lost.append(path)
    counter = session.get(cluster.url + COUNTER, timeout=60).json()["n"]
    return {
        "files_acknowledged": len(tally.files),
        "files_lost": len(lost),
        "increments_acknowledged": tally.increments,
        "counter": counter,
        "increments_lost": max(0, tally.increments - counter),
        # An increment applied whose answer was lost to a restart: applied, not acknowledged.
        "increments_applied_unacknowledged": max(0, counter - tally.increments),
        "lost_examples": lost[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--restart-every", type=float, default=60)
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument(
        "--store",
        choices=("local", "s3"),
        default="local",
        help="one store folder, or a bucket of a SeaweedFS started for the run",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="filedock-soak-") as folder:
        seaweed = Seaweed(Path(folder) / "seaweed").start() if args.store == "s3" else None
        try:
            cluster = Cluster(Path(folder) / "cluster", seaweed=seaweed).start()
            try:
                report = soak(cluster, args)
            finally:
                cluster.stop()
        finally:
            if seaweed is not None:
                seaweed.stop()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if report["acknowledged_writes_lost"]:
        sys.exit(1)


def soak(cluster: Cluster, args: argparse.Namespace) -> dict[str, object]:
    """Run the load and the restarts; the report."""
    rss_start = [rss_bytes(s.process.pid) for s in cluster.instances]
    requests.put(cluster.url + COUNTER, json={"n": 0}, headers=cluster.headers, timeout=10)
    tally = Tally()
    started = time.monotonic()
    until = started + args.seconds
    clients = [Client(cluster, tally, n) for n in range(args.clients)]
    threads = [threading.Thread(target=c.run, args=(until,)) for c in clients]
    for thread in threads:
        thread.start()
    restarts = 0
    next_restart = started + args.restart_every
    while time.monotonic() < until:
        if time.monotonic() >= next_restart and next_restart < until:
            index = restarts % len(cluster.instances)
            # Every other restart is a crash: SIGKILL, requests in flight cut off.
            how = "killed (SIGKILL)" if restarts % 2 else "stopped (SIGTERM)"
            if restarts % 2:
                cluster.kill(index)
            cluster.restart(index)  # SIGTERM unless killed, then start on the same port
            restarts += 1
            print(f"{time.monotonic() - started:6.0f} s: instance {index} {how} and started",
                  file=sys.stderr, flush=True)  # fmt: skip
            next_restart += args.restart_every
        time.sleep(0.5)
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    rss_end = [rss_bytes(s.process.pid) for s in cluster.instances]
    checked = check(cluster, tally)
    lost = int(checked["files_lost"]) + int(checked["increments_lost"])  # type: ignore[call-overload]
    return {
        "seconds": round(elapsed),
        "store": cluster.kind,
        "instances": len(cluster.instances),
        "clients": args.clients,
        "restarts": restarts,
        "operations": dict(tally.operations),
        "http_requests": tally.requests,
        "requests_retried": tally.retried,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "acknowledged_writes_lost": lost,
        **checked,
        "rss_mib_start": [round(r / (1 << 20), 1) for r in rss_start],
        "rss_mib_end": [round(r / (1 << 20), 1) for r in rss_end],
        "workers_per_instance": cluster.workers,
        "os_cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
