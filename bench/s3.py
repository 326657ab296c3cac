"""filedock on S3 against boto3's own transfers to the same SeaweedFS.

- upload and download of one large file: `filedock serve --store s3://…` driven by curl,
  against boto3's upload_fileobj / download_fileobj (its managed multipart transfer) straight
  to the store: throughput, and the server's peak RSS over idle during each;
- a listing page of 1000 objects out of 10,000: time and requests made to the store, first
  by a fresh process (every object HEADed once) and then again (described from its cache);
- listing every object under a prefix through the API (1000 a page, following next_cursor)
  for 1,000, 10,000 and 100,000 objects: time and the server's CPU seconds, first by a fresh
  `filedock serve` (every object HEADed once) and then again (described from its cache).

Usage: python bench/s3.py [--quick] [--json PATH] [--only PARTS]. --quick: 64 MiB, 200 of
2,000, and every object of 100 and of 1,000. --json also draws the listing times against the
number of objects next to it (NAME-listing.png); with --only, the parts not run keep their
figures from the file."""

from __future__ import annotations

import argparse
import hashlib
import http.client
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

from run import cpu_seconds, tree_pids  # noqa: E402  (bench/run.py, beside this file)

from tests.seaweed import BUCKET, Seaweed, free_ports  # noqa: E402

MIB = 1 << 20
TARGET_RATIO = 0.8
RSS_LIMIT_MIB = 64
PARTS = ("transfers", "listing", "listing_scaling")
PUT_THREADS = 32  # boto3 put_object calls at once when filling a prefix


def tree_rss_kib(pid: int) -> int:
    """Summed VmRSS of a process and its descendants."""
    total = 0
    for current in tree_pids(pid):
        try:
            with open(f"/proc/{current}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
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


def start_filedock(
    weed: Seaweed, prefix: str, workers: int = 2
) -> tuple[subprocess.Popen[bytes], str]:
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    env |= weed.env | {"PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "filedock", "serve", "--store", f"s3://{BUCKET}/{prefix}",
         "--s3-endpoint", weed.endpoint, "--port", str(port), "--workers", str(workers)],
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


def fill(weed: Seaweed, prefix: str, count: int) -> float:
    """Put count small JSON objects under prefix with boto3, PUT_THREADS at once, each with
    the SHA-256 in its metadata as filedock writes it; the seconds it took."""
    client = weed.client(max_pool_connections=PUT_THREADS)
    body = b"{}"
    sha = hashlib.sha256(body).hexdigest()

    def put(i: int) -> None:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{i:07d}.json", Body=body,
                          ContentType="application/json", Metadata={"sha256": sha})  # fmt: skip

    start = time.perf_counter()
    with ThreadPoolExecutor(PUT_THREADS) as pool:
        list(pool.map(put, range(count)))
    return time.perf_counter() - start


def list_everything(url: str, prefix: str) -> int:
    """Every object under prefix through the API, 1000 a page over one connection: how many."""
    host = url.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=1800)
    seen, cursor = 0, ""
    try:
        while True:
            query = f"prefix={prefix}/&limit=1000" + (f"&cursor={cursor}" if cursor else "")
            conn.request("GET", f"/api/v1/files?{query}")
            answer = conn.getresponse()
            body = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"listing answered {answer.status}: {body[:200]!r}")
            page = json.loads(body)
            seen += len(page["items"])
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return seen
    finally:
        conn.close()


def listing_scaling(weed: Seaweed, counts: list[int]) -> dict[str, Any]:
    """For each count: every object under a prefix of that many, listed by a fresh server (one
    worker, so that one cache serves both passes) and then again by the same server."""
    rows = []
    for count in counts:
        prefix = f"n{count}"
        row: dict[str, Any] = {"objects": count, "setup_s": fill(weed, f"scale/{prefix}", count)}
        proc, url = start_filedock(weed, "scale", workers=1)
        try:
            for attempt in ("first", "again"):
                cpu = cpu_seconds(proc.pid)
                start = time.perf_counter()
                seen = list_everything(url, prefix)
                row[f"{attempt}_s"] = time.perf_counter() - start
                row[f"{attempt}_server_cpu_s"] = round(cpu_seconds(proc.pid) - cpu, 2)
                if seen != count:
                    raise RuntimeError(f"listing gave {seen} of {count} objects")
        finally:
            proc.terminate()
            proc.wait(30)
        rows.append(row)
        print(
            f"listing every object of {count:,}: set up in {row['setup_s']:.1f} s, first "
            f"{row['first_s']:.2f} s, again {row['again_s']:.2f} s",
            file=sys.stderr,
        )
    return {"page": 1000, "put_threads": PUT_THREADS, "server_workers": 1, "counts": rows}


