"""/readyz on several servers of one store at once: each probe is its own, so concurrent
probes (a load balancer checking every instance, several workers) never fail each other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.conftest import start_server


def test_concurrent_readiness_probes_on_one_store(store_dir: Path) -> None:
    servers = [start_server("--store", str(store_dir), "--port", "0") for _ in range(2)]
    try:
        urls = [s.url + "/readyz" for s in servers] * 8

        def probe(url: str) -> list[int]:
            with requests.Session() as session:
                return [session.get(url, timeout=30).status_code for _ in range(40)]

        with ThreadPoolExecutor(len(urls)) as pool:
            statuses = [code for codes in pool.map(probe, urls) for code in codes]
        assert statuses.count(200) == len(statuses), {c: statuses.count(c) for c in statuses}
    finally:
        for server in servers:
            server.stop()
