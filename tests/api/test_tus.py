"""tus 1.0.0 at /api/v1/uploads (API.md section 7), grouped by method; then real clients."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask.testing import FlaskClient
from werkzeug.http import parse_date

from filedock.app import create_app
from filedock.config import Settings
from filedock.storage import Key
from filedock.storage.local import LocalStorage
from tests.conftest import LiveServer, start_server

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
UPLOADS = "/api/v1/uploads"
JS_DIR = Path(__file__).resolve().parent.parent / "js"
MIB = 1 << 20


def b64(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


def metadata(**values: str) -> str:
    return ",".join(f"{k} {b64(v)}" for k, v in values.items())


def create(
    client: FlaskClient, length: int, path: str = "up/file.bin", **extra: Any
) -> tuple[str, Any]:
    headers = TUS | {"Upload-Length": str(length), "Upload-Metadata": metadata(path=path)}
    headers |= extra.pop("headers", {})
    response = client.post(UPLOADS, headers=headers, **extra)
    return response.headers.get("Location", ""), response


def patch(client: FlaskClient, url: str, offset: int, data: bytes, **headers: str) -> Any:
    return client.patch(
        url,
        data=data,
        headers=TUS | {"Upload-Offset": str(offset), "Content-Type": OCTETS} | headers,
    )


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["code"] == code and body["type"] == "about:blank"
    assert response.headers["Tus-Resumable"] == "1.0.0"


def record_path(store: Path, url: str) -> Path:
    return store / ".filedock" / "state" / "uploads" / (url.rsplit("/", 1)[1] + ".json")


def staging_path(store: Path, url: str) -> Path:
    return store / ".filedock" / "uploads" / (url.rsplit("/", 1)[1] + ".part")


# -- OPTIONS -----------------------------------------------------------------------------------


class TestOptions:
    def test_advertises_version_extensions_limits(self, client: FlaskClient) -> None:
        for url in (UPLOADS, UPLOADS + "/" + "0" * 32):
            response = client.options(url)  # no Tus-Resumable needed
            assert response.status_code == 204
            assert response.headers["Tus-Version"] == "1.0.0"
            assert response.headers["Tus-Resumable"] == "1.0.0"
            assert response.headers["Tus-Extension"].split(",") == [
                "creation", "creation-with-upload", "termination", "checksum", "expiration",
            ]  # fmt: skip
            assert response.headers["Tus-Max-Size"] == str(10 << 30)
            assert response.headers["Tus-Checksum-Algorithm"] == "sha1,sha256"

    def test_max_size_is_max_upload_bytes(self, store_dir: Path) -> None:
        client = create_app(Settings(store=str(store_dir), max_upload_bytes=1234)).test_client()
        assert client.options(UPLOADS).headers["Tus-Max-Size"] == "1234"

    @pytest.mark.parametrize("method", ["PATCH", "HEAD", "DELETE", "POST"])
    def test_cors_preflight(self, client: FlaskClient, method: str) -> None:
        tus_headers = "tus-resumable,upload-offset,upload-length,upload-metadata,upload-checksum"
        response = client.options(
            UPLOADS + "/" + "a" * 32,
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": tus_headers + ",content-type",
            },
        )
        assert response.status_code < 300
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert method in response.headers["Access-Control-Allow-Methods"]
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        for name in tus_headers.split(","):
            assert name in allowed

    def test_cors_exposes_tus_headers(self, client: FlaskClient) -> None:
        _, response = create(client, 3, headers={"Origin": "https://app.example"})
        exposed = response.headers["Access-Control-Expose-Headers"]
        for name in ("Location", "Upload-Offset", "Upload-Length", "Upload-Expires",
                     "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size"):  # fmt: skip
            assert name in exposed


# -- Tus-Resumable -------------------------------------------------------------------------------


class TestTusResumable:
    @pytest.mark.parametrize("version", [None, "0.2.2", "1.0", ""])
    def test_missing_or_unsupported_is_412(self, client: FlaskClient, version: str | None) -> None:
        headers = {"Upload-Length": "3", "Upload-Metadata": metadata(path="x")}
        if version is not None:
            headers["Tus-Resumable"] = version
        response = client.post(UPLOADS, headers=headers)
        assert_problem(response, 412, "precondition-failed")
        assert response.headers["Tus-Version"] == "1.0.0"

    def test_every_method_checks_it(self, client: FlaskClient) -> None:
        url, _ = create(client, 3)
        for method in ("HEAD", "PATCH", "DELETE"):
            response = client.open(url, method=method)
            assert response.status_code == 412
            assert response.headers["Tus-Version"] == "1.0.0"
        assert client.head(url, headers=TUS).status_code == 200  # nothing was changed


# -- POST (creation, creation-with-upload) ----------------------------------------------------


class TestPost:
    def test_creates(self, client: FlaskClient) -> None:
        before = time.time()
        url, response = create(client, 10)
        assert response.status_code == 201
        assert url.startswith(UPLOADS + "/") and len(url.rsplit("/", 1)[1]) == 32
        assert response.headers["Upload-Offset"] == "0"
        expires = response.headers["Upload-Expires"]
        assert expires.endswith(" GMT")  # RFC 9110 IMF-fixdate
        expiry = parse_date(expires)
        assert expiry is not None and expiry.timestamp() > before + 3600
        assert response.data == b""

    def test_path_and_filename(self, client: FlaskClient, store_dir: Path) -> None:
        for meta, stored in [
            (metadata(path="deep/er/a.txt"), "deep/er/a.txt"),
            (metadata(filename="C:\\Users\\me\\b.txt"), "b.txt"),
            (metadata(filename="dir/c.txt", filetype="text/plain"), "c.txt"),
            (metadata(path="p.txt", filename="ignored.txt"), "p.txt"),
        ]:
            response = client.post(
                UPLOADS,
                data=b"hey",
                headers=TUS
                | {"Upload-Length": "3", "Upload-Metadata": meta, "Content-Type": OCTETS},
            )
            assert response.status_code == 201, response.data
            assert response.headers["Upload-Offset"] == "3"
            assert (store_dir / stored).read_bytes() == b"hey"
        assert not (store_dir / "ignored.txt").exists()

    @pytest.mark.parametrize(
        "meta, code",
        [
            ("", "bad-request"),
            (metadata(other="x"), "bad-request"),
            (metadata(path="../sentinel.json"), "invalid-path"),
            (metadata(path="/abs"), "invalid-path"),
            (metadata(path="a/.filedock/x"), "invalid-path"),
            (metadata(path="a\r\nX-Injected: 1"), "invalid-path"),
            (metadata(filename="bad\nname"), "invalid-path"),
            (metadata(filename="dir/"), "invalid-path"),
            ("path not-base64!", "bad-request"),
            ("path YQ", "bad-request"),  # unpadded
            ("path " + b64(b"\xff\xfe"), "bad-request"),  # not UTF-8
            (metadata(path="a") + "," + metadata(path="b"), "bad-request"),
            ("path a b", "bad-request"),
            (metadata(path="a", overwrite="yes"), "bad-request"),
        ],
    )
    def test_bad_metadata(self, client: FlaskClient, store_dir: Path, meta: str, code: str) -> None:
        response = client.post(
            UPLOADS, headers=TUS | {"Upload-Length": "3", "Upload-Metadata": meta}
        )
        assert_problem(response, 400, code)
        assert "X-Injected" not in response.headers
        assert json.loads((store_dir.parent / "sentinel.json").read_text()) == {
            "secret": "sentinel"
        }
        assert not list((store_dir / ".filedock").glob("uploads/*"))

    @pytest.mark.parametrize("length", [None, "-1", "abc", "1.5", " 3", "99999999999999999999"])
    def test_bad_upload_length(self, client: FlaskClient, length: str | None) -> None:
        headers = TUS | {"Upload-Metadata": metadata(path="x")}
        if length is not None:
            headers["Upload-Length"] = length
        assert_problem(client.post(UPLOADS, headers=headers), 400, "bad-request")

    def test_defer_length_is_not_offered(self, client: FlaskClient) -> None:
        headers = TUS | {"Upload-Defer-Length": "1", "Upload-Metadata": metadata(path="x")}
        assert_problem(client.post(UPLOADS, headers=headers), 400, "bad-request")

    def test_too_large(self, store_dir: Path) -> None:
        client = create_app(Settings(store=str(store_dir), max_upload_bytes=100)).test_client()
        _, response = create(client, 101)
        assert_problem(response, 413, "too-large")
        _, response = create(client, 100)
        assert response.status_code == 201

    def test_target_exists(self, client: FlaskClient, store_dir: Path) -> None:
        (store_dir / "taken.txt").write_bytes(b"old")
        _, response = create(client, 3, path="taken.txt")
        assert_problem(response, 412, "exists")
        response = client.post(
            UPLOADS,
            data=b"new",
            headers=TUS
            | {
                "Upload-Length": "3",
                "Upload-Metadata": metadata(path="taken.txt", overwrite="true"),
                "Content-Type": OCTETS,
            },
        )
        assert response.status_code == 201
        assert (store_dir / "taken.txt").read_bytes() == b"new"

    def test_creation_with_upload_partial(self, client: FlaskClient) -> None:
        url, response = create(client, 10, data=b"0123", headers={"Content-Type": OCTETS})
        assert response.status_code == 201
        assert response.headers["Upload-Offset"] == "4"
        assert client.head(url, headers=TUS).headers["Upload-Offset"] == "4"

    def test_creation_with_upload_needs_octet_stream(self, client: FlaskClient) -> None:
        _, response = create(client, 4, data=b"0123", headers={"Content-Type": "text/plain"})
        assert_problem(response, 415, "unsupported-media-type")

    def test_creation_with_upload_checksum_mismatch(self, client: FlaskClient) -> None:
        url, response = create(
            client,
            4,
            data=b"0123",
            headers={"Content-Type": OCTETS, "Upload-Checksum": "sha1 " + b64(b"x" * 20)},
        )
        assert_problem(response, 460, "digest-mismatch")
        assert response.get_json()["title"] == "Checksum Mismatch"
        assert url  # the upload exists, empty, and can be continued
        assert client.head(url, headers=TUS).headers["Upload-Offset"] == "0"
        assert patch(client, url, 0, b"0123").status_code == 204

    def test_empty_upload_is_stored_at_once(self, client: FlaskClient, store_dir: Path) -> None:
        url, response = create(client, 0, path="empty.txt")
        assert response.status_code == 201
        assert (store_dir / "empty.txt").read_bytes() == b""
        assert client.head(url, headers=TUS).headers["Upload-Offset"] == "0"

    def test_read_only(self, store_dir: Path) -> None:
        client = create_app(Settings(store=str(store_dir), read_only=True)).test_client()
        _, response = create(client, 3)
        assert_problem(response, 403, "read-only")


# -- HEAD ----------------------------------------------------------------------------------------


class TestHead:
    def test_reports_offset_length_metadata(self, client: FlaskClient) -> None:
        meta = metadata(path="h.bin", filetype="application/x-thing")
        url, _ = create(client, 10, headers={"Upload-Metadata": meta})
        patch(client, url, 0, b"abc")
        response = client.head(url, headers=TUS)
        assert response.status_code == 200
        assert response.headers["Upload-Offset"] == "3"
        assert response.headers["Upload-Length"] == "10"
        assert response.headers["Upload-Metadata"] == meta
        assert response.headers["Cache-Control"] == "no-store"
        assert parse_date(response.headers["Upload-Expires"]) is not None
        assert response.data == b""

    @pytest.mark.parametrize("upload_id", ["0" * 32, "nope", "A" * 32, "..%2Fsentinel.json"])
    def test_unknown_is_404(self, client: FlaskClient, upload_id: str) -> None:
        response = client.head(f"{UPLOADS}/{upload_id}", headers=TUS)
        assert response.status_code == 404
        assert response.data == b""

    def test_finished_upload_reports_its_end(self, client: FlaskClient) -> None:
        url, _ = create(client, 3)
        assert patch(client, url, 0, b"abc").status_code == 204
        response = client.head(url, headers=TUS)
        assert response.status_code == 200
        assert response.headers["Upload-Offset"] == "3" == response.headers["Upload-Length"]


# -- PATCH ---------------------------------------------------------------------------------------


class TestPatch:
    def test_chunks_then_commit(self, client: FlaskClient, store_dir: Path) -> None:
        data = os.urandom(3000)
        url, _ = create(client, len(data), path="a/b/c.bin")
        for start in range(0, 3000, 1000):
            response = patch(client, url, start, data[start : start + 1000])
            assert response.status_code == 204, response.data
            assert response.headers["Upload-Offset"] == str(start + 1000)
            assert parse_date(response.headers["Upload-Expires"]) is not None
            assert response.data == b""
        assert (store_dir / "a/b/c.bin").read_bytes() == data
        info = LocalStorage(str(store_dir)).stat(Key("a/b/c.bin"))
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert not staging_path(store_dir, url).exists()

    def test_nothing_visible_before_the_end(self, client: FlaskClient, store_dir: Path) -> None:
        url, _ = create(client, 6, path="late.txt")
        patch(client, url, 0, b"abc")
        assert not (store_dir / "late.txt").exists()

    @pytest.mark.parametrize("offset", [0, 2, 4, 100])
    def test_offset_mismatch_is_409(self, client: FlaskClient, offset: int) -> None:
        url, _ = create(client, 10)
        patch(client, url, 0, b"abc")
        assert_problem(patch(client, url, offset, b"def"), 409, "conflict")
        assert client.head(url, headers=TUS).headers["Upload-Offset"] == "3"

    @pytest.mark.parametrize("offset", [None, "-1", "x", ""])
    def test_bad_upload_offset_is_400(self, client: FlaskClient, offset: str | None) -> None:
        url, _ = create(client, 10)
        headers = TUS | {"Content-Type": OCTETS}
        if offset is not None:
            headers["Upload-Offset"] = offset
        assert_problem(client.patch(url, data=b"a", headers=headers), 400, "bad-request")

    @pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain"])
    def test_wrong_content_type_is_415(self, client: FlaskClient, content_type: str | None) -> None:
        url, _ = create(client, 10)
        headers = TUS | {"Upload-Offset": "0"}
        if content_type:
            headers["Content-Type"] = content_type
        response = client.patch(url, data=b"a", headers=headers)
        assert_problem(response, 415, "unsupported-media-type")

    def test_past_upload_length_is_413_and_not_kept(self, client: FlaskClient) -> None:
        url, _ = create(client, 5)
        patch(client, url, 0, b"ab")
        assert_problem(patch(client, url, 2, b"cdefgh"), 413, "too-large")
        assert client.head(url, headers=TUS).headers["Upload-Offset"] == "2"
        assert patch(client, url, 2, b"cde").status_code == 204

    @pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
    def test_checksum(self, client: FlaskClient, algorithm: str) -> None:
        url, _ = create(client, 6)
        good = b64(hashlib.new(algorithm, b"abc").digest())
        response = patch(client, url, 0, b"abc", **{"Upload-Checksum": f"{algorithm} {good}"})
        assert response.status_code == 204
        wrong = b64(hashlib.new(algorithm, b"xyz").digest())
        response = patch(client, url, 3, b"def", **{"Upload-Checksum": f"{algorithm} {wrong}"})
        assert_problem(response, 460, "digest-mismatch")
        assert client.head(url, headers=TUS).headers["Upload-Offset"] == "3"  # chunk not kept
        assert patch(client, url, 3, b"def").status_code == 204

    @pytest.mark.parametrize(
        "header", ["md5 " + b64(b"x" * 16), "sha1", "sha1 !!!", "sha256 " + b64(b"short")]
    )
    def test_bad_checksum_header_is_400(self, client: FlaskClient, header: str) -> None:
        url, _ = create(client, 6)
        assert_problem(
            patch(client, url, 0, b"abc", **{"Upload-Checksum": header}), 400, "bad-request"
        )

    def test_target_taken_meanwhile(self, client: FlaskClient, store_dir: Path) -> None:
        url, _ = create(client, 3, path="race.txt")
        (store_dir / "race.txt").write_bytes(b"someone else")
        assert_problem(patch(client, url, 0, b"abc"), 412, "exists")
        assert (store_dir / "race.txt").read_bytes() == b"someone else"
        head = client.head(url, headers=TUS)  # the upload stays, complete
        assert head.status_code == 200 and head.headers["Upload-Offset"] == "3"
        # the client may clear the way and commit again with an empty PATCH...
        (store_dir / "race.txt").unlink()
        assert patch(client, url, 3, b"").status_code == 204
        assert (store_dir / "race.txt").read_bytes() == b"abc"

    def test_target_taken_meanwhile_then_deleted(
        self, client: FlaskClient, store_dir: Path
    ) -> None:
        url, _ = create(client, 3, path="race.txt")
        (store_dir / "race.txt").write_bytes(b"other")
        assert patch(client, url, 0, b"abc").status_code == 412
        assert client.delete(url, headers=TUS).status_code == 204
        assert client.head(url, headers=TUS).status_code == 404
        assert (store_dir / "race.txt").read_bytes() == b"other"

    def test_overwrite_replaces_at_commit(self, client: FlaskClient, store_dir: Path) -> None:
        meta = metadata(path="o.txt", overwrite="true")
        url, _ = create(client, 3, headers={"Upload-Metadata": meta})
        (store_dir / "o.txt").write_bytes(b"old")
        assert patch(client, url, 0, b"new").status_code == 204
        assert (store_dir / "o.txt").read_bytes() == b"new"

    def test_parent_is_a_file(self, client: FlaskClient, store_dir: Path) -> None:
        url, _ = create(client, 3, path="p/q.txt")
        (store_dir / "p").write_bytes(b"file")
        assert_problem(patch(client, url, 0, b"abc"), 409, "conflict")

    def test_finished_upload(self, client: FlaskClient) -> None:
        url, _ = create(client, 3)
        patch(client, url, 0, b"abc")
        assert patch(client, url, 3, b"").status_code == 204  # a retried final PATCH
        assert_problem(patch(client, url, 0, b"abc"), 409, "conflict")
        assert_problem(patch(client, url, 3, b"d"), 413, "too-large")

    def test_unknown_is_404(self, client: FlaskClient) -> None:
        assert_problem(patch(client, UPLOADS + "/" + "f" * 32, 0, b"a"), 404, "not-found")


# -- DELETE --------------------------------------------------------------------------------------


class TestDelete:
    def test_terminates(self, client: FlaskClient, store_dir: Path) -> None:
        url, _ = create(client, 10)
        patch(client, url, 0, b"abc")
        response = client.delete(url, headers=TUS)
        assert response.status_code == 204 and response.data == b""
        assert client.head(url, headers=TUS).status_code == 404
        assert_problem(patch(client, url, 3, b"d"), 404, "not-found")
        assert not staging_path(store_dir, url).exists()
        assert not record_path(store_dir, url).exists()

    def test_finished_upload_keeps_its_object(self, client: FlaskClient, store_dir: Path) -> None:
        url, _ = create(client, 3, path="kept.txt")
        patch(client, url, 0, b"abc")
        assert client.delete(url, headers=TUS).status_code == 204
        assert (store_dir / "kept.txt").read_bytes() == b"abc"

    def test_unknown_is_404(self, client: FlaskClient) -> None:
        assert_problem(client.delete(UPLOADS + "/" + "e" * 32, headers=TUS), 404, "not-found")


# -- X-HTTP-Method-Override ----------------------------------------------------------------------


class TestMethodOverride:
    def test_patch_head_delete_as_post(self, client: FlaskClient) -> None:
        url, _ = create(client, 6)
        response = client.post(
            url,
            data=b"abc",
            headers=TUS
            | {
                "X-HTTP-Method-Override": "PATCH",
                "Upload-Offset": "0",
                "Content-Type": OCTETS,
            },  # fmt: skip
        )
        assert response.status_code == 204 and response.headers["Upload-Offset"] == "3"
        response = client.post(url, headers=TUS | {"X-HTTP-Method-Override": "HEAD"})
        assert response.status_code == 200 and response.headers["Upload-Offset"] == "3"
        response = client.post(url, headers=TUS | {"X-HTTP-Method-Override": "DELETE"})
        assert response.status_code == 204
        assert client.head(url, headers=TUS).status_code == 404

    def test_post_without_override_is_405(self, client: FlaskClient) -> None:
        url, _ = create(client, 6)
        assert_problem(client.post(url, headers=TUS), 405, "method-not-allowed")


# -- expiration ----------------------------------------------------------------------------------


def expire(store: Path, url: str) -> None:
    path = record_path(store, url)
    record = json.loads(path.read_text())
    record["expires"] = time.time() - 1
    path.write_text(json.dumps(record))


class TestExpiration:
    def test_expired_upload_is_gone(self, client: FlaskClient, store_dir: Path) -> None:
        url, _ = create(client, 10)
        patch(client, url, 0, b"abc")
        expire(store_dir, url)
        assert client.head(url, headers=TUS).status_code == 404
        assert not staging_path(store_dir, url).exists()
        assert not record_path(store_dir, url).exists()

    def test_patch_extends_expiry(self, client: FlaskClient, store_dir: Path) -> None:
        url, _ = create(client, 10)
        record = json.loads(record_path(store_dir, url).read_text())
        record["expires"] = time.time() + 60
        record_path(store_dir, url).write_text(json.dumps(record))
        response = patch(client, url, 0, b"abc")
        expiry = parse_date(response.headers["Upload-Expires"])
        assert expiry is not None and expiry.timestamp() > time.time() + 3600

    def test_creation_sweeps_at_most_every_interval(
        self, client: FlaskClient, store_dir: Path
    ) -> None:
        first, _ = create(client, 10)  # this creation swept (nothing) and set the throttle
        second, _ = create(client, 10)
        expire(store_dir, first)
        create(client, 10)  # within the interval: no sweep
        assert staging_path(store_dir, first).exists()
        (store_dir / ".filedock" / "state" / "uploads-swept-at").write_text("0")
        create(client, 10)  # the interval has passed: this one sweeps
        assert not staging_path(store_dir, first).exists()
        assert not record_path(store_dir, first).exists()
        assert staging_path(store_dir, second).exists()


# -- over the wire: a real server ----------------------------------------------------------------


def raw_request(sock: socket.socket, head: str, body: bytes = b"") -> None:
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def create_live(url: str, length: int, path: str) -> str:
    response = requests.post(
        url + UPLOADS,
        headers=TUS | {"Upload-Length": str(length), "Upload-Metadata": metadata(path=path)},
        timeout=30,
    )
    assert response.status_code == 201
    return url + response.headers["Location"]


def patch_head(url: str, offset: int, length: int) -> str:
    parts = urlsplit(url)
    return (
        f"PATCH {parts.path} HTTP/1.1\nHost: x\nTus-Resumable: 1.0.0\n"
        f"Upload-Offset: {offset}\nContent-Type: {OCTETS}\nContent-Length: {length}\n"
        "Connection: close\n"
    )


def flock_held(store_dir: Path, name: str) -> bool:
    """Does some process hold the local store's lock called name (FileLocker's file), by
    /proc/locks, without taking it?"""
    digest = hashlib.sha256(name.encode()).hexdigest()
    path = store_dir / ".filedock" / "locks" / "names" / digest[:2] / (digest + ".lock")
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" not in fields and "FLOCK" in fields and fields[5].endswith(f":{inode}"):
            return True
    return False


class TestOverTheWire:
    def test_concurrent_patch_loses_with_423(
        self, live_server: LiveServer, store_dir: Path
    ) -> None:
        upload = create_live(live_server.url, 10, "c.bin")
        parts = urlsplit(live_server.url)
        slow = socket.create_connection((parts.hostname, parts.port), timeout=30)
        try:
            raw_request(slow, patch_head(upload, 0, 10), b"01234")  # holds the upload's lock
            # ...once it has it: a probe sent before could take the lock first, and the slow
            # request would then be the one refused
            name = "upload:" + upload.rsplit("/", 1)[1]
            deadline = time.monotonic() + 30  # the slow request may wait for a busy machine
            while not flock_held(store_dir, name) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert flock_held(store_dir, name)
            statuses = []
            while time.monotonic() < deadline:
                # a wrong offset: 409 while the upload is free (changing nothing), 423 while taken
                response = requests.patch(
                    upload,
                    data=b"56789",
                    headers=TUS | {"Upload-Offset": "1", "Content-Type": OCTETS},
                    timeout=30,
                )
                statuses.append(response.status_code)
                if response.status_code == 423:
                    assert response.json()["code"] == "conflict"
                    break
                time.sleep(0.05)
            assert statuses[-1] == 423, statuses
            slow.sendall(b"56789")
            assert read_status(slow) == 204
        finally:
            slow.close()
        assert (store_dir / "c.bin").read_bytes() == b"0123456789"

    def test_chunked_body_past_length(self, live_server: LiveServer, store_dir: Path) -> None:
        upload = create_live(live_server.url, 5, "chunked.bin")
        response = requests.patch(
            upload,
            data=iter([b"abc", b"defgh"]),  # no Content-Length: Transfer-Encoding: chunked
            headers=TUS | {"Upload-Offset": "0", "Content-Type": OCTETS},
            timeout=30,
        )
        assert response.status_code == 413 and response.json()["code"] == "too-large"
        assert requests.head(upload, headers=TUS, timeout=30).headers["Upload-Offset"] == "0"
        assert staging_path(store_dir, upload).stat().st_size == 0
        response = requests.patch(
            upload,
            data=iter([b"abc", b"de"]),
            headers=TUS | {"Upload-Offset": "0", "Content-Type": OCTETS},
            timeout=30,
        )
        assert response.status_code == 204
        assert (store_dir / "chunked.bin").read_bytes() == b"abcde"

    def test_cut_off_body_keeps_what_arrived(self, live_server: LiveServer) -> None:
        upload = create_live(live_server.url, 10, "cut.bin")
        parts = urlsplit(live_server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            raw_request(sock, patch_head(upload, 0, 10), b"0123")
            sock.shutdown(socket.SHUT_WR)
            sock.recv(4096)
        offset = ""
        for _ in range(100):  # the server notices the cut when it reads
            offset = requests.head(upload, headers=TUS, timeout=30).headers["Upload-Offset"]
            if offset == "4":
                break
            time.sleep(0.05)
        assert offset == "4"
        response = requests.patch(
            upload, data=b"456789", headers=TUS | {"Upload-Offset": "4", "Content-Type": OCTETS},
            timeout=30,
        )  # fmt: skip
        assert response.status_code == 204


# -- real clients: tuspy and tus-js-client ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(20 * MIB))
    return path


def assert_stored(store: Path, key: str, payload: Path) -> None:
    data = payload.read_bytes()
    stored = (store / key).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    info = LocalStorage(str(store)).stat(Key(key))
    assert info.etag == f'"{hashlib.sha256(data).hexdigest()}"'
    assert not list((store / ".filedock" / "uploads").iterdir())


@pytest.fixture
def restartable(store_dir: Path) -> Iterator[list[LiveServer]]:
    servers: list[LiveServer] = []
    yield servers
    for server in servers:
        server.stop()


def serve_on(store: Path, port: int, servers: list[LiveServer]) -> LiveServer:
    server = start_server("--store", str(store), "--port", str(port))
    servers.append(server)
    return server


class TestTuspy:
    def test_20_mib_in_5_mib_chunks(
        self, live_server: LiveServer, store_dir: Path, payload: Path
    ) -> None:
        from tusclient import client as tus

        with payload.open("rb") as f:
            uploader = tus.TusClient(live_server.url + UPLOADS).uploader(
                file_stream=f, chunk_size=5 * MIB, metadata={"path": "py/full.bin"}
            )
            uploader.upload()
        assert uploader.offset == 20 * MIB
        assert_stored(store_dir, "py/full.bin", payload)

    def test_resume_after_restart(
        self, restartable: list[LiveServer], store_dir: Path, payload: Path
    ) -> None:
        from tusclient import client as tus

        port = free_port()
        server = serve_on(store_dir, port, restartable)
        options = {"chunk_size": 5 * MIB, "metadata": {"path": "py/resumed.bin"}}
        with payload.open("rb") as f:
            first = tus.TusClient(server.url + UPLOADS).uploader(file_stream=f, **options)
            first.upload_chunk()
            first.upload_chunk()
            assert first.offset == 10 * MIB
            url = first.url
        assert not (store_dir / "py/resumed.bin").exists()
        server.stop()
        server = serve_on(store_dir, port, restartable)
        with payload.open("rb") as f:
            # tuspy's resume: given the upload URL it asks the server for the offset (HEAD)
            second = tus.TusClient(server.url + UPLOADS).uploader(file_stream=f, url=url, **options)
            assert second.offset == 10 * MIB
            second.upload()
        assert second.url == url
        assert requests.head(url, headers=TUS, timeout=30).headers["Upload-Offset"] == str(20 * MIB)
        assert_stored(store_dir, "py/resumed.bin", payload)


def node(*args: str, fails: bool = False) -> dict[str, Any]:
    """Run tus_upload.js; its one JSON line (it must succeed, or with fails=True, fail)."""
    if not (JS_DIR / "node_modules" / "tus-js-client").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True)
    result = subprocess.run(
        ["node", str(JS_DIR / "tus_upload.js"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode != 0) == fails, result.stdout + result.stderr
    value: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


class TestTusJsClient:
    def test_20_mib_in_5_mib_chunks(
        self, live_server: LiveServer, store_dir: Path, payload: Path
    ) -> None:
        out = node(
            live_server.url + UPLOADS, str(payload), "js/full.bin", str(5 * MIB),
            "--with-creation-upload",
        )  # fmt: skip
        assert out["event"] == "success"
        assert_stored(store_dir, "js/full.bin", payload)

    def test_generic_filetype_gives_the_extensions_type(
        self, live_server: LiveServer, store_dir: Path
    ) -> None:
        source = store_dir.parent / "photo.jpg"
        source.write_bytes(os.urandom(3000))
        # tus_upload.js declares filetype application/octet-stream, as browsers do for files
        # whose type they do not know: the name's extension then tells the type
        out = node(live_server.url + UPLOADS, str(source), "js/photo.jpg", "1024")
        assert out["event"] == "success"
        meta = requests.get(live_server.url + "/api/v1/meta/js/photo.jpg", timeout=30).json()
        assert meta["content_type"] == "image/jpeg"
        download = requests.get(live_server.url + "/api/v1/files/js/photo.jpg", timeout=30)
        assert download.headers["Content-Type"] == "image/jpeg"

    def test_resume_after_restart(
        self, restartable: list[LiveServer], store_dir: Path, payload: Path
    ) -> None:
        port = free_port()
        server = serve_on(store_dir, port, restartable)
        endpoint = server.url + UPLOADS
        out = node(endpoint, str(payload), "js/resumed.bin", str(5 * MIB), "--stop-after", "2")
        assert out == {"event": "stopped", "url": out["url"], "offset": 10 * MIB}
        assert not (store_dir / "js/resumed.bin").exists()
        server.stop()
        server = serve_on(store_dir, port, restartable)
        url = out["url"]
        out = node(endpoint, str(payload), "js/resumed.bin", str(5 * MIB), "--resume", url)
        assert out == {"event": "success", "url": url, "offset": 20 * MIB}  # the same upload
        assert requests.head(url, headers=TUS, timeout=30).headers["Upload-Offset"] == str(20 * MIB)
        assert_stored(store_dir, "js/resumed.bin", payload)


class TestExistingTargetWithTusJsClient:
    """An existing target is 412, which tus-js-client (and Uppy on it) does not retry: a 409
    it takes for an offset conflict, and retries for as long as its retry delays say."""

    def test_at_creation_fails_at_once(self, live_server: LiveServer, store_dir: Path) -> None:
        (store_dir / "taken.bin").write_bytes(b"already here")
        source = store_dir.parent / "new.bin"
        source.write_bytes(b"x" * 3000)
        out = node(live_server.url + UPLOADS, str(source), "taken.bin", "1024", fails=True)
        assert out["event"] == "error" and out["status"] == 412
        assert out["requests"] == 1  # the creation, not retried
        assert (store_dir / "taken.bin").read_bytes() == b"already here"

    def test_at_the_final_patch_fails_at_once(
        self, live_server: LiveServer, store_dir: Path
    ) -> None:
        source = store_dir.parent / "new.bin"
        source.write_bytes(os.urandom(3000))
        endpoint = live_server.url + UPLOADS
        out = node(endpoint, str(source), "late.bin", "1024", "--stop-after", "1")
        assert out["event"] == "stopped" and out["offset"] == 1024
        (store_dir / "late.bin").write_bytes(b"someone else")
        out = node(endpoint, str(source), "late.bin", "1024", "--resume", out["url"], fails=True)
        assert out["event"] == "error" and out["status"] == 412
        assert out["requests"] == 3  # HEAD, the middle PATCH and the last, none retried
        assert (store_dir / "late.bin").read_bytes() == b"someone else"


def test_openapi_fragment_covers_every_route(app: Any) -> None:
    from filedock.api.tus import OPENAPI_PATHS

    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("tus."):
            path = rule.rule.replace("<upload_id>", "{upload_id}")
            for method in rule.methods - {"HEAD"} | ({"HEAD"} & rule.methods):
                assert method.lower() in OPENAPI_PATHS[path], (path, method)
