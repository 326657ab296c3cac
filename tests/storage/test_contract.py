"""Every backend passes the same contract."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest

from filedock.storage import (
    AlreadyExists,
    Conflict,
    Key,
    LocalStorage,
    MemoryStorage,
    ObjectNotFound,
    PreconditionFailed,
    Storage,
    TooLarge,
)


def make_backend(kind: str, tmp_path: Path) -> Storage:
    """A fresh, empty store of that kind."""
    if kind == "memory":
        return MemoryStorage()
    return LocalStorage(str(tmp_path / "store"))


@pytest.fixture(params=["memory", "local"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return make_backend(request.param, tmp_path)


def put(storage: Storage, key: str, body: bytes, **kw: object) -> object:
    return storage.write(Key(key), io.BytesIO(body), "text/plain", **kw)  # type: ignore[arg-type]


def test_write_then_stat(storage: Storage) -> None:
    info = storage.write(Key("a.txt"), io.BytesIO(b"hi"), "text/plain")
    assert info.size == 2
    assert info.sha256 == hashlib.sha256(b"hi").hexdigest()
    assert info.etag == f'"{info.sha256}"'
    assert storage.stat(Key("a.txt")) == info


def test_open_ranges(storage: Storage) -> None:
    put(storage, "r.bin", b"0123456789")
    with storage.open(Key("r.bin")) as f:
        assert f.read() == b"0123456789"
    with storage.open(Key("r.bin"), 2, 5) as f:
        assert f.read() == b"234"
    with storage.open(Key("r.bin"), 7) as f:
        assert f.read() == b"789"


def test_missing(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("nope"))
    with pytest.raises(ObjectNotFound):
        storage.open(Key("nope"))
    with pytest.raises(ObjectNotFound):
        storage.delete(Key("nope"))


def test_replace_and_delete(storage: Storage) -> None:
    put(storage, "d/x.txt", b"one")
    info = put(storage, "d/x.txt", b"two")
    with storage.open(Key("d/x.txt")) as f:
        assert f.read() == b"two"
    assert info == storage.stat(Key("d/x.txt"))
    storage.delete(Key("d/x.txt"))
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("d/x.txt"))
    # the emptied folder no longer blocks a file of the same name
    put(storage, "d", b"file now")


def test_if_none_match(storage: Storage) -> None:
    put(storage, "k", b"1", if_none_match=True)
    with pytest.raises(AlreadyExists):
        put(storage, "k", b"2", if_none_match=True)
    with storage.open(Key("k")) as f:
        assert f.read() == b"1"


def test_if_match_is_compare_and_swap(storage: Storage) -> None:
    with pytest.raises(PreconditionFailed):
        put(storage, "k", b"1", if_match='"0"')
    first = storage.write(Key("k"), io.BytesIO(b"1"), "")
    second = storage.write(Key("k"), io.BytesIO(b"2"), "", if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        put(storage, "k", b"3", if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        storage.delete(Key("k"), if_match=first.etag)
    storage.delete(Key("k"), if_match=second.etag)


def test_if_match_compares_strongly(storage: Storage) -> None:
    first = storage.write(Key("k"), io.BytesIO(b"1"), "")
    with pytest.raises(PreconditionFailed):
        put(storage, "k", b"2", if_match="W/" + first.etag)
    with pytest.raises(PreconditionFailed):
        storage.delete(Key("k"), if_match="W/" + first.etag)
    put(storage, "k", b"2", if_match=f'"0", {first.etag}')


def test_file_folder_conflicts(storage: Storage) -> None:
    put(storage, "a", b"file")
    with pytest.raises(Conflict):
        put(storage, "a/b", b"under a file")
    put(storage, "x/y", b"in folder")
    with pytest.raises(Conflict):
        put(storage, "x", b"over a folder")


def test_size_limit_stores_nothing(storage: Storage) -> None:
    with pytest.raises(TooLarge):
        put(storage, "big", b"x" * 100, max_bytes=99)
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("big"))


def test_verify_can_refuse(storage: Storage) -> None:
    def refuse(sha256: str) -> None:
        raise ValueError(sha256)

    with pytest.raises(ValueError):
        put(storage, "v", b"data", verify=refuse)
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("v"))


def test_stage_commit_discard(storage: Storage) -> None:
    staged = storage.stage(io.BytesIO(b"staged"))
    assert staged.size == 6
    with pytest.raises(ObjectNotFound):
        storage.stat(Key("s"))
    info = storage.commit(Key("s"), staged, "text/plain")
    assert info.sha256 == hashlib.sha256(b"staged").hexdigest()
    other = storage.stage(io.BytesIO(b"dropped"))
    storage.discard(other)
    assert [i.key for i in storage.list()] == ["s"]


def test_list_sorted_prefix_after(storage: Storage) -> None:
    for key in ["b/2", "a-c", "a/b", "b/1", "c", "ab"]:
        put(storage, key, key.encode())
    assert [i.key for i in storage.list()] == ["a-c", "a/b", "ab", "b/1", "b/2", "c"]
    assert [i.key for i in storage.list("a")] == ["a-c", "a/b", "ab"]
    assert [i.key for i in storage.list("b/")] == ["b/1", "b/2"]
    assert [i.key for i in storage.list("", after="ab")] == ["b/1", "b/2", "c"]
    assert [i.key for i in storage.list("zz")] == []


def test_concurrent_writers_never_mix(storage: Storage) -> None:
    bodies = [bytes([65 + i]) * (256 << 10) for i in range(6)]

    def writer(body: bytes) -> None:
        for _ in range(5):
            put(storage, "same", body)

    threads = [threading.Thread(target=writer, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with storage.open(Key("same")) as f:
        final = f.read()
    assert final in bodies
    assert storage.stat(Key("same")).sha256 == hashlib.sha256(final).hexdigest()


def test_state_records(storage: Storage) -> None:
    assert storage.get_state("uploads/x") is None  # type: ignore[attr-defined]
    assert storage.put_state("uploads/x", b"1", if_absent=True)  # type: ignore[attr-defined]
    assert not storage.put_state("uploads/x", b"2", if_absent=True)  # type: ignore[attr-defined]
    assert storage.get_state("uploads/x") == b"1"  # type: ignore[attr-defined]
    storage.put_state("uploads/y", b"3")  # type: ignore[attr-defined]
    assert list(storage.list_state("uploads/")) == ["uploads/x", "uploads/y"]  # type: ignore[attr-defined]
    storage.delete_state("uploads/x")  # type: ignore[attr-defined]
    assert list(storage.list_state("uploads/")) == ["uploads/y"]  # type: ignore[attr-defined]
    storage.check()
