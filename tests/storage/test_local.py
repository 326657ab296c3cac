"""What only the local directory store does: plain files, hand-placed files, symlinks."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from filedock.listing import list_page
from filedock.storage import Key, ObjectNotFound
from filedock.storage import local as local_module
from filedock.storage.local import LocalStorage


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    (tmp_path / "sentinel.txt").write_text("sentinel")
    return LocalStorage(str(tmp_path / "store"))


def test_objects_are_plain_files(local: LocalStorage, tmp_path: Path) -> None:
    local.put(Key("a/b.txt"), io.BytesIO(b"plain"), "text/plain")
    assert (tmp_path / "store" / "a" / "b.txt").read_bytes() == b"plain"
    assert not list((tmp_path / "store" / ".filedock" / "staging").iterdir())


def test_hand_placed_file_gets_its_etag_and_a_change_invalidates_it(
    local: LocalStorage, tmp_path: Path
) -> None:
    path = tmp_path / "store" / "hand.json"
    path.write_bytes(b'{"a": 1}')
    assert local.stat(Key("hand.json")).sha256 == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert local.stat(Key("hand.json")).content_type == "application/json"
    path.write_bytes(b'{"a": 22}')
    assert local.stat(Key("hand.json")).sha256 == hashlib.sha256(b'{"a": 22}').hexdigest()
    replacement = tmp_path / "other"
    replacement.write_bytes(b'{"a": 33}')
    os.utime(replacement, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    os.replace(replacement, path)  # same size and mtime, new inode
    assert local.stat(Key("hand.json")).sha256 == hashlib.sha256(b'{"a": 33}').hexdigest()


def test_symlink_out_of_the_root_is_not_followed(local: LocalStorage, tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "escape.txt").symlink_to(tmp_path / "sentinel.txt")
    (store / "outdir").symlink_to(tmp_path)
    with pytest.raises(ObjectNotFound):
        local.stat(Key("escape.txt"))
    with pytest.raises(ObjectNotFound):
        local.open(Key("outdir/sentinel.txt"))
    with pytest.raises(ObjectNotFound):
        local.put(Key("outdir/sentinel.txt"), io.BytesIO(b"overwritten"), "")
    with pytest.raises(ObjectNotFound):
        local.put(Key("outdir/new.txt"), io.BytesIO(b"new"), "")
    assert (tmp_path / "sentinel.txt").read_text() == "sentinel"
    assert not (tmp_path / "new.txt").exists()
    assert [i.key for i in local.list()] == []


def test_symlink_into_the_state_folder_is_not_followed(local: LocalStorage, tmp_path: Path) -> None:
    (tmp_path / "store" / "st").symlink_to(tmp_path / "store" / ".filedock")
    with pytest.raises(ObjectNotFound):
        local.put(Key("st/state/x"), io.BytesIO(b"x"), "")


def test_symlink_inside_the_root_is_served(local: LocalStorage, tmp_path: Path) -> None:
    local.put(Key("real.txt"), io.BytesIO(b"real"), "")
    (tmp_path / "store" / "alias.txt").symlink_to(tmp_path / "store" / "real.txt")
    with local.open(Key("alias.txt")) as f:
        assert f.read() == b"real"


def test_failed_write_leaves_no_staging_file(local: LocalStorage, tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        local.put(Key("x"), Broken(), "")  # type: ignore[arg-type]
    assert not list((tmp_path / "store" / ".filedock" / "staging").iterdir())
    assert not (tmp_path / "store" / "x").exists()


def test_a_change_by_another_process_is_seen(local: LocalStorage, tmp_path: Path) -> None:
    other = LocalStorage(str(tmp_path / "store"))  # another worker on the same folder
    first = local.put(Key("doc.json"), io.BytesIO(b"[1]"), "application/json")
    assert other.stat(Key("doc.json")) == first
    second = local.put(Key("doc.json"), io.BytesIO(b"[2]"), "application/json")
    assert other.stat(Key("doc.json")) == second != first
    local.delete(Key("doc.json"))
    with pytest.raises(ObjectNotFound):
        other.stat(Key("doc.json"))


def test_a_file_swapped_for_an_outside_symlink_is_refused(
    local: LocalStorage, tmp_path: Path
) -> None:
    local.put(Key("swap.txt"), io.BytesIO(b"inside"), "text/plain")
    local.stat(Key("swap.txt"))  # remembered
    (tmp_path / "store" / "swap.txt").unlink()
    (tmp_path / "store" / "swap.txt").symlink_to(tmp_path / "sentinel.txt")
    with pytest.raises(ObjectNotFound):
        local.stat(Key("swap.txt"))


def test_each_version_is_newer_than_the_one_it_replaces(
    local: LocalStorage, tmp_path: Path
) -> None:
    """Processes remember descriptions by (inode, size, mtime), and inode numbers are reused:
    two versions of one path must never share a time, even when the clock gives the new one
    no later time (a coarse clock, or the old version's time set ahead by hand)."""
    other = LocalStorage(str(tmp_path / "store"))  # another worker or instance
    path = tmp_path / "store" / "doc.json"
    local.put(Key("doc.json"), io.BytesIO(b'{"n":1}'), "application/json")
    ahead = os.stat(path).st_mtime_ns + 10**9
    os.utime(path, ns=(ahead, ahead))
    first = other.stat(Key("doc.json"))
    second = local.put(Key("doc.json"), io.BytesIO(b'{"n":2}'), "application/json")
    assert os.stat(path).st_mtime_ns > ahead
    third = local.put(Key("doc.json"), io.BytesIO(b'{"n":3}'), "application/json")
    assert os.stat(path).st_mtime_ns > ahead + 1
    assert other.stat(Key("doc.json")) == third
    assert len({first.sha256, second.sha256, third.sha256}) == 3


# -- listing: a walk in key order that reads only what a page needs --------------------------

TRICKY = [
    "a-c", "a.b/x", "a/b", "a/b-c/d", "a/b0", "a/c/d/e", "a0", "ab", "abc/d", "b/1", "b/2/3",
    "b-", "b.", "b0/0/0/0", "c", "é/x", "z/é", "z/z/z",
]  # fmt: skip


def place(store: Path, keys: list[str]) -> None:
    for key in keys:
        (store / key).parent.mkdir(parents=True, exist_ok=True)
        (store / key).write_bytes(key.encode())


def test_list_keys_is_in_key_order_for_every_prefix_and_cursor(
    local: LocalStorage, tmp_path: Path
) -> None:
    keys = TRICKY
    place(tmp_path / "store", keys)
    (tmp_path / "store" / ".filedock-by-hand").write_bytes(b"reserved: never listed")
    ordered = sorted(keys)
    # folders sort by their name and '/': 'a-c' < 'a.b/x' < 'a/b' < 'a0' < 'ab'
    assert list(local.list_keys()) == ordered
    assert ordered[:4] == ["a-c", "a.b/x", "a/b", "a/b-c/d"]
    starts = {"", "a", "a/", "a/b", "a/c/", "ab", "b", "b/", "b0/0", "z/", "zz", "a.", "é"}
    afters = {"", "a", "a/", "a/b/", "a/c/d/", "a0/", "b/2", "b0/", "z", "zz", "\U0010ffff"}
    afters |= set(ordered) | {k + "/" for k in ordered} | {k[:-1] for k in ordered}
    for prefix in starts:
        for after in afters:
            expected = [k for k in ordered if k.startswith(prefix) and k > after]
            assert list(local.list_keys(prefix, after)) == expected, (prefix, after)


class CountingScandir:
    """os.scandir that counts the folder entries every walk reads."""

    def __init__(self, real: Callable[[str], Any]) -> None:
        self.real, self.entries = real, 0

    def __call__(self, path: str) -> Any:
        counter = self

        class Counted:
            def __init__(self) -> None:
                self.inner = counter.real(path)

            def __enter__(self) -> Counted:
                return self

            def __exit__(self, *exc: object) -> None:
                self.inner.close()

            def __iter__(self) -> Counted:
                return self

            def __next__(self) -> os.DirEntry[str]:
                entry: os.DirEntry[str] = next(self.inner)
                counter.entries += 1
                return entry

            def close(self) -> None:
                self.inner.close()

        return Counted()


def test_a_page_reads_the_folders_it_passes_not_the_whole_store(
    local: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    keys = [f"t{t:02d}/s{s:02d}/{f:03d}" for t in range(20) for s in range(20) for f in range(50)]
    for folder in {k.rsplit("/", 1)[0] for k in keys}:
        (store / folder).mkdir(parents=True)
    for key in keys:
        (store / key).write_bytes(b"")
    scandir = CountingScandir(os.scandir)
    monkeypatch.setattr(os, "scandir", scandir)

    # a page deep in the store: the root (with .filedock), one top folder and the three
    # folders the page spans
    after = "t13/s07/024"
    page = list_page(local, "", after, 100, "", lambda key: True)
    start = keys.index(after) + 1
    assert [i.key for i in page.items] == keys[start : start + 100] and page.more
    assert scandir.entries <= 21 + 20 + 3 * 50  # of 20,000 files in 420 folders

    # every page of the whole store: each folder read about once, not once per page
    scandir.entries, seen, cursor = 0, [], ""
    while True:
        page = list_page(local, "", cursor, 1000, "", lambda key: True)
        seen += [i.key for i in page.items]
        if not page.more:
            break
        cursor = seen[-1]
    assert seen == keys
    assert scandir.entries < 2 * (len(keys) + 420)


def pages(local: LocalStorage, prefix: str, limit: int) -> list[str]:
    """Every key under prefix, listed a page at a time."""
    seen: list[str] = []
    while True:
        page = list_page(local, prefix, seen[-1] if seen else "", limit, "", lambda key: True)
        seen += [i.key for i in page.items]
        if not page.more:
            return seen


def test_pages_of_a_large_folder_read_it_once_and_see_every_change_in_it(
    local: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "store" / "flat"
    folder.mkdir()
    keys = [f"flat/f{i:05d}" for i in range(3000)]
    for key in keys:
        (tmp_path / "store" / key).write_bytes(b"")
    scandir = CountingScandir(os.scandir)
    monkeypatch.setattr(os, "scandir", scandir)

    # changed lately: it could change again within the same clock tick, unseen by its time,
    # so it is read again for each of the 30 pages
    monkeypatch.setattr(local_module, "SETTLED_NS", 10**18, raising=False)
    assert pages(local, "flat/", 100) == keys
    assert scandir.entries >= 30 * 3000

    # as if it had not changed for long
    monkeypatch.setattr(local_module, "SETTLED_NS", 0, raising=False)
    scandir.entries = 0
    assert pages(local, "flat/", 100) == keys
    assert scandir.entries <= 2 * 3000  # remembered after the first page

    (folder / "f01500x").write_bytes(b"added")
    assert [i.key for i in list_page(local, "flat/", keys[1500], 2, "", str.isascii).items] == [
        "flat/f01500x",
        keys[1501],
    ]
    (folder / "f01501").unlink()
    assert [i.key for i in list_page(local, "flat/", keys[1500], 2, "", str.isascii).items] == [
        "flat/f01500x",
        keys[1502],
    ]
    (folder / "f01500x").rename(folder / "f02999x")
    assert pages(local, "flat/", 1000) == [k for k in keys if k != keys[1501]] + ["flat/f02999x"]


def _resident_pages(path: Path) -> tuple[int, int]:
    """(pages of the file in the page cache, pages of the file), by mincore(2)."""
    import ctypes
    import mmap

    mincore = ctypes.CDLL(None, use_errno=True).mincore
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        start = ctypes.c_char.from_buffer(m)  # the mapping's first byte; nothing is written
        assert mincore(ctypes.addressof(start), size, vec) == 0, ctypes.get_errno()
        del start
    return sum(b & 1 for b in vec), pages


@pytest.mark.parametrize("how", ["put", "upload"])
def test_a_large_write_passes_through_the_page_cache_without_staying(
    local: LocalStorage, tmp_path: Path, how: str
) -> None:
    """A large upload is handed to the disk window by window and dropped from the page cache
    once durable, and so is a 100 KiB one once fsynced; a small one stays cached (likely read
    again soon)."""
    big = os.urandom(1 << 20) * 40
    if how == "put":
        local.put(Key("big.bin"), io.BytesIO(big), "application/octet-stream")
    else:
        local.create_upload("ab" * 16, Key("big.bin"))
        local.write_upload("ab" * 16, 0, io.BytesIO(big[: 20 << 20]), len(big))
        local.write_upload("ab" * 16, 20 << 20, io.BytesIO(big[20 << 20 :]), len(big))
        local.complete_upload(
            "ab" * 16, Key("big.bin"), "application/octet-stream",
            hashlib.sha256(big).hexdigest(), local_module.ANYTHING,
        )  # fmt: skip
    local.put(Key("small.json"), io.BytesIO(b"{}" * 1000), "application/json")
    local.put(Key("medium.bin"), io.BytesIO(os.urandom(100 << 10)), "application/octet-stream")
    assert _resident_pages(tmp_path / "store" / "medium.bin")[0] == 0
    resident, pages = _resident_pages(tmp_path / "store" / "big.bin")
    assert (tmp_path / "store" / "big.bin").read_bytes() == big
    assert resident < pages // 10, f"{resident} of {pages} pages still cached"
    resident, pages = _resident_pages(tmp_path / "store" / "small.json")
    assert resident == pages


def test_a_commit_adds_no_file_beside_the_object_and_an_edit_in_place_is_seen(
    local: LocalStorage, tmp_path: Path
) -> None:
    """The hash travels with the file (an extended attribute set before the rename), so a
    commit creates no side file and no lock file per key; an edit in place still shows."""
    for i in range(20):
        local.put(Key(f"f/{i}.txt"), io.BytesIO(b"first %d" % i), "text/plain")
    state = tmp_path / "store" / ".filedock"
    assert [p for p in (state / "meta").rglob("*") if p.is_file()] == []
    assert [p.name for p in (state / "locks").rglob("*") if p.is_file()] == ["keys"]
    path = tmp_path / "store" / "f" / "3.txt"
    inode = path.stat().st_ino
    with open(path, "r+b") as f:  # same inode, same size, new bytes, a later mtime
        f.write(b"FIRST 3")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert path.stat().st_ino == inode
    info = local.stat(Key("f/3.txt"))
    assert info.sha256 == hashlib.sha256(b"FIRST 3").hexdigest()
    assert local.stat(Key("f/4.txt")).sha256 == hashlib.sha256(b"first 4").hexdigest()