def listing_chart(scaling: dict[str, Any], path: Path) -> None:
    """Time to list every object against the number of objects: first time and again."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = scaling["counts"]
    labels = [f"{row['objects']:,}" for row in rows]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for key, name in (("first_s", "first listing"), ("again_s", "again")):
        ax.plot(labels, [row[key] for row in rows], marker="o", label=name)
    ax.set_xlabel("objects")
    ax.set_ylabel("s")
    ax.set_title("listing every object, S3 store (SeaweedFS)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def scaling_rows(scaling: dict[str, Any]) -> list[str]:
    out = []
    for row in scaling["counts"]:
        out.append(
            f"| listing every object of {row['objects']:,}, first time | {row['first_s']:.2f} s, "
            f"server {row['first_server_cpu_s']:.1f} CPU s | | | |"
        )
        out.append(
            f"| listing every object of {row['objects']:,}, again | {row['again_s']:.2f} s, "
            f"server {row['again_server_cpu_s']:.1f} CPU s | | | |"
        )
    return out


def report(t: dict[str, Any] | None, ls: dict[str, Any] | None, sc: dict[str, Any] | None) -> str:
    head = "| S3 (SeaweedFS on loopback) | filedock | boto3 direct | ratio | target |\n|---|---|---|---|---|"
    rows = transfer_rows(t) if t else []
    rows += listing_rows(ls) if ls else []
    rows += scaling_rows(sc) if sc else []
    tail = f"\n\nSHA-256 of the upload checked: {t['sha256_ok']}\n" if t else "\n"
    return head + "\n" + "\n".join(rows) + tail


def transfer_rows(t: dict[str, Any]) -> list[str]:
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
    ]
    return rows


def listing_rows(ls: dict[str, Any]) -> list[str]:
    return [
        f"| listing {ls['page']} of {ls['objects']}, first time | {ls['cold_s'] * 1000:.0f} ms, "
        f"{ls['cold_requests']} requests | | | |",
        f"| the same page again | {ls['warm_s'] * 1000:.0f} ms, {ls['warm_requests']} requests "
        "| | | |",
        f"| the next page, first time | {ls['next_page_cold_s'] * 1000:.0f} ms, "
        f"{ls['next_page_cold_requests']} requests | | | |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--json", help="also write the figures to this file (and draw the chart)")
    parser.add_argument("--only", default=",".join(PARTS), help="parts: " + ",".join(PARTS))
    args = parser.parse_args()
    parts = args.only.split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    size = 64 * MIB if args.quick else 1024 * MIB
    total, page = (2_000, 200) if args.quick else (10_000, 1000)
    counts = [100, 1_000] if args.quick else [1_000, 10_000, 100_000]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="filedock-bench-s3-") as work:
        weed = Seaweed(Path(work) / "weed").start()
        try:
            if "transfers" in parts:
                payload = Path(work) / "payload.bin"
                sha256 = make_payload(payload, size)
                results["transfers"] = transfers(weed, payload, size, sha256)
                payload.unlink()
            if "listing" in parts:
                results["listing"] = listing(weed, total, page)
            if "listing_scaling" in parts:
                results["listing_scaling"] = listing_scaling(weed, counts)
        finally:
            weed.stop()
    print(report(results.get("transfers"), results.get("listing"), results.get("listing_scaling")))
    if args.json:
        path = Path(args.json)
        kept = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps(kept | results, indent=2) + "\n")
        if "listing_scaling" in results:
            listing_chart(results["listing_scaling"], path.with_name(path.stem + "-listing.png"))


if __name__ == "__main__":
    main()
