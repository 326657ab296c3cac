"""Requests that race each other on a real multi-worker server: writes beside deletes in one
folder, and concurrent readiness probes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import LiveServer, start_server

THREADS = 6


@pytest.fixture
def four_workers(store_dir: Path) -> Iterator[LiveServer]:
    """`filedock serve --workers 4` on the temporary store."""
    server = start_server("--store", str(store_dir), "--port", "0", "--workers", "4")
    yield server
    server.stop()


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run work(0..count-1) in threads started together; re-raise the first failure."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(index: int) -> None:
        try:
            start.wait(30)
            work(index)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors[0]


@pytest.mark.parametrize("api", ["files", "json"])
def test_writes_beside_deletes_of_the_last_file_in_a_folder(
    four_workers: LiveServer, store_dir: Path, api: str
) -> None:
    # Two threads per folder each write a file of their own into it and delete it again, so
    # the folder (and the two above it) keep losing their last file and being removed while
    # the other thread writes into them. Each thread's last file is kept.
    folders = [f"race{i}/deeper/deepest" for i in range(THREADS // 2)]
    rounds = 150
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def body(index: int, n: int) -> bytes:
        return f'{{"thread": {index}, "round": {n}}}'.encode()

    def work(index: int) -> None:
        name = f"{folders[index // 2]}/t{index}.json"
        url = f"{four_workers.url}/api/v1/{api}/{name}"
        with requests.Session() as http:
            for n in range(rounds):
                put = http.put(url, data=body(index, n), timeout=60)
                with lock:
                    statuses[put.status_code] += 1
                assert put.status_code == 201, (put.status_code, put.text)
                if n == rounds - 1:
                    break
                # JSON documents have no DELETE of their own
                deleted = http.delete(f"{four_workers.url}/api/v1/files/{name}", timeout=60)
                with lock:
                    statuses[deleted.status_code] += 1
                assert deleted.status_code == 204, (deleted.status_code, deleted.text)

    run_threads(THREADS, work)
    assert 500 not in statuses
    for index in range(THREADS):  # every acknowledged write is there
        name = f"{folders[index // 2]}/t{index}.json"
        got = requests.get(f"{four_workers.url}/api/v1/files/{name}", timeout=60)
        assert got.status_code == 200 and got.content == body(index, rounds - 1)
        assert (store_dir / name).read_bytes() == body(index, rounds - 1)


def test_concurrent_readiness_probes_all_see_a_healthy_store(four_workers: LiveServer) -> None:
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def work(index: int) -> None:
        with requests.Session() as http:
            for _ in range(60):
                status = http.get(four_workers.url + "/readyz", timeout=60).status_code
                with lock:
                    statuses[status] += 1

    run_threads(8, work)
    assert statuses == Counter({200: 8 * 60})
