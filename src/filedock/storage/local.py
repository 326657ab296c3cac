"""A store in a local directory: each object a plain file at its path under the root."""

from __future__ import annotations

import bisect
import ctypes
import errno
import fcntl
import hashlib
import itertools
import json
import os
import stat as statmod
import struct
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

from .base import (
    ANYTHING,
    CHUNK_BYTES,
    RESERVED_PREFIX,
    Anything,
    Conflict,
    Expect,
    InsufficientStorage,
    InvalidKey,
    Key,
    ObjectInfo,
    ObjectNotFound,
    Record,
    Staged,
    TooLarge,
    Verify,
    check_expect,
    check_record_expect,
    check_record_name,
    check_upload_id,
    copy_hashed,
    guess_type,
)
from .locks import FileLocker

KNOWN_ENTRIES = 100_000  # descriptions remembered per process (a few hundred bytes each)
# Large folders' sorted entries remembered per process for listings (about 80 bytes each),
# those of folders with at least LISTED_MIN entries (smaller ones are cheap to read again)
# that had not changed for SETTLED_NS when they were read.
LISTED_ENTRIES = 200_000
LISTED_MIN = 1_000
SETTLED_NS = 2_000_000_000
# Staging files left by a writer that died (kill -9, a crash, power loss) are removed when a
# process opens the store and then at most this often by each process that stages data.
SWEEP_EVERY_SECONDS = 600
# A staging file without an owner record is left alone this long: its owner may be between
# creating its record and the listing that missed it.
ORPHAN_AGE_SECONDS = 600
# A tus chunk is fsynced when it ends, so its data is handed to the disk in steps this large
# as it arrives (see Writeback), and the fsync that answers the chunk has little left to write.
UPLOAD_STEP_BYTES = 2 << 20
# How often a commit makes its folders again when deletes beside it keep removing them.
PARENT_ATTEMPTS = 100


Entries = list[str]
"""A folder's entry names, a folder's ending in '/' (no file's name can)."""


