"""Three `filedock serve` instances sharing one store, behind a real nginx running the shipped
deploy/nginx.conf: uploads continue across instances and survive one being killed, no JSON
update is lost, and tokens and signed links hold on every instance. Each of those runs on a
store folder and on an S3 bucket (a real SeaweedFS), where the instances share nothing else."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from tusclient import client as tus

from tests.cluster import Cluster, create_store_token, revoke_store_token
from tests.conftest import LiveServer, wait_for

MIB = 1 << 20
REVOCATION_SECONDS = 10
# tuspy retries a chunk this often, this far apart (the test's client; tus-js-client's own
# defaults wait 0, 1, 3 and 5 s): time enough for a dead instance's lease on the upload to
# run out (storage/locks.py), not for one that lasted a minute.
TUS_RETRIES, TUS_RETRY_DELAY = 30, 0.5


@pytest.fixture(params=["local", "s3"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Three instances on a store folder, or on a fresh prefix of the session's SeaweedFS."""
    seaweed = request.getfixturevalue("seaweed") if request.param == "s3" else None
    cluster = Cluster(tmp_path, seaweed=seaweed).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def folder_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three instances on a store folder (for what concerns nginx, not the store)."""
    cluster = Cluster(tmp_path).start()
    yield cluster
    cluster.stop()


def served_by(server: LiveServer, method: str, path: str) -> list[str]:
    """The access log lines of one instance for method on path."""
    return [line for line in list(server.output) if f'"{method} {path} HTTP/1.1"' in line]


def payload(size: int) -> bytes:
    """size bytes that differ all along, so a misplaced chunk changes the hash."""
    block = hashlib.sha256(str(size).encode()).digest()
    return b"".join(hashlib.sha256(block + i.to_bytes(4, "big")).digest()
                    for i in range(size // 32 + 1))[:size]  # fmt: skip


def stored_sha256(cluster: Cluster, path: str) -> str:
    response = requests.get(
        f"{cluster.url}/api/v1/files/{path}", headers=cluster.headers, timeout=60
    )
    assert response.status_code == 200
    return hashlib.sha256(response.content).hexdigest()


def test_a_tus_upload_continues_on_other_instances(cluster: Cluster, tmp_path: Path) -> None:
    data = payload(3 * MIB + 123)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    with source.open("rb") as f:
        uploader = tus.TusClient(cluster.url + "/api/v1/uploads", headers=cluster.headers).uploader(
            file_stream=f, chunk_size=256 * 1024, metadata={"path": "tus/spread.bin"}
        )
        uploader.upload()
    upload_path = uploader.url.removeprefix(cluster.url)
    assert re.fullmatch(r"/api/v1/uploads/[0-9a-f]+", upload_path), uploader.url
    assert stored_sha256(cluster, "tus/spread.bin") == hashlib.sha256(data).hexdigest()
    # nginx spread the 13 chunks over the instances: each one continued the upload.
    wait_for(lambda: sum(len(served_by(s, "PATCH", upload_path)) for s in cluster.instances) == 13)
    serving = [s for s in cluster.instances if served_by(s, "PATCH", upload_path)]
    assert len(serving) == len(cluster.instances)


def test_a_request_id_set_by_nginx_or_the_client_is_in_the_instance_log(
    folder_cluster: Cluster,
) -> None:
    cluster = folder_cluster
    given = requests.get(
        cluster.url + "/healthz", headers={"X-Request-ID": "edge-1234"}, timeout=10
    )
    assert given.headers["X-Request-ID"] == "edge-1234"
    made = requests.get(cluster.url + "/healthz", timeout=10)
    made_id = made.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_id)  # nginx's $request_id
    for request_id in ("edge-1234", made_id):
        wait_for(lambda rid=request_id: any(  # type: ignore[misc]
            f"request_id={rid} " in line for s in cluster.instances for line in list(s.output)
        ))  # fmt: skip
        wait_for(lambda rid=request_id: any(  # type: ignore[misc]
            f"request_id={rid} " in line for line in list(cluster.nginx_output)
        ))  # fmt: skip


def test_the_instance_logs_the_client_nginx_saw(folder_cluster: Cluster) -> None:
    cluster = folder_cluster
    # From another loopback address than nginx's own (127.0.0.1) to the instances.
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: from-dot-two\r\n"
    request += b"X-Forwarded-For: 192.0.2.66\r\nConnection: close\r\n\r\n"  # forged
    port = int(cluster.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), 10, ("127.0.0.2", 0)) as sock:
        sock.sendall(request)
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 200 ")
    lines: list[str] = []
    wait_for(lambda: bool(lines.extend(
        line for s in cluster.instances for line in list(s.output) if "from-dot-two" in line
    ) or lines))  # fmt: skip
    assert lines[0].startswith("127.0.0.2 "), lines[0]


def test_an_instance_killed_mid_upload(cluster: Cluster, tmp_path: Path) -> None:
    data = payload(4 * MIB + 7)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    with source.open("rb") as f:
        uploader = tus.TusClient(cluster.url + "/api/v1/uploads", headers=cluster.headers).uploader(
            file_stream=f,
            chunk_size=256 * 1024,
            metadata={"path": "tus/survivor.bin"},
            retries=TUS_RETRIES,
            retry_delay=TUS_RETRY_DELAY,
        )
        for _ in range(6):
            uploader.upload_chunk()
        # Kill an instance while the next chunks are being sent.
        killer = threading.Thread(target=cluster.kill, args=(0,))
        killer.start()
        uploader.upload()
        killer.join()
    assert cluster.instances[0].process.poll() is not None
    assert uploader.offset == len(data)
    assert stored_sha256(cluster, "tus/survivor.bin") == hashlib.sha256(data).hexdigest()
    for index in (1, 2):
        response = requests.get(
            cluster.instance_url(index) + "/api/v1/meta/tus/survivor.bin",
            headers=cluster.headers,
            timeout=10,
        )
        assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_instance_killed_while_it_writes_a_chunk(cluster: Cluster) -> None:
    """The instance dies holding the upload (its lock or lease on it): the client resumes
    through nginx on the others as soon as tus clients retry, not a minute later."""
    data = payload(MIB + 5)
    create = requests.post(
        cluster.url + "/api/v1/uploads",
        headers=cluster.headers | {
            "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
            "Upload-Metadata": "path " + base64.b64encode(b"tus/held.bin").decode(),
        },
        timeout=30,
    )  # fmt: skip
    assert create.status_code == 201
    upload_path = urlsplit(create.headers["Location"]).path
    chunk = 256 * 1024
    port = int(cluster.instance_url(0).rsplit(":", 1)[1])
    head = (
        f"PATCH {upload_path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: Bearer {cluster.token}\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {chunk}\r\n\r\n"
    )

    def hold() -> socket.socket:
        """Half a chunk sent straight to instance 0, which is left waiting for the rest."""
        sock = socket.create_connection(("127.0.0.1", port), 10)
        sock.sendall(head.encode() + data[: chunk // 2])
        return sock

    held = [hold()]

    def holding() -> bool:
        """Does instance 0 hold the upload? An empty PATCH to instance 1 is refused then."""
        probe = requests.patch(
            cluster.instance_url(1) + upload_path,
            headers=cluster.headers | {
                "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=30,
        )  # fmt: skip
        if probe.status_code == 423:
            return True
        assert probe.status_code == 204, probe.text
        if select.select(held, [], [], 0)[0]:  # instance 0 answered: it met the probe's lock
            held[0].close()
            held[0] = hold()
        return False

    wait_for(holding, 30)
    if cluster.seaweed is not None:  # what holds it is a lease in the bucket, not a host's lock
        bucket, _, prefix = cluster.store.removeprefix("s3://").partition("/")
        leases = cluster.seaweed.client().list_objects_v2(
            Bucket=bucket, Prefix=f"{prefix}/.filedock/records/leases/"
        )
        assert leases.get("KeyCount") == 1
    cluster.kill(0)
    held[0].close()
    with io.BytesIO(data) as f:
        uploader = tus.TusClient(cluster.url + "/api/v1/uploads", headers=cluster.headers).uploader(
            file_stream=f, url=cluster.url + upload_path, chunk_size=chunk,
            retries=TUS_RETRIES, retry_delay=TUS_RETRY_DELAY,
        )  # fmt: skip
        uploader.upload()
    assert uploader.offset == len(data)
    assert stored_sha256(cluster, "tus/held.bin") == hashlib.sha256(data).hexdigest()


def increment(cluster: Cluster, count: int, errors: list[str]) -> None:
    """Add 1 to the document's n, count times: read, then PATCH with a JSON Patch test of
    the value read; a 409 (someone else wrote first) reads again. A 503 with Retry-After (a
    store slow to answer on a loaded machine: nothing was changed, API.md section 2) is tried
    again, as a client does; anything else is an error."""
    session = requests.Session()
    session.headers.update(cluster.headers)
    url = cluster.url + "/api/v1/json/counter.json"
    done = 0
    while done < count:
        current = session.get(url, timeout=60)
        if retry_later(current):
            continue
        if current.status_code != 200:
            errors.append(f"GET {current.status_code} {current.text[:200]}")
            continue
        n = current.json()["n"]
        patch = [{"op": "test", "path": "/n", "value": n},
                 {"op": "replace", "path": "/n", "value": n + 1}]  # fmt: skip
        response = session.patch(
            url, json=patch, headers={"Content-Type": "application/json-patch+json"}, timeout=60
        )
        if response.status_code == 200:
            done += 1
        elif response.status_code != 409 and not retry_later(response):
            errors.append(f"PATCH {response.status_code} {response.text[:200]}")


def retry_later(response: requests.Response) -> bool:
    """Is this a 503 that asks to be tried again (then wait as it asks, at most a second)?"""
    if response.status_code != 503 or "Retry-After" not in response.headers:
        return False
    time.sleep(min(float(response.headers["Retry-After"]), 1.0))
    return True


def test_no_json_update_is_lost_across_instances(cluster: Cluster) -> None:
    url = cluster.url + "/api/v1/json/counter.json"
    assert requests.put(url, json={"n": 0}, headers=cluster.headers, timeout=10).ok
    errors: list[str] = []
    threads = [
        threading.Thread(target=increment, args=(cluster, 25, errors))
        for _ in range(len(cluster.instances) * 4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert requests.get(url, headers=cluster.headers, timeout=10).json() == {"n": 300}
    for server in cluster.instances:  # every instance took part
        assert served_by(server, "PATCH", "/api/v1/json/counter.json")


def test_a_revoked_token_is_refused_everywhere(cluster: Cluster) -> None:
    token = create_store_token(cluster.store, "read", "temporary", cluster.env)
    headers = {"Authorization": f"Bearer {token}"}

    def status(index: int) -> int:
        url = cluster.instance_url(index) + "/api/v1/files"
        return requests.get(url, headers=headers, timeout=10).status_code

    everywhere = range(len(cluster.instances))
    wait_for(lambda: all(status(i) == 200 for i in everywhere), REVOCATION_SECONDS)
    revoked_at = time.monotonic()
    revoke_store_token(cluster.store, "temporary", cluster.env)
    # Each instance's workers re-read on their own: refused by one is not yet refused by all,
    # so wait until every instance refuses it several times running (new connections, so
    # they reach different workers).
    streaks = dict.fromkeys(everywhere, 0)
    while min(streaks.values()) < 8:
        assert time.monotonic() - revoked_at < REVOCATION_SECONDS, streaks
        for i in everywhere:
            streaks[i] = streaks[i] + 1 if status(i) == 401 else 0
    assert (
        requests.get(cluster.url + "/api/v1/files", headers=headers, timeout=10).status_code == 401
    )
    assert requests.get(cluster.url + "/api/v1/files", headers=cluster.headers, timeout=10).ok


def test_a_signed_link_made_on_one_instance_works_on_all(cluster: Cluster) -> None:
    body = b"signed once, served anywhere"
    put = requests.put(
        cluster.url + "/api/v1/files/shared/note.txt",
        data=body,
        headers=cluster.headers,
        timeout=10,
    )
    assert put.status_code == 201
    link = requests.post(
        cluster.instance_url(0) + "/api/v1/presign",
        json={"path": "shared/note.txt", "method": "GET", "expires_in": 600},
        headers=cluster.headers,
        timeout=10,
    ).json()["url"]
    for base in [cluster.instance_url(i) for i in range(len(cluster.instances))] + [cluster.url]:
        response = requests.get(base + link, timeout=10)
        assert response.status_code == 200, base
        assert response.content == body
    tampered = link.replace("note.txt", "other.txt")
    assert requests.get(cluster.url + tampered, timeout=10).status_code == 403
