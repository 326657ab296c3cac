"""Every backend passes the same contract: the core, then each capability it offers."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from filedock.storage import (
    ABSENT,
    ANYTHING,
    AlreadyExists,
    Batching,
    Conflict,
    Key,
    Locked,
    Matches,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PreconditionFailed,
    ReadableUploads,
    Records,
    Staging,
    TooLarge,
    UploadParts,
    open_locker,
)
from filedock.storage.locks import LeaseLocker

from .backends import BACKENDS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest) -> Iterator[ObjectStore]:
    yield request.getfixturevalue(f"{request.param}_store")


def put(storage: ObjectStore, key: str, body: bytes, **kw: Any) -> ObjectInfo:
    return storage.put(Key(key), io.BytesIO(body), "text/plain", **kw)


def read(storage: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    with storage.open(Key(key), start, end) as f:
        data: bytes = f.read()
    return data


# -- the core ------------------------------------------------------------------------------------


def test_put_then_stat(storage: ObjectStore) -> None:
    info = storage.put(Key("a.txt"), io.BytesIO(b"hi"), "text/plain")
    assert info.size == 2
    assert info.sha256 == hashlib.sha256(b"hi").hexdigest()
    assert info.etag == f'"{info.sha256}"'
    assert info.content_type == "text/plain"
    assert info.created
    assert storage.stat(Key("a.txt")) == info


def test_content_type_is_guessed_when_not_given(storage: ObjectStore) -> None:
    assert storage.put(Key("d.json"), io.BytesIO(b"{}"), "").content_type == "application/json"
    assert storage.stat(Key("d.json")).content_type == "application/json"


def test_open_ranges(storage: ObjectStore) -> None:
    put(storage, "r.bin", b"0123456789")
    assert read(storage, "r.bin") == b"0123456789"
    assert read(storage, "r.bin", 2, 5) == b"234"
    assert read(storage, "r.bin", 7) == b"789"


def test_empty_object(storage: ObjectStore) -> None:
    info = put(storage, "empty", b"")
    assert info.size == 0 and info.sha256 == hashlib.sha256(b"").hexdigest()
    assert read(storage, "empty") == b""


def test_missing(storage: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("nope"))
    with pytest.raises(ObjectNotFound):
        storage.open(Key("nope"))
    with pytest.raises(ObjectNotFound):
        storage.delete(Key("nope"))


def test_replace_reports_not_created_and_delete(storage: ObjectStore) -> None:
    assert put(storage, "d/x.txt", b"one").created
    info = put(storage, "d/x.txt", b"two")
    assert not info.created
    assert read(storage, "d/x.txt") == b"two"
    assert info == storage.stat(Key("d/x.txt"))
    storage.delete(Key("d/x.txt"))
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("d/x.txt"))
    # the emptied folder no longer blocks a file of the same name
    put(storage, "d", b"file now")


def test_absent_creates_only(storage: ObjectStore) -> None:
    assert put(storage, "k", b"1", expect=ABSENT).created
    with pytest.raises(AlreadyExists):
        put(storage, "k", b"2", expect=ABSENT)
    assert read(storage, "k") == b"1"


def test_matches_is_compare_and_swap(storage: ObjectStore) -> None:
    with pytest.raises(PreconditionFailed):
        put(storage, "k", b"1", expect=Matches("0" * 64))  # nothing there to match
    first = put(storage, "k", b"1")
    second = put(storage, "k", b"2", expect=Matches(first.sha256))
    assert not second.created
    with pytest.raises(PreconditionFailed):
        put(storage, "k", b"3", expect=Matches(first.sha256))
    with pytest.raises(PreconditionFailed):
        storage.delete(Key("k"), Matches(first.sha256))
    assert read(storage, "k") == b"2"
    storage.delete(Key("k"), Matches(second.sha256))
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("k"))


def test_racing_compare_and_swap_has_one_winner(storage: ObjectStore) -> None:
    base = put(storage, "cas", b"base")
    wins: list[bytes] = []
    barrier = threading.Barrier(4)

    def writer(body: bytes) -> None:
        barrier.wait()
        try:
            put(storage, "cas", body, expect=Matches(base.sha256))
            wins.append(body)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=writer, args=(bytes([65 + i]) * 10,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert read(storage, "cas") == wins[0]


def test_file_folder_conflicts(storage: ObjectStore) -> None:
    put(storage, "a", b"file")
    with pytest.raises(Conflict):
        put(storage, "a/b", b"under a file")
    put(storage, "x/y", b"in folder")
    with pytest.raises(Conflict):
        put(storage, "x", b"over a folder")


def test_size_limit_stores_nothing(storage: ObjectStore) -> None:
    with pytest.raises(TooLarge):
        put(storage, "big", b"x" * 100, max_bytes=99)
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("big"))
    assert put(storage, "big", b"x" * 99, max_bytes=99).size == 99


def test_verify_can_refuse(storage: ObjectStore) -> None:
    seen: list[str] = []

    def refuse(sha256: str) -> None:
        seen.append(sha256)
        raise ValueError(sha256)

    with pytest.raises(ValueError):
        put(storage, "v", b"data", verify=refuse)
    assert seen == [hashlib.sha256(b"data").hexdigest()]
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("v"))


def test_a_failed_body_leaves_nothing(storage: ObjectStore) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def read(self, size: int = -1) -> bytes:
            if self.sent >= 3 << 20:
                raise ConnectionResetError("client went away")
            self.sent += 1 << 20
            return b"x" * (1 << 20)

    put(storage, "kept", b"old")
    with pytest.raises(ConnectionResetError):
        storage.put(Key("kept"), Broken(), "")  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError):
        storage.put(Key("never"), Broken(), "")  # type: ignore[arg-type]
    assert read(storage, "kept") == b"old"
    assert [i.key for i in storage.list()] == ["kept"]


def test_list_sorted_prefix_after(storage: ObjectStore) -> None:
    for key in ["b/2", "a-c", "a/b", "b/1", "c", "ab"]:
        put(storage, key, key.encode())
    assert [i.key for i in storage.list()] == ["a-c", "a/b", "ab", "b/1", "b/2", "c"]
    assert [i.key for i in storage.list("a")] == ["a-c", "a/b", "ab"]
    assert [i.key for i in storage.list("b/")] == ["b/1", "b/2"]
    assert [i.key for i in storage.list("", after="ab")] == ["b/1", "b/2", "c"]
    # a folder sorts by "a/": after "a-c", before "ab", on every store
    assert [i.key for i in storage.list("", after="a-c")] == ["a/b", "ab", "b/1", "b/2", "c"]
    assert [i.key for i in storage.list("", after="a/b")] == ["ab", "b/1", "b/2", "c"]
    assert [i.key for i in storage.list("b", after="b/1")] == ["b/2"]
    assert [i.key for i in storage.list("zz")] == []
    listed = {i.key: i for i in storage.list()}
    assert listed["b/2"] == storage.stat(Key("b/2"))


def test_list_pages_in_key_order_past_one_request(storage: ObjectStore) -> None:
    keys = sorted(f"many/{i:04d}" for i in range(1100))
    for key in keys:
        put(storage, key, b"")
    assert [i.key for i in storage.list("many/")] == keys
    assert [i.key for i in storage.list("many/", after=keys[999])] == keys[1000:]


def test_concurrent_writers_never_mix(storage: ObjectStore) -> None:
    bodies = [bytes([65 + i]) * (256 << 10) for i in range(6)]

    def writer(body: bytes) -> None:
        for _ in range(3):
            put(storage, "same", body)

    threads = [threading.Thread(target=writer, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = read(storage, "same")
    assert final in bodies
    assert storage.stat(Key("same")).sha256 == hashlib.sha256(final).hexdigest()


def test_check(storage: ObjectStore) -> None:
    storage.check()


# -- Records -------------------------------------------------------------------------------------


def test_records_compare_and_swap(storage: ObjectStore) -> None:
    assert isinstance(storage, Records)
    assert storage.get_record("uploads/x") is None
    first = storage.put_record("uploads/x", b"1", ABSENT)
    with pytest.raises(AlreadyExists):
        storage.put_record("uploads/x", b"2", ABSENT)
    got = storage.get_record("uploads/x")
    assert got is not None and got.value == b"1" and got.version == first.version
    second = storage.put_record("uploads/x", b"2", Matches(first.version))
    with pytest.raises(PreconditionFailed):
        storage.put_record("uploads/x", b"3", Matches(first.version))
    with pytest.raises(PreconditionFailed):
        storage.delete_record("uploads/x", Matches(first.version))
    storage.put_record("uploads/y", b"3")
    assert list(storage.list_records("uploads/")) == ["uploads/x", "uploads/y"]
    storage.delete_record("uploads/x", Matches(second.version))
    storage.delete_record("uploads/x")  # gone already: nothing happens
    assert list(storage.list_records("uploads/")) == ["uploads/y"]
    with pytest.raises(ValueError):
        storage.get_record("../escape")


def test_records_are_not_objects(storage: ObjectStore) -> None:
    assert isinstance(storage, Records)
    storage.put_record("hidden", b"x")
    assert list(storage.list()) == []


# -- UploadParts ---------------------------------------------------------------------------------


def test_upload_parts_grow_and_complete(storage: ObjectStore) -> None:
    assert isinstance(storage, UploadParts)
    uid = "cd" * 16
    storage.create_upload(uid, Key("s.txt"))
    assert storage.write_upload(uid, 0, io.BytesIO(b"hello"), 6) == 5
    # bytes past the offset (never acknowledged) are replaced
    assert storage.write_upload(uid, 3, io.BytesIO(b"LO!"), 6) == 6

    def refuse() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        storage.write_upload(uid, 6, io.BytesIO(b""), 6, refuse)
    with pytest.raises(TooLarge):
        storage.write_upload(uid, 6, io.BytesIO(b"more"), 6)
    assert storage.upload_size(uid) == 6
    if isinstance(storage, ReadableUploads):
        with storage.open_upload(uid) as f:
            assert f.read() == b"helLO!"
    assert list(storage.list()) == []  # nothing visible before completion
    sha = hashlib.sha256(b"helLO!").hexdigest()
    info = storage.complete_upload(uid, Key("s.txt"), "text/plain", sha, ABSENT)
    assert info.size == 6 and info.sha256 == sha and info.created
    assert read(storage, "s.txt") == b"helLO!"
    assert storage.stat(Key("s.txt")) == info
    with pytest.raises(ObjectNotFound):
        storage.upload_size(uid)
    storage.delete_upload(uid)  # gone already: nothing happens


def test_upload_parts_refused_completion_keeps_the_data(storage: ObjectStore) -> None:
    assert isinstance(storage, UploadParts)
    uid = "ef" * 16
    put(storage, "t", b"there first")
    storage.create_upload(uid, Key("t"))
    storage.write_upload(uid, 0, io.BytesIO(b"new"), 3)
    sha = hashlib.sha256(b"new").hexdigest()
    with pytest.raises(AlreadyExists):
        storage.complete_upload(uid, Key("t"), "", sha, ABSENT)
    assert read(storage, "t") == b"there first"
    assert storage.upload_size(uid) == 3
    info = storage.complete_upload(uid, Key("t"), "", sha, ANYTHING)
    assert not info.created and read(storage, "t") == b"new"


def test_upload_parts_large_upload_in_uneven_chunks(storage: ObjectStore) -> None:
    """Chunks that straddle the backend's part size, then a resumed prefix hash."""
    assert isinstance(storage, UploadParts)
    uid = "ab" * 16
    data = bytes(range(256)) * (((12 << 20) + 12345) // 256)
    total = len(data)
    storage.create_upload(uid, Key("big.bin"))
    offset = 0
    for size in (3 << 20, 6 << 20, 1, total):
        chunk = data[offset : offset + size]
        offset = storage.write_upload(uid, offset, io.BytesIO(chunk), total)
        assert storage.upload_size(uid) == offset
    assert offset == total
    sha = hashlib.sha256(data).hexdigest()
    info = storage.complete_upload(uid, Key("big.bin"), "", sha, ANYTHING)
    assert info.size == total and info.sha256 == sha
    assert read(storage, "big.bin") == data
    assert read(storage, "big.bin", total - 10) == data[-10:]


def test_upload_parts_delete(storage: ObjectStore) -> None:
    assert isinstance(storage, UploadParts)
    uid = "aa" * 16
    storage.create_upload(uid, Key("x"))
    storage.write_upload(uid, 0, io.BytesIO(b"abc"), 10)
    storage.delete_upload(uid)
    with pytest.raises(ObjectNotFound):
        storage.upload_size(uid)
    with pytest.raises(ObjectNotFound):
        storage.write_upload(uid, 3, io.BytesIO(b"d"), 10)


# -- Staging and Batching (the local disk and memory offer them) ----------------------------------


def test_stage_commit_discard(storage: ObjectStore) -> None:
    if not isinstance(storage, Staging):
        assert type(storage).__name__ == "S3Storage"  # no backend fakes a capability
        return
    staged = storage.stage(io.BytesIO(b"staged"))
    assert staged.size == 6
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("s"))
    info = storage.commit(Key("s"), staged, "text/plain")
    assert info.sha256 == hashlib.sha256(b"staged").hexdigest()
    other = storage.stage(io.BytesIO(b"dropped"))
    storage.discard(other)
    kept = storage.stage(io.BytesIO(b"kept"))
    with pytest.raises(AlreadyExists):
        storage.commit(Key("s"), kept, "", ABSENT)
    storage.commit(Key("s2"), kept, "", ABSENT)  # still staged after the refusal
    assert [i.key for i in storage.list()] == ["s", "s2"]


