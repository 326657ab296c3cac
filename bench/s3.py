"""filedock on S3 against boto3's own transfers to the same SeaweedFS.

- upload and download of one large file: `filedock serve --store s3://…` driven by curl,
  against boto3's upload_fileobj / download_fileobj (its managed multipart transfer) straight
  to the store: throughput, and the server's peak RSS over idle during each;
- a listing page of 1000 objects out of 10,000: time and requests made to the store, first
  by a fresh process (every object HEADed once) and then again (described from its cache).

Usage: python bench/s3.py [--quick] [--json PATH]. --quick: 64 MiB and 200 of 2,000."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.seaweed import BUCKET, Seaweed, free_ports  # noqa: E402

MIB = 1 << 20
TARGET_RATIO = 0.8
RSS_LIMIT_MIB = 64


def tree_rss_kib(pid: int) -> int:
    """Summed VmRSS of a process and its descendants."""
    pids, total = [pid], 0
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{current}/task/{current}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return total


class Peak:
    """Peak RSS of a process tree while a block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.idle, self.peak = pid, 0, 0
        self._stop = threading.Event()

    def __enter__(self) -> Peak:
        self.idle = self.peak = tree_rss_kib(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, tree_rss_kib(self.pid))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.idle) / 1024


def make_payload(path: Path, size: int) -> str:
    """A file of size bytes that does not compress; its SHA-256."""
    block = hashlib.sha256(b"filedock").digest() * (MIB // 32)
    block = bytes(b ^ (i % 251) for i, b in enumerate(block))
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = block[: min(left, MIB)]
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def start_filedock(weed: Seaweed, prefix: str) -> tuple[subprocess.Popen[bytes], str]:
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    env |= weed.env | {"PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "filedock", "serve", "--store", f"s3://{BUCKET}/{prefix}",
         "--s3-endpoint", weed.endpoint, "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url + "/readyz"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.stdout == "200":
            return proc, url
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("filedock on S3 did not become ready")


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", *args], check=True, stdout=subprocess.DEVNULL)


def transfers(weed: Seaweed, payload: Path, size: int, sha256: str) -> dict[str, Any]:
    """Upload and download through filedock and with boto3 directly."""
    client = weed.client()
    out: dict[str, Any] = {"size_mib": size / MIB}
    with payload.open("rb") as f:
        out["boto3_upload_s"] = timed(lambda: client.upload_fileobj(f, BUCKET, "ref/blob"))
    with open(os.devnull, "wb") as sink:
        out["boto3_download_s"] = timed(lambda: client.download_fileobj(BUCKET, "ref/blob", sink))
    proc, url = start_filedock(weed, "bench")
    try:
        time.sleep(1)  # workers settle before the idle sample
        with Peak(proc.pid) as up:
            out["filedock_upload_s"] = timed(
                lambda: curl("-T", str(payload), url + "/api/v1/files/blob.bin")
            )
        out["filedock_upload_rss_mib"] = up.growth_mib
        meta = subprocess.run(
            ["curl", "-sS", url + "/api/v1/meta/blob.bin"], capture_output=True, check=True
        )
        out["sha256_ok"] = json.loads(meta.stdout)["sha256"] == sha256
        with Peak(proc.pid) as down:
            out["filedock_download_s"] = timed(
                lambda: curl("-o", "/dev/null", url + "/api/v1/files/blob.bin")
            )
        out["filedock_download_rss_mib"] = down.growth_mib
    finally:
        proc.terminate()
        proc.wait(30)
    for way in ("upload", "download"):
        out[f"{way}_ratio"] = out[f"boto3_{way}_s"] / out[f"filedock_{way}_s"]
    return out


def listing(weed: Seaweed, total: int, page: int) -> dict[str, Any]:
    """One page of `page` objects out of `total`: time and store requests, cold and warm."""
    from filedock.app import create_app
    from filedock.config import Settings

    client = weed.client()
    prefix = "listing"
    body = b"{}"
    sha = hashlib.sha256(body).hexdigest()

    def put(i: int) -> None:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/many/{i:05d}.json", Body=body,
                          ContentType="application/json", Metadata={"sha256": sha})  # fmt: skip

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(total)))
    for name, value in weed.env.items():
        os.environ[name] = value
    settings = Settings(store=f"s3://{BUCKET}/{prefix}", s3_endpoint=weed.endpoint)
    out: dict[str, Any] = {"objects": total, "page": page}
    app = create_app(settings)
    store: Any = app.extensions["filedock"]["storage"]
    http = app.test_client()
    query = {"prefix": "many/", "limit": str(page)}
    for attempt in ("cold", "warm"):
        before = store.requests
        start = time.perf_counter()
        answer = http.get("/api/v1/files", query_string=query)
        out[f"{attempt}_s"] = time.perf_counter() - start
        out[f"{attempt}_requests"] = store.requests - before
        assert answer.status_code == 200 and len(answer.get_json()["items"]) == page
    cursor = answer.get_json()["next_cursor"]
    before = store.requests
    start = time.perf_counter()
    later = http.get("/api/v1/files", query_string=query | {"cursor": cursor})
    out["next_page_cold_s"] = time.perf_counter() - start
    out["next_page_cold_requests"] = store.requests - before
    assert later.status_code == 200
    return out


