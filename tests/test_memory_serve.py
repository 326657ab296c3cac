"""A worker's memory stays bounded however large the documents it reads and however many
versions of them it sees: its document cache holds at most 32 MiB of what it counts (bytes,
parsed values, derived bodies and a per-entry overhead, see jsondocs.DocumentCache), so a
worker grows by that and the allocator's slack, not by what it read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import LiveServer, start_server

MB = 1_000_000
CACHE_BUDGET = 32 << 20
# What the cache may hold plus a generous allowance for the allocator and the interpreter's
# own growth. Before the cache counted what it held, the large documents below took a worker
# 790 MB up, and the versions below 45 MB.
LARGE_DOCUMENTS_GROWTH = CACHE_BUDGET + 120 * MB
MANY_VERSIONS_GROWTH = 20 * MB


def rss(pid: int) -> int:
    """The resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def one_worker(store_dir: Path) -> Iterator[LiveServer]:
    """A server whose every request is answered by one worker, the one measured."""
    server = start_server("--store", str(store_dir), "--port", "0", "--workers", "1")
    yield server
    server.stop()


def warm_up(http: requests.Session, url: str) -> None:
    """Requests of every kind used below, so the worker's first-use growth is behind us."""
    http.put(f"{url}/api/v1/json/warm.json", data=b'{"a": [{}, {}]}', timeout=60)
    for _ in range(3):
        http.get(f"{url}/api/v1/json/warm.json", timeout=60)
        http.get(f"{url}/api/v1/json/warm.json", params={"pointer": "/a/0"}, timeout=60)
        http.get(f"{url}/getJsonFromFile/warm.json", timeout=60)
        http.patch(
            f"{url}/api/v1/json/warm.json",
            data=b'{"b": 1}',
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=60,
        )


def test_large_documents_do_not_stay_in_memory(one_worker: LiveServer, store_dir: Path) -> None:
    # two 15 MiB documents of the shape that parses to the most objects per byte
    count = (15 << 20) // 3
    data = b"[" + b"{}," * (count - 1) + b"{}]"
    for name in ("big1.json", "big2.json"):
        (store_dir / name).write_bytes(data)
    url = one_worker.url
    with requests.Session() as http:
        warm_up(http, url)
        worker = one_worker.first_worker()
        before = rss(worker)
        for _ in range(2):
            for name in ("big1.json", "big2.json"):
                got = http.get(f"{url}/api/v1/json/{name}", timeout=300)
                assert got.status_code == 200 and len(got.content) == len(data)
                value = http.get(f"{url}/api/v1/json/{name}", params={"pointer": "/7"}, timeout=300)
                assert value.status_code == 200 and value.json() == {}
                compat = http.get(f"{url}/getJsonFromFile/{name}", timeout=300)
                assert compat.status_code == 200 and len(compat.json()["LABELS_MAPPING"]) == count
        growth = rss(worker) - before
    assert growth < LARGE_DOCUMENTS_GROWTH, f"the worker grew by {growth / MB:.0f} MB"


def test_many_versions_do_not_pile_up(one_worker: LiveServer) -> None:
    # four documents, each edited again and again (a counter beside a list of 2000 objects)
    url = one_worker.url
    body = {"n": 0, "items": [{} for _ in range(2000)]}
    with requests.Session() as http:
        warm_up(http, url)
        for i in range(4):
            put = http.put(f"{url}/api/v1/json/c{i}.json", data=json.dumps(body), timeout=60)
            assert put.status_code == 201
        worker = one_worker.first_worker()
        before = rss(worker)
        for n in range(1, 301):
            patched = http.patch(
                f"{url}/api/v1/json/c{n % 4}.json",
                data=json.dumps({"n": n}),
                headers={"Content-Type": "application/merge-patch+json"},
                timeout=60,
            )
            assert patched.status_code == 200, patched.text
        growth = rss(worker) - before
        final = http.get(f"{url}/api/v1/json/c0.json", params={"pointer": "/n"}, timeout=60)
        assert final.json() == 300
    assert growth < MANY_VERSIONS_GROWTH, f"the worker grew by {growth / MB:.0f} MB"
