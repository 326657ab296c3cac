"""The tus rules (resumable.py) and the staging data they use, on every store, without HTTP."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from filedock import resumable
from filedock.resumable import (
    PREFIX_HASHES,
    Checksum,
    ChecksumMismatch,
    InvalidUpload,
    OffsetMismatch,
    Target,
    TargetExists,
    UploadNotFound,
    Uploads,
    parse_checksum,
    parse_metadata,
    parse_target,
)
from filedock.sha256state import TAG, ResumableSha256, libcrypto
from filedock.storage import InvalidKey, Key, Locked, Storage, TooLarge
from filedock.storage.local import LocalStorage
from filedock.storage.locks import FileLocker
from filedock.storage.memory import MemoryStorage
from filedock.upload_quota import (
    UNRECORDED_CLAIM_SECONDS,
    Limits,
    TooManyUploads,
    claim_name,
    owner_of,
)


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, store_dir: Path) -> Storage:
    if request.param == "memory":
        return MemoryStorage()
    return LocalStorage(str(store_dir))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def read(store: Any, key: str) -> bytes:
    with store.open(Key(key)) as f:
        data: bytes = f.read()
    return data


def target(key: str = "t/file.bin", overwrite: bool = False) -> Target:
    return Target(Key(key), overwrite, "")


# -- the resumable SHA-256 -----------------------------------------------------------------------


def test_libcrypto_is_found() -> None:
    assert libcrypto() is not None


def test_saved_state_resumes_to_hashlib_digest() -> None:
    data = os.urandom(300_001)
    expected = hashlib.sha256(data).hexdigest()
    for cut in (0, 1, 63, 64, 65, 100_000, 300_001):
        first = ResumableSha256.new()
        assert first is not None
        first.update(data[:cut])
        state = first.state()
        assert len(state) == 112
        second = ResumableSha256.from_state(TAG, state)  # as another process would
        assert second is not None
        second.update(data[cut:])
        assert second.hexdigest() == expected


def test_foreign_state_is_not_resumed() -> None:
    assert ResumableSha256.from_state("openssl-sha256-ctx/big/112", b"\0" * 112) is None


# -- parsing ---------------------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_parse_metadata() -> None:
    header = f"path {b64('a/b.txt')},empty,overwrite {b64('true')}"
    assert parse_metadata(header) == {"path": "a/b.txt", "empty": "", "overwrite": "true"}
    assert parse_metadata(None) == {} == parse_metadata("  ")


@pytest.mark.parametrize(
    "header", ["path x!", "path YQ", f"path {b64('a')} extra", f"a {b64('1')},a {b64('2')}"]
)
def test_parse_metadata_refuses(header: str) -> None:
    with pytest.raises(InvalidUpload):
        parse_metadata(header)


def test_parse_target() -> None:
    # the type is decided here (API.md section 3): guessed when none useful is declared
    assert parse_target({"path": "x/y"}) == Target(Key("x/y"), False, "application/octet-stream")
    assert parse_target({"path": "a.png"}).content_type == "image/png"
    assert parse_target({"path": "a.png", "filetype": "image/gif"}).content_type == "image/gif"
    generic = {"path": "a.png", "filetype": "application/octet-stream"}
    assert parse_target(generic).content_type == "image/png"
    assert parse_target({"filename": "..\\..\\z.txt", "filetype": "text/plain"}) == Target(
        Key("z.txt"), False, "text/plain"
    )
    assert parse_target({"path": "p", "overwrite": "true"}).overwrite
    bad_type = {"path": "p.txt", "filetype": "text/html\r\nX: y"}
    assert parse_target(bad_type).content_type == "text/plain"
    with pytest.raises(InvalidKey):
        parse_target({"path": "a/../b"})
    with pytest.raises(InvalidKey):
        parse_target({"filename": "a\x00b"})
    with pytest.raises(InvalidUpload):
        parse_target({"name": "x"})


def test_parse_checksum() -> None:
    digest = hashlib.sha1(b"x").digest()
    assert parse_checksum("sha1 " + base64.b64encode(digest).decode()) == Checksum("sha1", digest)
    assert parse_checksum(None) is None
    for bad in ("crc32 AAAA", "sha256 AAAA", "sha1", "sha1 ***"):
        with pytest.raises(InvalidUpload):
            parse_checksum(bad)


# -- uploads on each store ---------------------------------------------------------------------


def test_upload_in_chunks(store: Any) -> None:
    uploads = Uploads(store, 1 << 20)
    data = os.urandom(10_000)
    upload = uploads.create(len(data), "", target())
    for start in range(0, len(data), 3000):
        chunk = data[start : start + 3000]
        upload = uploads.append(upload.id, start, io.BytesIO(chunk), len(chunk))
    assert upload.done and upload.sha256 == hashlib.sha256(data).hexdigest()
    assert read(store, "t/file.bin") == data
    assert store.stat(Key("t/file.bin")).etag == f'"{upload.sha256}"'


@pytest.mark.parametrize("use_openssl", [True, False])
def test_hash_resumes_in_another_process(store: Any, use_openssl: bool) -> None:
    """Without libcrypto, a process that did not see the earlier chunks re-hashes them once."""
    uploads = Uploads(store, 1 << 20, use_openssl=use_openssl)
    data = os.urandom(5000)
    upload = uploads.create(len(data), "", target())
    upload = uploads.append(upload.id, 0, io.BytesIO(data[:2000]), 2000)
    assert bool(upload.hash_state) is use_openssl
    PREFIX_HASHES.drop(upload.id)  # what another worker, or a restarted server, starts with
    upload = uploads.append(upload.id, 2000, io.BytesIO(data[2000:]), 3000)
    assert upload.sha256 == hashlib.sha256(data).hexdigest()


def test_state_saved_with_openssl_resumes_without_it(store: Any) -> None:
    data = os.urandom(5000)
    upload = Uploads(store, 1 << 20).create(len(data), "", target())
    upload = Uploads(store, 1 << 20).append(upload.id, 0, io.BytesIO(data[:10]), 10)
    fallback = Uploads(store, 1 << 20, use_openssl=False)
    upload = fallback.append(upload.id, 10, io.BytesIO(data[10:]), None)
    assert upload.sha256 == hashlib.sha256(data).hexdigest()


def test_a_record_read_before_the_lock_is_read_again_under_it(store: Any) -> None:
    """A caller passes the record it read; another request's chunk landed since: the offset
    is checked against the record as it is once the lock is held, not the one passed in."""
    uploads = Uploads(store, 100)
    stale = uploads.create(6, "", target())
    uploads.append(stale.id, 0, io.BytesIO(b"abc"), 3, known=stale)
    with pytest.raises(OffsetMismatch):
        uploads.append(stale.id, 0, io.BytesIO(b"xyz"), 3, known=stale)
    upload = uploads.append(stale.id, 3, io.BytesIO(b"def"), 3, known=stale)
    assert upload.done and upload.sha256 == hashlib.sha256(b"abcdef").hexdigest()


def test_offset_and_length_rules(store: Any) -> None:
    uploads = Uploads(store, 100)
    upload = uploads.create(10, "", target())
    uploads.append(upload.id, 0, io.BytesIO(b"abc"), 3)
    with pytest.raises(OffsetMismatch):
        uploads.append(upload.id, 0, io.BytesIO(b"abc"), 3)
    with pytest.raises(TooLarge):
        uploads.append(upload.id, 3, io.BytesIO(b"x" * 8), 8)
    with pytest.raises(TooLarge):
        uploads.append(upload.id, 3, io.BytesIO(b"x" * 8), None)  # found while reading
    assert uploads.get(upload.id).offset == 3
    with pytest.raises(TooLarge):
        uploads.create(101, "", target("big"))


def test_checksum_mismatch_keeps_nothing(store: Any) -> None:
    uploads = Uploads(store, 100)
    upload = uploads.create(6, "", target())
    wrong = Checksum("sha256", hashlib.sha256(b"nope").digest())
    with pytest.raises(ChecksumMismatch):
        uploads.append(upload.id, 0, io.BytesIO(b"abc"), 3, wrong)
    assert uploads.get(upload.id).offset == 0
    assert store.upload_size(upload.id) == 0
    right = Checksum("sha256", hashlib.sha256(b"abc").digest())
    assert uploads.append(upload.id, 0, io.BytesIO(b"abc"), 3, right).offset == 3


def test_target_checked_at_creation_and_commit(store: Any) -> None:
    uploads = Uploads(store, 100)
    store.put(Key("taken"), io.BytesIO(b"x"), "")
    with pytest.raises(TargetExists):
        uploads.create(3, "", target("taken"))
    upload = uploads.create(3, "", target("free"))
    store.put(Key("free"), io.BytesIO(b"first"), "")
    with pytest.raises(TargetExists):
        uploads.append(upload.id, 0, io.BytesIO(b"abc"), 3)
    assert read(store, "free") == b"first"
    assert uploads.get(upload.id).offset == 3 and not uploads.get(upload.id).done
    store.delete(Key("free"))
    assert uploads.append(upload.id, 3, io.BytesIO(b""), 0).done
    assert read(store, "free") == b"abc"


def test_a_second_writer_is_refused(store: Any) -> None:
    uploads = Uploads(store, 100)
    upload = uploads.create(6, "", target())
    with uploads.locker.lock("upload:" + upload.id):
        with pytest.raises(Locked):
            uploads.append(upload.id, 0, io.BytesIO(b"abc"), 3)
        with pytest.raises(Locked):
            uploads.terminate(upload.id)
    assert uploads.append(upload.id, 0, io.BytesIO(b"abc"), 3).offset == 3


def test_file_lock_is_held_across_threads(store_dir: Path) -> None:
    locker = FileLocker(str(store_dir / "locks"))
    results: list[str] = []
    with locker.lock("upload:" + "ab" * 16):

        def other() -> None:
            try:
                with locker.lock("upload:" + "ab" * 16):
                    results.append("got it")
            except Locked:
                results.append("locked")

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert results == ["locked"]


def test_expiry_and_sweep(store: Any) -> None:
    clock = Clock()
    uploads = Uploads(store, 100, clock=clock)
    old = uploads.create(5, "", target("a"))
    clock.now += resumable.UPLOAD_TTL_SECONDS - 10
    fresh = uploads.create(5, "", target("b"))  # within the sweep interval: no sweep
    clock.now += 20
    assert uploads.get(fresh.id).id == fresh.id
    assert store.get_record(f"uploads/{old.id}.json") is not None
    clock.now += resumable.SWEEP_INTERVAL_SECONDS
    uploads.create(5, "", target("c"))  # sweeps
    assert store.get_record(f"uploads/{old.id}.json") is None
    with pytest.raises(UploadNotFound):
        uploads.get(old.id)
    assert uploads.get(fresh.id).id == fresh.id


def test_append_extends_expiry(store: Any) -> None:
    clock = Clock()
    uploads = Uploads(store, 100, clock=clock)
    upload = uploads.create(5, "", target())
    clock.now += resumable.UPLOAD_TTL_SECONDS - 1
    upload = uploads.append(upload.id, 0, io.BytesIO(b"ab"), 2)
    clock.now += resumable.UPLOAD_TTL_SECONDS - 1
    assert uploads.get(upload.id).offset == 2


def test_terminate(store: Any) -> None:
    uploads = Uploads(store, 100)
    upload = uploads.create(5, "", target())
    uploads.terminate(upload.id)
    with pytest.raises(UploadNotFound):
        uploads.get(upload.id)
    with pytest.raises(UploadNotFound):
        uploads.terminate(upload.id)


@pytest.mark.parametrize("upload_id", ["", "x", "../../state/probe", "0" * 31, "0" * 33])
def test_bad_ids_are_not_found(store: Any, upload_id: str) -> None:
    with pytest.raises(UploadNotFound):
        Uploads(store, 100).get(upload_id)


# -- the upload data itself (the UploadParts contract is in tests/storage/test_contract.py) ----


def test_local_upload_data_lives_under_the_reserved_folder(store_dir: Path) -> None:
    store = LocalStorage(str(store_dir))
    store.create_upload("ef" * 16, Key("t"))
    assert (store_dir / ".filedock" / "uploads" / ("ef" * 16 + ".part")).exists()
    with pytest.raises(ValueError):
        store.create_upload("../../sentinel", Key("t"))


# -- open-upload limits (the HTTP side: tests/test_upload_limits_serve.py) ------------------------


def test_claims_of_uploads_no_longer_open_are_found_out(store: Any) -> None:
    clock = Clock()
    uploads = Uploads(store, 1 << 20, clock=clock, limits=Limits(2, 1 << 30))
    # a claim whose upload record was never written (the server died in between)...
    lost = {"length": 10, "at": clock.now}
    store.put_record(claim_name(owner_of("me"), "0" * 32), json.dumps(lost).encode())
    # ...and an upload left to expire
    uploads.create(10, "", target("t/a"), "me")
    with pytest.raises(TooManyUploads):  # both still count: the lost claim may be in flight
        uploads.create(10, "", target("t/b"), "me")
    clock.now += UNRECORDED_CLAIM_SECONDS + 1
    uploads.create(10, "", target("t/b"), "me")  # the lost claim no longer counts
    with pytest.raises(TooManyUploads):
        uploads.create(10, "", target("t/c"), "me")
    clock.now += resumable.UPLOAD_TTL_SECONDS + 1  # both expire unswept: neither counts
    uploads.create(10, "", target("t/c"), "me")
    uploads.create(10, "", target("t/d"), "me")
    assert len(list(store.list_records(claim_name(owner_of("me"), "")))) == 2
