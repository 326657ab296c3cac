"""The S3 store when its object store fails: unreachable, refusing access, killed in the
middle of an upload and back again. Over a real gunicorn server and a real SeaweedFS."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import LiveServer, start_server, wait_for
from tests.seaweed import BUCKET, SECRET_KEY, Seaweed, free_ports

pytestmark = pytest.mark.timeout(300)

MIB = 1 << 20
# The store's own bound (storage/s3.py): 2 attempts of at most 5 s to connect and 20 s to read.
STATED_SECONDS = 2 * (5 + 20)


def serve_s3(seaweed_endpoint: str, prefix: str, env: dict[str, str]) -> LiveServer:
    return start_server(
        "--store",
        f"s3://{BUCKET}/{prefix}",
        "--s3-endpoint",
        seaweed_endpoint,
        "--port",
        "0",
        "--workers",
        "1",
        env=env,
    )


def assert_unavailable(response: requests.Response, code: str = "store-unavailable") -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["detail"]
    assert SECRET_KEY not in response.text
    if code == "store-unavailable":  # nothing changed: the client may try again, after a while
        assert response.headers["Retry-After"] == "5"


def test_an_unreachable_store_is_503_within_the_stated_time(seaweed: Seaweed) -> None:
    (closed,) = free_ports(1)
    server = serve_s3(f"http://127.0.0.1:{closed}", "down", seaweed.env)
    try:
        started = time.monotonic()
        ready = requests.get(server.url + "/readyz", timeout=120)
        assert time.monotonic() - started < STATED_SECONDS
        assert_unavailable(ready, "not-ready")
        assert "cannot be reached" in ready.json()["detail"]
        files = server.url + "/api/v1/files/a.txt"
        assert_unavailable(requests.put(files, data=b"x", timeout=120))
        assert_unavailable(requests.get(files, timeout=120))
        assert_unavailable(requests.get(server.url + "/api/v1/files", timeout=120))
        tus = requests.post(
            server.url + "/api/v1/uploads",
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "3",
                "Upload-Metadata": "path YS50eHQ=",
            },
            timeout=120,
        )
        assert_unavailable(tus)
    finally:
        server.stop()
    assert SECRET_KEY not in "".join(server.output)


def test_refused_access_is_503_and_the_secret_is_never_shown(seaweed: Seaweed) -> None:
    env = seaweed.env | {"AWS_SECRET_ACCESS_KEY": "wrong-" + SECRET_KEY}
    server = serve_s3(seaweed.endpoint, "refused", env)
    try:
        ready = requests.get(server.url + "/readyz", timeout=120)
        assert_unavailable(ready, "not-ready")
        assert "refused access" in ready.json()["detail"]
        put = requests.put(server.url + "/api/v1/files/a.txt", data=b"x", timeout=120)
        assert_unavailable(put)
        metrics = requests.get(server.url + "/metrics", timeout=120)
        assert SECRET_KEY not in metrics.text and "wrong-" not in metrics.text
    finally:
        server.stop()
    output = "".join(server.output)
    assert SECRET_KEY not in output


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[Seaweed]:
    """A SeaweedFS of this test's own, to kill."""
    server = Seaweed(tmp_path / "weed").start()
    try:
        yield server
    finally:
        server.stop()


