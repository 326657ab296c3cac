"""Two `filedock serve` instances (gunicorn) on one S3 store, a real SeaweedFS: bodies on
the wire both ways, a tus upload started on one and finished on the other with tuspy, and
JSON patches on both at once."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from filedock.config import Settings
from tests.conftest import LiveServer, start_server

pytestmark = pytest.mark.timeout(300)

MIB = 1 << 20


@pytest.fixture
def instances(s3_settings: Settings) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two servers of the same bucket prefix."""
    args = ("--store", s3_settings.store, "--s3-endpoint", s3_settings.s3_endpoint)
    first = start_server(*args, "--port", "0", "--workers", "2")
    try:
        second = start_server(*args, "--port", "0", "--workers", "1")
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


def test_streamed_bodies_both_ways(instances: tuple[LiveServer, LiveServer]) -> None:
    a, b = instances
    data = bytes(range(256)) * (20 * MIB // 256) + b"tail"

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length
        for start in range(0, len(data), MIB):
            yield data[start : start + MIB]

    put = requests.put(a.url + "/api/v1/files/wire/blob.bin", data=chunks(), timeout=120)
    assert put.status_code == 201, put.text
    assert put.json()["sha256"] == hashlib.sha256(data).hexdigest()
    with requests.get(b.url + "/api/v1/files/wire/blob.bin", stream=True, timeout=120) as got:
        assert got.status_code == 200
        assert got.headers["Content-Length"] == str(len(data))
        digest = hashlib.sha256()
        for block in got.iter_content(MIB):
            digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    ranged = requests.get(
        b.url + "/api/v1/files/wire/blob.bin", headers={"Range": "bytes=15000000-"}, timeout=60
    )
    assert ranged.status_code == 206 and ranged.content == data[15_000_000:]


def test_tus_upload_moves_between_instances(
    instances: tuple[LiveServer, LiveServer], tmp_path: Path
) -> None:
    from tusclient import client as tus

    a, b = instances
    payload = tmp_path / "payload.bin"
    data = hashlib.sha256(b"seed").digest() * (13 * MIB // 32) + b"end"
    payload.write_bytes(data)
    options = {"chunk_size": 5 * MIB, "metadata": {"path": "tus/moved.bin"}}
    with payload.open("rb") as f:
        first = tus.TusClient(a.url + "/api/v1/uploads").uploader(file_stream=f, **options)
        first.upload_chunk()
        first.upload_chunk()
        assert first.offset == 10 * MIB
        url = first.url
    with payload.open("rb") as f:
        # the other instance: tuspy asks it for the offset (HEAD), then sends the rest
        url_on_b = b.url + url[len(a.url) :] if url.startswith(a.url) else b.url + url
        second = tus.TusClient(b.url + "/api/v1/uploads").uploader(
            file_stream=f, url=url_on_b, **options
        )
        assert second.offset == 10 * MIB
        second.upload()
    meta = requests.get(a.url + "/api/v1/meta/tus/moved.bin", timeout=60).json()
    assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["size"] == len(data)


def test_json_patches_on_both_instances_lose_no_update(
    instances: tuple[LiveServer, LiveServer],
) -> None:
    a, b = instances
    url = "/api/v1/json/shared.json"
    assert requests.put(a.url + url, json={"n": []}, timeout=60).status_code == 201
    failures: list[str] = []

    def patcher(server: LiveServer, name: str) -> None:
        with requests.Session() as session:
            for i in range(5):
                response = session.patch(
                    server.url + url,
                    data=json.dumps([{"op": "add", "path": "/n/-", "value": f"{name}{i}"}]),
                    headers={"Content-Type": "application/json-patch+json"},
                    timeout=60,
                )
                if response.status_code != 200:
                    failures.append(response.text)

    threads = [
        threading.Thread(target=patcher, args=(server, f"{server.url[-5:]}-{k}-"))
        for server in (a, b)
        for k in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    values = requests.get(b.url + url, timeout=60).json()["n"]
    assert len(values) == 20 and len(set(values)) == 20