def report(t: dict[str, Any], ls: dict[str, Any]) -> str:
    size = t["size_mib"]

    def rate(seconds: float) -> str:
        return f"{size / seconds:.0f} MiB/s"

    rows = [
        f"| {size:.0f} MiB upload | {rate(t['filedock_upload_s'])} | {rate(t['boto3_upload_s'])} "
        f"| {t['upload_ratio']:.2f}× | ≥ {TARGET_RATIO}× |",
        f"| {size:.0f} MiB download | {rate(t['filedock_download_s'])} | "
        f"{rate(t['boto3_download_s'])} | {t['download_ratio']:.2f}× | ≥ {TARGET_RATIO}× |",
        f"| server peak RSS over idle, upload | +{t['filedock_upload_rss_mib']:.1f} MiB | | | "
        f"≤ {RSS_LIMIT_MIB} MiB |",
        f"| server peak RSS over idle, download | +{t['filedock_download_rss_mib']:.1f} MiB | | | "
        f"≤ {RSS_LIMIT_MIB} MiB |",
        f"| listing {ls['page']} of {ls['objects']}, first time | {ls['cold_s'] * 1000:.0f} ms, "
        f"{ls['cold_requests']} requests | | | |",
        f"| the same page again | {ls['warm_s'] * 1000:.0f} ms, {ls['warm_requests']} requests "
        "| | | |",
        f"| the next page, first time | {ls['next_page_cold_s'] * 1000:.0f} ms, "
        f"{ls['next_page_cold_requests']} requests | | | |",
    ]
    head = "| S3 (SeaweedFS on loopback) | filedock | boto3 direct | ratio | target |\n|---|---|---|---|---|"
    return head + "\n" + "\n".join(rows) + f"\n\nSHA-256 of the upload checked: {t['sha256_ok']}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    size = 64 * MIB if args.quick else 1024 * MIB
    total, page = (2_000, 200) if args.quick else (10_000, 1000)
    with tempfile.TemporaryDirectory(prefix="filedock-bench-s3-") as work:
        weed = Seaweed(Path(work) / "weed").start()
        try:
            payload = Path(work) / "payload.bin"
            sha256 = make_payload(payload, size)
            t = transfers(weed, payload, size, sha256)
            payload.unlink()
            ls = listing(weed, total, page)
        finally:
            weed.stop()
    print(report(t, ls))
    if args.json:
        Path(args.json).write_text(json.dumps({"transfers": t, "listing": ls}, indent=2))


if __name__ == "__main__":
    main()