def _described(key: str, st: os.stat_result, meta: dict[str, object]) -> ObjectInfo:
    """The description of the file st stats, whose hash and type meta gives."""
    return ObjectInfo(
        key=key,
        size=st.st_size,
        content_type=str(meta.get("content_type") or guess_type(key)),
        sha256=str(meta["sha256"]),
        modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC).replace(microsecond=0),
    )


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """What identifies one version of one file: a replacement changes at least one of these."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


__all__ = ["BoundedFile", "LocalStorage", "guess_type"]


class BoundedFile:
    """A file object that reads at most `length` bytes from its current offset.

    It keeps fileno(), so a WSGI server can still hand it to sendfile(2)."""

    def __init__(self, raw: BinaryIO, length: int) -> None:
        self._raw = raw
        self._left = length

    def read(self, size: int = -1) -> bytes:
        """Read up to size bytes, never past the bound."""
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._raw.read(size)
        self._left -= len(data)
        return data

    def fileno(self) -> int:
        """The underlying descriptor, positioned at the start of the range."""
        return self._raw.fileno()

    def close(self) -> None:
        """Close the underlying file."""
        self._raw.close()

    def __enter__(self) -> BoundedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStorage:
    """Objects as plain files under root; server state under root/.filedock/.

    Offers Records, UploadParts, Staging and Batching; its locker() is flock-based."""

    # stat() asks this machine only (no network): a server may call it where waiting is costly
    stat_is_local = True

    def __init__(self, root: str) -> None:
        os.makedirs(root, exist_ok=True)
        self.root = os.path.realpath(root)
        self._state = os.path.join(self.root, RESERVED_PREFIX)
        self._staging = os.path.join(self._state, "staging")
        self._owners = os.path.join(self._state, "owners")
        for name in ("staging", "meta", "locks", "state"):
            os.makedirs(os.path.join(self._state, name), exist_ok=True)
        self._known: dict[str, tuple[tuple[int, int, int, int], ObjectInfo]] = {}
        self._listed: dict[str, tuple[tuple[int, int, int, int], Entries]] = {}
        self._listed_lock = threading.Lock()
        self._owner: tuple[int, str, int] | None = None  # (pid, owner id, its locked fd)
        self._owner_lock = threading.Lock()
        self._swept = 0.0
        self._batches = threading.local()
        self._locker = FileLocker(os.path.join(self._state, "locks", "names"))
        self._key_locks = os.path.join(self._state, "locks", "keys")
        self.sweep_staging()

    def locker(self) -> FileLocker:
        """Locks for this store's users: flock, for every process of this host."""
        return self._locker

    # -- paths -------------------------------------------------------------------------------

    def _path(self, key: Key) -> str:
        """The file path of key, refusing anything that resolves outside the root."""
        path = os.path.join(self.root, key)
        if self._no_link_below_root(key):
            return path  # what realpath(path) gives, the root being real already
        real = os.path.realpath(path)
        if real != path:
            rel = os.path.relpath(real, self.root)
            if rel == os.curdir or rel.startswith(os.pardir) or os.path.isabs(rel):
                raise ObjectNotFound(f"no object at {key}")
            if rel.split(os.sep, 1)[0].startswith(RESERVED_PREFIX):
                raise ObjectNotFound(f"no object at {key}")
        return real

    def _no_link_below_root(self, key: str) -> bool:
        """Is key a plain relative path on which no existing file below the root is a
        symbolic link? Then it resolves to itself: one lstat(2) per segment, where realpath
        takes one for every folder from `/` (each upload resolves its key several times)."""
        segments = key.split("/")
        if os.sep != "/" or any(s in ("", ".", "..") for s in segments):
            return False
        path = self.root
        for segment in segments:
            path = f"{path}/{segment}"
            try:
                if statmod.S_ISLNK(os.lstat(path).st_mode):
                    return False
            except (FileNotFoundError, NotADirectoryError):
                return True  # nothing exists from here on: realpath keeps the rest as it is
        return True

    def _hashed(self, folder: str, key: str, suffix: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return os.path.join(self._state, folder, digest[:2], digest + suffix)

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        """An exclusive lock on key, held across threads and processes of this machine: a
        byte of one shared file, at an offset given by the key's hash (open file description
        locks, which threads of one process hold against each other too). A lock file per key
        cost a new file for every new key (about 0.5 ms of system time per upload on a
        virtual machine here); where these locks are missing, that is what is used."""
        if _OFD_SETLKW is None:
            path = self._hashed("locks", key, ".lock")
            fd = _open_making_folder(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        else:
            fd = os.open(self._key_locks, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if _OFD_SETLKW is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
                offset = int.from_bytes(digest[:7], "big")  # 56 bits: a collision only waits
                fcntl.fcntl(fd, _OFD_SETLKW, _flock(fcntl.F_WRLCK, offset))
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- metadata ----------------------------------------------------------------------------

    def _info(self, key: str, path: str, st: os.stat_result) -> ObjectInfo:
        """Describe a file, using the cached hash when the file has not changed since: the
        one its commit attached to it, else the one a side file keeps for a hand-placed file."""
        stamp = [st.st_ino, st.st_size, st.st_mtime_ns]
        meta = _attached_meta(path)
        if meta.get("stamp") != stamp or not isinstance(meta.get("sha256"), str):
            meta_path = self._hashed("meta", key, ".json")
            meta = {}
            with suppress(OSError, ValueError):
                with open(meta_path, "rb") as f:
                    meta = json.load(f)
        if meta.get("stamp") != stamp or not isinstance(meta.get("sha256"), str):
            meta = {"stamp": stamp, "sha256": _hash_file(path), "content_type": guess_type(key)}
            with suppress(OSError):
                self._write_meta(meta_path, meta)
        return _described(key, st, meta)

    def _remember(self, key: str, st: os.stat_result, info: ObjectInfo) -> None:
        """Keep info as the description of the file st stamps (see stat())."""
        if len(self._known) >= KNOWN_ENTRIES:
            self._known.clear()
        self._known[key] = (_stamp(st), info)

    def _write_meta(self, meta_path: str, meta: dict[str, object]) -> None:
        os.makedirs(os.path.dirname(meta_path), exist_ok=True)
        tmp = f"{meta_path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.replace(tmp, meta_path)

    def _stat_file(self, key: Key) -> tuple[str, os.stat_result]:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {key}") from None
        if not statmod.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"no object at {key}")
        return path, st

    # -- the Storage interface ---------------------------------------------------------------

    def stat(self, key: Key) -> ObjectInfo:
        """Describe the object at key.

        A hot path (every JSON read and conditional GET starts here), so the description is
        remembered per key with the file's (device, inode, size, mtime): while one stat(2)
        of the path still shows that same file, it is the file whose place inside the root
        was checked and whose hash was read, and neither needs doing again. Any write by any
        worker renames a new inode into place, which changes the stamp."""
        try:
            st = os.stat(os.path.join(self.root, key))
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {key}") from None
        except OSError:
            st = None
        if st is not None:
            known = self._known.get(key)
            if known is not None and known[0] == _stamp(st):
                return known[1]
        path, st = self._stat_file(key)
        info = self._info(key, path, st)
        self._remember(key, st, info)
        return info

    def open(self, key: Key, start: int = 0, end: int | None = None) -> BinaryIO:
        """A real file object positioned at start (bounded to end), so sendfile can serve it."""
        path, _ = self._stat_file(key)
        f = open(path, "rb")  # noqa: SIM115 - the caller closes it
        if start:
            f.seek(start)
        if end is not None:
            return BoundedFile(f, max(0, end - start))  # type: ignore[return-value]
        return f

    def put(
        self,
        key: Key,
        data: BinaryIO,
        content_type: str,
        expect: Expect = ANYTHING,
        max_bytes: int | None = None,
        verify: Verify | None = None,
    ) -> ObjectInfo:
        """Stage data (hashing it as it streams), then commit it under key."""
        self._path(key)  # refuse a key that escapes the root before reading the body
        staged = self.stage(data, max_bytes)
        try:
            if verify is not None:
                verify(staged.sha256)
            info = self.commit(key, staged, content_type, expect)
        except BaseException:
            self.discard(staged)
            raise
        return info

    def stage(self, data: BinaryIO, max_bytes: int | None = None) -> Staged:
        """Copy data to a new staging file in one hashing pass, then fsync it."""
        staging_id = self._new_staging_id()
        path = self._staging_path(staging_id)
        try:
            batch = self._batch()
            with _enospc(), open(path, "xb") as f:
                writeback = Writeback(f.fileno())
                sha256, size = copy_hashed(data, f.write, max_bytes, writeback.wrote)
                f.flush()
                if batch is None:
                    os.fsync(f.fileno())
                    writeback.synced(size)
                else:  # start writing it out now, fsync when the batch commits
                    writeback.rest(size)
                    batch.unsynced.append(path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(path)
            raise
        return Staged(id=staging_id, size=size, sha256=sha256)

    # -- batches: a form of many files made durable together -----------------------------------
    #
    # One by one, each file costs two journal commits (its fsync, then its folder's). In a
    # batch the files are handed to the disk as each is staged, fsynced together before the
    # first commit (their data is then mostly written already), and each folder is fsynced once
    # at the end. 200 files of 100 KiB: 225 ms of syncing one by one, 75 ms in a batch.

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group this thread's stage() and commit() calls; all durable when it ends."""
        if self._batch() is not None:  # already in one
            yield
            return
        batch = _Batch()
        self._batches.current = batch
        try:
            yield
        finally:
            self._batches.current = None
            for folder in sorted(batch.folders):
                with _enospc():
                    _fsync_dir(folder)

    def _batch(self) -> _Batch | None:
        batch: _Batch | None = getattr(self._batches, "current", None)
        return batch

    def _sync_staged(self, batch: _Batch) -> None:
        """fsync every file staged in the batch so far (before any of them is renamed)."""
        for path in batch.unsynced:
            with suppress(FileNotFoundError), _enospc():  # a file discarded meanwhile is gone
                _fsync_path(path)
        batch.unsynced.clear()

    # -- staging files and their owners ------------------------------------------------------
    #
    # Each process that stages data holds an flock on a record of its own under owners/ for as
    # long as it lives, and names its staging files after it. The kernel drops the lock when
    # the process dies, however it dies: a record that can be locked belongs to nobody, and its
    # staging files are garbage. Nothing depends on clocks or on process ids, so several
    # servers (and containers) on one store never remove each other's uploads in progress.

    def _new_staging_id(self) -> str:
        if time.monotonic() - self._swept > SWEEP_EVERY_SECONDS:
            self.sweep_staging()
        return f"{self._owner_id()}-{uuid.uuid4().hex}"

    def _owner_id(self) -> str:
        with self._owner_lock:
            if self._owner is None or self._owner[0] != os.getpid():  # none yet, or forked
                owner = uuid.uuid4().hex
                os.makedirs(self._owners, exist_ok=True)
                tmp = os.path.join(self._owners, owner + ".tmp")
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.rename(tmp, os.path.join(self._owners, owner + ".lock"))  # visible locked
                self._owner = (os.getpid(), owner, fd)
                weakref.finalize(self, os.close, fd)
            return self._owner[1]

    def sweep_staging(self) -> list[str]:
        """Remove the staging files whose writer is gone; the names removed."""
        self._swept = time.monotonic()
        try:
            parts = [n for n in os.listdir(self._staging) if n.endswith(".part")]
        except FileNotFoundError:
            return []
        try:
            records = os.listdir(self._owners)
        except FileNotFoundError:
            records = []
        alive, dead = self._owner_states(records)
        removed = []
        now = time.time()
        for name in parts:
            owner = name.split("-", 1)[0] if "-" in name else ""
            if owner in alive:
                continue
            path = os.path.join(self._staging, name)
            if owner not in dead:
                with suppress(FileNotFoundError):
                    if now - os.stat(path).st_mtime < ORPHAN_AGE_SECONDS:
                        continue
            with suppress(OSError):  # gone already, or a read-only store: left as it is
                os.unlink(path)
                removed.append(name)
        for owner, fd in dead.items():
            with suppress(OSError):
                os.unlink(os.path.join(self._owners, owner + ".lock"))
            os.close(fd)
        for record in records:  # an owner that died between creating and naming its record
            if record.endswith(".tmp"):
                path = os.path.join(self._owners, record)
                with suppress(OSError):
                    if now - os.stat(path).st_mtime >= ORPHAN_AGE_SECONDS:
                        os.unlink(path)
        return removed

    def _owner_states(self, records: list[str]) -> tuple[set[str], dict[str, int]]:
        """The owners whose process lives, and those whose record we could lock: dead, each
        with the fd that holds its lock until its files are gone."""
        alive: set[str] = set()
        dead: dict[str, int] = {}
        for owner in (r[: -len(".lock")] for r in records if r.endswith(".lock")):
            record = os.path.join(self._owners, owner + ".lock")
            try:
                fd = os.open(record, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                alive.add(owner)
                os.close(fd)
            else:
                dead[owner] = fd
        return alive, dead

    def _staging_path(self, staging_id: str) -> str:
        if not staging_id or not all(c in "0123456789abcdef-_" for c in staging_id):
            raise ValueError(f"bad staging id {staging_id!r}")
        return os.path.join(self._staging, staging_id + ".part")

    def discard(self, staged: Staged) -> None:
        """Remove a staging file if it is still there."""
        with suppress(FileNotFoundError):
            os.unlink(self._staging_path(staged.id))

    def commit(
        self, key: Key, staged: Staged, content_type: str, expect: Expect = ANYTHING
    ) -> ObjectInfo:
        """Check `expect` and rename the staged file into place, under the key's lock."""
        path = self._path(key)
        staging = self._staging_path(staged.id)
        with self._lock(key):
            created = not self._check_expect(key, expect, path)
            parent = os.path.dirname(path)
            if parent != self.root:
                self._make_parent(key, parent)
            if self._path(key) != path:  # a parent was swapped for a symlink meanwhile
                raise ObjectNotFound(f"no object at {key}")
            if os.path.isdir(path):
                try:
                    os.rmdir(path)  # an empty folder holds no objects: the file may take its place
                except OSError:
                    raise Conflict(f"{key} is a folder that holds objects") from None
            _move_time_on(path, staging)
            st = os.stat(staging)
            meta: dict[str, object] = {
                "stamp": [st.st_ino, st.st_size, st.st_mtime_ns],
                "sha256": staged.sha256,
                "content_type": content_type or guess_type(key),
            }
            batch = self._batch()
            if batch is not None:
                self._sync_staged(batch)
            with _enospc():
                if not _attach_meta(staging, meta):
                    self._write_meta(self._hashed("meta", key, ".json"), meta)
                os.chmod(staging, 0o644)
                self._rename_into(key, staging, path, parent)
                if batch is None:
                    _fsync_dir(parent)
                else:
                    batch.folders.add(parent)
            return self._committed(key, st, meta, created)

    def _committed(
        self, key: Key, st: os.stat_result, meta: dict[str, object], created: bool
    ) -> ObjectInfo:
        """The description of a file just committed (st: its stat before the rename, which
        keeps its inode and times), remembered as stat() would remember it."""
        info = _described(key, st, meta)
        self._remember(key, st, info)
        return replace(info, created=created)

    def _make_parent(self, key: Key, parent: str) -> None:
        """Create the folders above key. A delete of the last file in one of them removes it
        (its empty-folder cleanup takes that file's lock, not this key's), so a folder made a
        moment ago may vanish: make it again, and call it a conflict only when a parent really
        is a file."""
        for _ in range(PARENT_ATTEMPTS):
            try:
                os.makedirs(parent, exist_ok=True)
                return
            except FileNotFoundError:  # an ancestor removed between two of makedirs' mkdirs
                continue
            except (FileExistsError, NotADirectoryError):  # a file, or a folder just removed
                if self._file_above(parent):
                    raise Conflict(f"a parent of {key} is a file") from None
        raise Conflict(f"the folders above {key} kept being removed; try again")

    def _file_above(self, parent: str) -> bool:
        """Is some folder on the way from the root to parent a file?"""
        folder = self.root
        for segment in os.path.relpath(parent, self.root).split(os.sep):
            folder = os.path.join(folder, segment)
            try:
                if not statmod.S_ISDIR(os.stat(folder).st_mode):  # a symlinked folder counts
                    return True
            except (FileNotFoundError, NotADirectoryError):
                return False
        return False

    def _rename_into(self, key: Key, staging: str, path: str, parent: str) -> None:
        """os.replace(staging, path), making the parent again if a delete removed it since."""
        for _ in range(PARENT_ATTEMPTS):
            try:
                os.replace(staging, path)
                return
            except FileNotFoundError:
                if not os.path.exists(staging):
                    raise
            except NotADirectoryError:
                if self._file_above(parent):
                    raise Conflict(f"a parent of {key} is a file") from None
            self._make_parent(key, parent)
        raise Conflict(f"the folders above {key} kept being removed; try again")

    def _check_expect(self, key: Key, expect: Expect, path: str) -> bool:
        """Whether an object is at key (resolved to path), once `expect` holds (no hashing
        for Anything)."""
        if isinstance(expect, Anything):
            try:
                return statmod.S_ISREG(os.stat(path).st_mode)
            except (FileNotFoundError, NotADirectoryError):
                return False
        try:
            current: ObjectInfo | None = self.stat(key)
        except ObjectNotFound:
            current = None
        check_expect(key, current, expect)
        return current is not None

    def delete(self, key: Key, expect: Expect = ANYTHING) -> None:
        """Remove the file at key and any folders that become empty."""
        with self._lock(key):
            path, _ = self._stat_file(key)
            self._check_expect(key, expect, path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise ObjectNotFound(f"no object at {key}") from None
            with suppress(FileNotFoundError):
                os.unlink(self._hashed("meta", key, ".json"))
            parent = os.path.dirname(path)
            while parent != self.root:
                try:
                    os.rmdir(parent)
                except OSError:
                    break
                parent = os.path.dirname(parent)

    def list(self, prefix: str = "", after: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with prefix, in key order, after `after`."""
        for key in self.list_keys(prefix, after):
            try:
                yield self.stat(Key(key))
            except (ObjectNotFound, InvalidKey):
                continue

    def list_keys(self, prefix: str = "", after: str = "") -> Iterator[str]:
        """Every key that starts with prefix, in key order, after `after`; nothing is read
        or hashed (a file's name may still be one no request can address).

        The walk goes through the folders in key order and lazily, so a page costs the keys
        it returns plus the folders it passes through, not the whole store: a folder whose
        keys all sort before `after`, or cannot start with prefix, is never opened, and the
        caller stops the walk when its page is full."""
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if base and any(s in ("", ".", "..") for s in base.split("/")):
            return  # no key has such a prefix; never walk outside the root
        top = os.path.join(self.root, base) if base else self.root
        if os.path.realpath(top) != os.path.normpath(top):
            return
        stack: list[Iterator[str]] = []
        try:
            stack.append(self._folder(top, base + "/" if base else "", prefix, after))
        except OSError:
            return
        while stack:
            key = next(stack[-1], None)
            if key is None:
                stack.pop()
                continue
            if not key.endswith("/"):
                yield key
                continue
            try:  # a folder removed or made unreadable since its parent was read: skipped
                stack.append(self._folder(os.path.join(self.root, key), key, prefix, after))
            except OSError:
                continue

    def _folder(self, path: str, rel: str, prefix: str, after: str) -> Iterator[str]:
        """The keys of one folder's entries (whose keys start with rel) that a walk for
        prefix after `after` needs, in key order, a folder's ending in '/'; the folder is
        read now (OSError if it cannot be), its keys yielded as the walk needs them."""
        names = self._sorted_entries(path)
        start = 0
        if after.startswith(rel):
            rest = after[len(rel) :]
            start = bisect.bisect_right(names, rest)
            if start and names[start - 1].endswith("/") and rest.startswith(names[start - 1]):
                start -= 1  # the folder that holds `after`: its keys past `after` are needed
        elif after > rel:
            return iter(())  # every key in this folder sorts before `after`
        within = prefix[len(rel) :] if prefix.startswith(rel) else ""  # no '/' in it
        start = max(start, bisect.bisect_left(names, within))
        chosen = itertools.takewhile(
            lambda name: name.startswith(within), itertools.islice(names, start, None)
        )
        return (rel + name for name in chosen)

    def _sorted_entries(self, path: str) -> Entries:
        """A folder's entries in key order (a folder's name ends in '/': key order is that
        of whole keys, so folder a sorts as 'a/', after 'a-c' and before 'ab').

        Paging through a large folder would read and sort it once a page, so a large folder
        that has not changed for a while is remembered with its stamp; any entry added,
        removed or renamed in it since changes its modification time. A folder changed less
        than SETTLED_NS before it is read could change again within the same clock tick
        without its time moving, so it is not remembered."""
        st = os.stat(path)
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        known = self._listed.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        read_at = time.time_ns()
        entries = sorted(_folder_entries(path))
        settled = read_at - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS
        if LISTED_MIN <= len(entries) <= LISTED_ENTRIES and settled:
            with self._listed_lock:
                self._listed.pop(path, None)
                self._listed[path] = (stamp, entries)
                total = sum(len(names) for _, names in self._listed.values())
                while total > LISTED_ENTRIES:  # the folder remembered first goes first
                    total -= len(self._listed.pop(next(iter(self._listed)))[1])
        return entries

    def check(self) -> None:
        """Write, read back and remove a probe record of this probe's own: concurrent probes
        (from any worker, or any client: /readyz is public) never touch each other's."""
        name, value = f"probes/{uuid.uuid4().hex}", uuid.uuid4().hex.encode()
        try:
            self.put_record(name, value)
            record = self.get_record(name)
            if record is None or record.value != value:
                raise OSError("the store did not read back what was written")
        finally:
            self.delete_record(name)

    # -- Records -------------------------------------------------------------------------------

    def _record_path(self, name: str) -> str:
        return os.path.join(self._state, "state", check_record_name(name))

    def get_record(self, name: str) -> Record | None:
        """The record called name, or None."""
        try:
            with open(self._record_path(name), "rb") as f:
                value = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Record(value, hashlib.sha256(value).hexdigest())

    def put_record(self, name: str, value: bytes, expect: Expect = ANYTHING) -> Record:
        """Write a record atomically and durably (tmp, fsync, rename, fsync of its folder) if
        `expect` holds; the check and the rename happen under the record's lock, so every
        process sees one order."""
        path = self._record_path(name)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            with _enospc():
                fd = _open_making_folder(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
                try:
                    view = memoryview(value)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            with self._lock("record:" + name):
                if not isinstance(expect, Anything):  # nothing to check (or read) otherwise
                    check_record_expect(name, self.get_record(name), expect)
                os.replace(tmp, path)
            _fsync_dir(os.path.dirname(path))  # the rename too survives a power loss
            return Record(bytes(value), hashlib.sha256(value).hexdigest())
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)

    def delete_record(self, name: str, expect: Expect = ANYTHING) -> None:
        """Remove a record if it exists and `expect` holds."""
        path = self._record_path(name)
        with self._lock("record:" + name):
            current = self.get_record(name)
            if current is None:
                return
            check_record_expect(name, current, expect)
            with suppress(FileNotFoundError):
                os.unlink(path)

    def list_records(self, prefix: str) -> Iterator[str]:
        """Names of the records starting with prefix (within one folder level of it)."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            names = os.listdir(os.path.join(self._state, "state", folder))
        except FileNotFoundError:
            return
        for name in sorted(names):
            full = f"{folder}/{name}" if folder else name
            if full.startswith(prefix) and not name.endswith(".tmp"):
                yield full

    # -- UploadParts: one file per upload, written at offsets --------------------------------

    def _upload_path(self, upload_id: str) -> str:
        return os.path.join(self._state, "uploads", check_upload_id(upload_id) + ".part")

    def create_upload(self, upload_id: str, key: Key) -> None:
        """Create an empty file under <root>/.filedock/uploads/."""
        path = self._upload_path(upload_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with _enospc(), open(path, "xb") as f:
            os.fsync(f.fileno())
        _fsync_dir(os.path.dirname(path))

    def write_upload(
        self,
        upload_id: str,
        offset: int,
        data: BinaryIO,
        total: int,
        verify: Callable[[], None] | None = None,
    ) -> int:
        """pwrite data at offset, fsync, and return the new size; cut back to offset on error."""
        try:
            fd = os.open(self._upload_path(upload_id), os.O_WRONLY)
        except FileNotFoundError:
            raise ObjectNotFound(f"no upload data {upload_id}") from None
        try:
            size = os.fstat(fd).st_size
            if size < offset:
                raise Conflict(f"the upload holds {size} bytes, not {offset}")
            # What earlier chunks wrote is on disk (each fsynced before its answer): it leaves
            # the page cache now, while this chunk's bytes are still arriving, rather than on
            # the way to the previous chunk's answer.
            _drop_written(fd, 0, offset)
            position = offset
            writeback = Writeback(fd, offset, step_bytes=UPLOAD_STEP_BYTES)
            try:
                with _enospc():
                    if size > offset:
                        os.ftruncate(fd, offset)  # bytes past the acknowledged offset
                    while chunk := data.read(CHUNK_BYTES):
                        if position + len(chunk) > total:
                            raise TooLarge(f"the data would pass {total} bytes")
                        view = memoryview(chunk)
                        while view:
                            written = os.pwrite(fd, view, position)
                            view = view[written:]
                            position += written
                        writeback.wrote(position)
                    if verify is not None:
                        verify()
                    os.fsync(fd)
            except BaseException:
                with suppress(OSError):
                    os.ftruncate(fd, offset)
                raise
            return position
        finally:
            os.close(fd)

    def upload_size(self, upload_id: str) -> int:
        """The size of the upload's file."""
        try:
            return os.stat(self._upload_path(upload_id)).st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"no upload data {upload_id}") from None

    def open_upload(self, upload_id: str) -> BinaryIO:
        """The upload's file, open for reading."""
        try:
            return open(self._upload_path(upload_id), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise ObjectNotFound(f"no upload data {upload_id}") from None

    def complete_upload(
        self, upload_id: str, key: Key, content_type: str, sha256: str, expect: Expect
    ) -> ObjectInfo:
        """Hard-link the upload's file into staging and commit it from there (a rename); the
        upload's own file is removed once that succeeded."""
        source = self._upload_path(upload_id)
        with suppress(OSError):  # its last chunk, fsynced, leaves the page cache as a PUT's does
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _drop_written(fd, 0, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        link_id = self._new_staging_id()
        try:
            os.link(source, self._staging_path(link_id))
        except FileNotFoundError:
            raise ObjectNotFound(f"no upload data {upload_id}") from None
        staged = Staged(id=link_id, size=os.stat(source).st_size, sha256=sha256)
        try:
            info = self.commit(key, staged, content_type, expect)
        finally:
            self.discard(staged)
        self.delete_upload(upload_id)
        return info

    def delete_upload(self, upload_id: str) -> None:
        """Remove the upload's file if it is still there."""
        with suppress(FileNotFoundError):
            os.unlink(self._upload_path(upload_id))


def _folder_entries(path: str) -> Entries:
    """The names in one folder, a folder's ending in '/'; server state and linked folders
    (whose files are elsewhere) left out."""
    found: Entries = []
    with os.scandir(path) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(RESERVED_PREFIX):
                continue
            try:
                if entry.is_dir():
                    if not entry.is_symlink():
                        found.append(name + "/")
                    continue
            except OSError:
                continue
            found.append(name)
    return found


def _move_time_on(path: str, staging: str) -> None:
    """Give a new version of a file a modification time later than the version it replaces.

    Each process remembers descriptions by (device, inode, size, mtime). A replaced version's
    inode number is freed and soon reused, and a coarse clock (before Linux 6.13 file times
    advance once a tick, a few milliseconds) gives every file written within one tick the
    same time: a later version of the same size could then look, to a process that cached an
    earlier one, like that earlier one, and it would serve the old ETag and accept an If-Match
    on it (a lost update). Times that only go up per path never repeat."""
    try:
        previous = os.stat(path).st_mtime_ns
    except OSError:
        return
    st = os.stat(staging)
    if st.st_mtime_ns <= previous:
        os.utime(staging, ns=(st.st_atime_ns, previous + 1))


def _load_sync_file_range() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _load_sync_file_range()
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4


@dataclass
class _Batch:
    unsynced: list[str] = field(default_factory=list)  # staged paths not fsynced yet
    folders: set[str] = field(default_factory=set)  # folders that got a new entry


class Writeback:
    """Write-behind for a file being streamed to disk: each window is handed to the disk as
    soon as it is written, and the window before it is waited for, then dropped from the page
    cache (it is clean by then). The disk works while the network delivers the rest, the fsync
    at the end has almost nothing left to do, and a large upload passes through the same few
    windows of memory instead of taking a new page for every 4 KiB it writes: it neither
    evicts the files being read nor pays, in a virtual machine that hands free memory back to
    its host, a host fault per page (1 GiB written to the page cache here: 0.3 s of system
    time through recycled windows, 2.4 to 3.6 s through new pages). (Linux sync_file_range(2)
    and posix_fadvise(2); a no-op elsewhere. Durability still comes from the fsync.)"""

    WINDOW_BYTES = 8 << 20

    def __init__(self, fd: int, start: int = 0, step_bytes: int = WINDOW_BYTES) -> None:
        self.fd, self.first, self.started, self.previous = fd, start, start, -1
        self.step, self.handed = step_bytes, start  # handed to the disk in steps this large

    def wrote(self, end: int) -> None:
        """The file is written up to offset end."""
        if _SYNC_FILE_RANGE is None:
            return
        if end - self.handed >= self.step:
            _SYNC_FILE_RANGE(self.fd, self.handed, end - self.handed, _WRITE)
            self.handed = end
        if end - self.started < self.WINDOW_BYTES:
            return
        if self.previous >= 0:
            flags = _WAIT_BEFORE | _WRITE | _WAIT_AFTER
            _SYNC_FILE_RANGE(self.fd, self.previous, self.started - self.previous, flags)
            os.posix_fadvise(
                self.fd, self.previous, self.started - self.previous, os.POSIX_FADV_DONTNEED
            )
        self.previous, self.started = self.started, end

    def synced(self, end: int) -> None:
        """The file is fsynced up to offset end: what was written leaves the page cache."""
        _drop_written(self.fd, self.first, end)

    def rest(self, size: int) -> None:
        """Hand the part not handed yet to the disk, without waiting."""
        if _SYNC_FILE_RANGE is not None and size > self.handed:
            _SYNC_FILE_RANGE(self.fd, self.handed, size - self.handed, _WRITE)


# Below this, a durable write stays in the page cache: JSON documents and other small files
# are likely read again soon, and a page or two costs little. From it on, the pages a write
# took are given back once they are on disk, and the next write takes those same pages: in a
# virtual machine that hands free memory back to its host, a new page costs a host fault (a
# durable 100 KiB file here: 0.5 ms kept, 0.25 ms given back; its write(2) 0.21 -> 0.02 ms).
KEEP_CACHED_BYTES = 64 << 10


def _drop_written(fd: int, start: int, end: int) -> None:
    """Drop bytes start..end of a file, fsynced (so clean), from the page cache: all of a
    write of KEEP_CACHED_BYTES or more, none of a smaller one. (A no-op off Linux.)"""
    if hasattr(os, "posix_fadvise") and end - start >= KEEP_CACHED_BYTES:
        os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)


_OFD_SETLKW: int | None = getattr(fcntl, "F_OFD_SETLKW", None)


def _flock(kind: int, offset: int) -> bytes:
    """A struct flock for one byte at offset (l_pid 0, as open file description locks need)."""
    return struct.pack("hhqqi", kind, os.SEEK_SET, offset, 1, 0)


def _open_making_folder(path: str, flags: int, mode: int = 0o666) -> int:
    """os.open(path), making its folder first if it is missing (rarely: not on every call)."""
    try:
        return os.open(path, flags, mode)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, flags, mode)


# A committed file carries its hash and media type in an extended attribute: written with
# the file before it is renamed into place, so the two can never disagree, and it costs no
# side file (creating one cost about 0.5 ms of system time per upload on a virtual machine
# here). Its stamp (inode, size, mtime) tells whether the file was changed in place since.
META_XATTR = "user.filedock.meta"


def _attach_meta(path: str, meta: dict[str, object]) -> bool:
    """Attach meta to the file at path; False where the file system keeps no such attribute
    (the caller then writes a side file)."""
    if not hasattr(os, "setxattr"):
        return False
    try:
        os.setxattr(path, META_XATTR, json.dumps(meta, separators=(",", ":")).encode())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        return False
    return True


def _attached_meta(path: str) -> dict[str, object]:
    """The meta attached to the file at path by its commit, {} if none (or unreadable)."""
    if not hasattr(os, "getxattr"):
        return {}
    try:
        meta = json.loads(os.getxattr(path, META_XATTR))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _hash_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_path(path: str, flags: int = 0) -> None:
    """fsync the file (or, with O_DIRECTORY, the folder) at path; a file written in full
    then leaves the page cache as a staged one does (see KEEP_CACHED_BYTES)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    try:
        os.fsync(fd)
        if not flags:
            _drop_written(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    _fsync_path(path, os.O_DIRECTORY)


@contextmanager
def _enospc() -> Iterator[None]:
    """Turn a full disk (or quota) into InsufficientStorage."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("the store is full") from None
        raise