def test_killed_mid_upload_leaves_nothing_and_serving_resumes(own_seaweed: Seaweed) -> None:
    server = serve_s3(own_seaweed.endpoint, "kill", own_seaweed.env)
    try:
        assert requests.get(server.url + "/readyz", timeout=60).status_code == 200
        killed = threading.Event()
        sent = threading.Event()

        def body() -> Iterator[bytes]:
            for _ in range(20):  # two full parts reach the store while it is up
                yield b"a" * MIB
            sent.set()
            killed.wait(60)
            yield b"b" * MIB  # the rest arrives once it is gone

        result: list[requests.Response] = []
        upload = threading.Thread(
            target=lambda: result.append(
                requests.put(server.url + "/api/v1/files/big.bin", data=body(), timeout=180)
            )
        )
        upload.start()
        assert sent.wait(60)
        time.sleep(0.5)  # let the server hand the parts it has to the store
        own_seaweed.stop(signal.SIGKILL)
        killed.set()
        upload.join(180)
        assert result, "the upload got no answer"
        assert_unavailable(result[0])
        assert_unavailable(requests.get(server.url + "/readyz", timeout=120), "not-ready")

        own_seaweed.start()  # same folder, same ports
        wait_for(
            lambda: requests.get(server.url + "/readyz", timeout=120).status_code == 200,
            timeout=120,
        )
        missing = requests.get(server.url + "/api/v1/files/big.bin", timeout=60)
        assert missing.status_code == 404
        assert requests.get(server.url + "/api/v1/files", timeout=60).json()["items"] == []
        stored = requests.put(server.url + "/api/v1/files/big.bin", data=b"after", timeout=60)
        assert stored.status_code == 201
        assert requests.get(server.url + "/api/v1/files/big.bin", timeout=60).content == b"after"
    finally:
        server.stop()


class WithoutConditions:
    """A boto3 client that drops If-Match / If-None-Match, as a store that ignores
    conditional writes would."""

    def __init__(self, client: object) -> None:
        self._client = client

    def __getattr__(self, name: str) -> object:
        method = getattr(self._client, name)

        def call(**kwargs: object) -> object:
            kwargs.pop("IfNoneMatch", None)
            kwargs.pop("IfMatch", None)
            return method(**kwargs)

        return call


def test_a_store_that_ignores_conditional_writes_is_not_ready(
    seaweed: Seaweed, s3_prefix: str
) -> None:
    from filedock.storage import StoreUnavailable
    from filedock.storage.s3 import S3Storage

    S3Storage(seaweed.client(), BUCKET, s3_prefix).check()  # SeaweedFS enforces them
    careless = S3Storage(WithoutConditions(seaweed.client()), BUCKET, s3_prefix)
    with pytest.raises(StoreUnavailable, match="ignores conditional writes"):
        careless.check()


def test_a_tus_upload_survives_the_store_going_away(own_seaweed: Seaweed) -> None:
    server = serve_s3(own_seaweed.endpoint, "tus", own_seaweed.env)
    tus = {"Tus-Resumable": "1.0.0"}
    data = hashlib.sha256(b"tus").digest() * (14 * MIB // 32)
    try:
        created = requests.post(
            server.url + "/api/v1/uploads",
            headers=tus | {"Upload-Length": str(len(data)),
                           "Upload-Metadata": "path dHVzL2YuYmlu"},  # tus/f.bin
            timeout=60,
        )  # fmt: skip
        assert created.status_code == 201
        url = server.url + created.headers["Location"]
        chunk = {"Content-Type": "application/offset+octet-stream"}

        def patch(offset: int, body: bytes) -> requests.Response:
            headers = tus | chunk | {"Upload-Offset": str(offset)}
            return requests.patch(url, data=body, headers=headers, timeout=120)

        assert patch(0, data[: 9 * MIB]).status_code == 204  # acknowledged: one part and a tail
        own_seaweed.stop(signal.SIGKILL)
        assert_unavailable(patch(9 * MIB, data[9 * MIB :]))
        assert requests.head(url, headers=tus, timeout=120).status_code == 503
        own_seaweed.start()
        wait_for(
            lambda: requests.get(server.url + "/readyz", timeout=120).status_code == 200,
            timeout=120,
        )
        head = requests.head(url, headers=tus, timeout=60)
        assert head.headers["Upload-Offset"] == str(9 * MIB)  # nothing acknowledged was lost
        assert requests.get(server.url + "/api/v1/files/tus/f.bin", timeout=60).status_code == 404
        assert patch(9 * MIB, data[9 * MIB :]).status_code == 204
        meta = requests.get(server.url + "/api/v1/meta/tus/f.bin", timeout=60).json()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        server.stop()