def test_batch_groups_writes(storage: ObjectStore) -> None:
    if not isinstance(storage, Batching):  # every write is durable when it returns
        assert type(storage).__name__ in ("MemoryStorage", "S3Storage")
        return
    with storage.batch():
        put(storage, "b1", b"1")
        put(storage, "b2", b"2")
    assert read(storage, "b1") == b"1" and read(storage, "b2") == b"2"


# -- Lockers -------------------------------------------------------------------------------------


def test_locker_excludes_a_second_holder(storage: ObjectStore) -> None:
    locker = open_locker(storage)
    results: list[str] = []
    with locker.lock("upload:1"):

        def other() -> None:
            try:
                with locker.lock("upload:1"):
                    results.append("got it")
            except Locked:
                results.append("locked")

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        with locker.lock("upload:2"):  # other names are free
            pass
    with locker.lock("upload:1"):  # released
        pass
    assert results == ["locked"]


def test_lease_locker_on_records(storage: ObjectStore) -> None:
    assert isinstance(storage, Records)
    now = [1000.0]
    locker = LeaseLocker(storage, ttl_seconds=30, clock=lambda: now[0])
    other = LeaseLocker(storage, ttl_seconds=30, clock=lambda: now[0])
    with locker.lock("upload:9"):
        with pytest.raises(Locked):
            with other.lock("upload:9"):
                pass
    with other.lock("upload:9"):  # released
        pass
    # a holder that died leaves its lease; it is taken over once expired
    record = "leases/" + hashlib.sha256(b"upload:9").hexdigest()
    storage.put_record(record, b'{"owner": "dead", "expires": 1010.0}')
    with pytest.raises(Locked):
        with other.lock("upload:9"):
            pass
    now[0] = 1011.0
    with other.lock("upload:9"):
        pass
