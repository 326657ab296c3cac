"""The storage interface: keys and bytes, nothing about HTTP."""

from __future__ import annotations

import hashlib
import mimetypes
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, NewType, Protocol, runtime_checkable

Key = NewType("Key", str)
"""A path that passed check_key(): the only kind of path a store accepts."""

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
RESERVED_PREFIX = ".filedock"
OCTET_STREAM = "application/octet-stream"
CHUNK_BYTES = 1 << 20


class StorageError(Exception):
    """Base of every storage exception."""


class InvalidKey(StorageError, ValueError):
    """The path breaks a rule of API.md section 1."""


class ObjectNotFound(StorageError, LookupError):
    """No object at that key."""


class PreconditionFailed(StorageError):
    """If-Match / If-None-Match did not hold."""


class AlreadyExists(PreconditionFailed):
    """An object exists where the write asked to create a new one."""


class Conflict(StorageError):
    """The key collides with the tree: a file where a folder is needed, or the reverse."""


class TooLarge(StorageError):
    """The data passed the size limit given to the write."""


class InsufficientStorage(StorageError):
    """The backend ran out of space; nothing was stored."""


class StoreUnavailable(StorageError):
    """The backend cannot be reached, or refuses access; nothing was changed."""


class Locked(StorageError):
    """Another request holds the lock on that resource; try again once it is done."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows of one object."""

    key: str
    size: int
    content_type: str
    sha256: str
    modified: datetime
    # Set on what put() returns: whether that put made a new object (not part of equality,
    # so a put's answer still equals a later stat of the same version).
    created: bool = field(default=False, compare=False, repr=False)

    @property
    def etag(self) -> str:
        """The strong ETag: the quoted hex SHA-256 of the bytes."""
        return f'"{self.sha256}"'


# -- preconditions: typed, so no HTTP header reaches a store ----------------------------------


@dataclass(frozen=True)
class Expect:
    """What must hold of the current version for a write or delete to go ahead."""


@dataclass(frozen=True)
class Anything(Expect):
    """No precondition: create or replace (put reports which in ObjectInfo.created)."""


@dataclass(frozen=True)
class Absent(Expect):
    """Nothing may be there: create only (AlreadyExists otherwise)."""


@dataclass(frozen=True)
class Matches(Expect):
    """The current version must be this one: the hex SHA-256 of an object, or the version of
    a record (PreconditionFailed otherwise, also when there is none)."""

    version: str


ANYTHING = Anything()
ABSENT = Absent()


Verify = Callable[[str], None]
"""Called with the SHA-256 hex of the data before it is committed; raising aborts the write."""


@runtime_checkable
class ObjectStore(Protocol):
    """The core every backend implements: a flat namespace of keys holding bytes, with
    compare-and-swap writes."""

    def stat(self, key: Key) -> ObjectInfo:
        """Describe the object at key; ObjectNotFound if there is none."""
        ...

    def open(self, key: Key, start: int = 0, end: int | None = None) -> BinaryIO:
        """A readable stream of bytes [start, end) of the object."""
        ...

    def put(
        self,
        key: Key,
        data: BinaryIO,
        content_type: str,
        expect: Expect = ANYTHING,
        max_bytes: int | None = None,
        verify: Verify | None = None,
    ) -> ObjectInfo:
        """Stream data to key, hashing it, and commit it atomically if `expect` holds.
        TooLarge past max_bytes; nothing is visible at key unless the whole put succeeds."""
        ...

    def delete(self, key: Key, expect: Expect = ANYTHING) -> None:
        """Remove the object at key if `expect` holds; ObjectNotFound if there is none."""
        ...

    def list(self, prefix: str = "", after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with prefix and sorts after `after`, in key order."""
        ...

    def check(self) -> None:
        """Raise if the store cannot be read and written (readiness)."""
        ...


Storage = ObjectStore
"""The name callers use for the core interface."""


# -- optional capabilities: callers ask with isinstance(); no backend fakes one -----------------


@dataclass(frozen=True)
class Record:
    """A small state record and its version (for Matches)."""

    value: bytes
    version: str


@runtime_checkable
class Records(Protocol):
    """Small records of the server's own state (signing keys, upload state), shared by all
    workers and instances of one store, written with compare-and-swap."""

    def get_record(self, name: str) -> Record | None:
        """The record called name, or None."""
        ...

    def put_record(self, name: str, value: bytes, expect: Expect = ANYTHING) -> Record:
        """Store a record atomically if `expect` holds (AlreadyExists / PreconditionFailed)."""
        ...

    def delete_record(self, name: str, expect: Expect = ANYTHING) -> None:
        """Remove a record if `expect` holds; nothing happens if there is none."""
        ...

    def list_records(self, prefix: str) -> Iterator[str]:
        """Names of the records starting with prefix, in order."""
        ...


@runtime_checkable
class UploadParts(Protocol):
    """The data of resumable uploads, kept by id and grown chunk by chunk until it is
    completed into an object (a file on disk; multipart upload parts on S3)."""

    def create_upload(self, upload_id: str, key: Key) -> None:
        """Start empty data for upload_id, which will be completed into key."""
        ...

    def upload_size(self, upload_id: str) -> int:
        """How many bytes are stored durably; ObjectNotFound if there is no such upload."""
        ...

    def write_upload(
        self,
        upload_id: str,
        offset: int,
        data: BinaryIO,
        total: int,
        verify: Callable[[], None] | None = None,
    ) -> int:
        """Add data at offset (the current size, or less: what is past it is dropped), make it
        durable and return the new size. TooLarge if it would pass `total` (the upload's
        length); if that or verify() raises, nothing of this call is kept."""
        ...

    def complete_upload(
        self, upload_id: str, key: Key, content_type: str, sha256: str, expect: Expect
    ) -> ObjectInfo:
        """Make the complete data the object at key, atomically, if `expect` holds; the
        upload's data is consumed when this succeeds and kept when it fails."""
        ...

    def delete_upload(self, upload_id: str) -> None:
        """Remove an upload's data if it exists."""
        ...


@runtime_checkable
class ReadableUploads(Protocol):
    """Uploads whose data so far can be read back (not S3's: parts of an unfinished
    multipart upload cannot be read)."""

    def open_upload(self, upload_id: str) -> BinaryIO:
        """The upload's data so far as a readable stream."""
        ...


@dataclass(frozen=True)
class Staged:
    """Data written to a store's staging area, not yet visible at any key."""

    id: str
    size: int
    sha256: str


@runtime_checkable
class Staging(Protocol):
    """Data staged before its key is known (the files of a form whose fields may come after
    them), committed by a cheap move. Where a store lacks it, callers spool to a file."""

    def stage(self, data: BinaryIO, max_bytes: int | None = None) -> Staged:
        """Stream data into staging, hashing it; TooLarge past max_bytes (nothing kept)."""
        ...

    def commit(
        self, key: Key, staged: Staged, content_type: str, expect: Expect = ANYTHING
    ) -> ObjectInfo:
        """Make staged data appear at key, atomically, if `expect` holds."""
        ...

    def discard(self, staged: Staged) -> None:
        """Drop staged data that will not be committed."""
        ...


@runtime_checkable
class Batching(Protocol):
    """Batched durability: writes made inside batch() are made durable together."""

    def batch(self) -> AbstractContextManager[None]:
        """Group this thread's writes; every one is durable when the block ends."""
        ...


@runtime_checkable
class Locker(Protocol):
    """Exclusive, non-waiting locks on names (an upload being written)."""

    def lock(self, name: str) -> AbstractContextManager[None]:
        """Hold the lock on name for the block; Locked at once if another holds it."""
        ...


def check_key(path: str) -> Key:
    """Apply every rule of API.md section 1 to path and return it as a Key."""
    if not path:
        raise InvalidKey("the path is empty")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("the path is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"the path is {size} bytes long; the limit is {MAX_KEY_BYTES}")
    if path.startswith("/"):
        raise InvalidKey("the path starts with '/'")
    for segment in path.split("/"):
        check_segment(segment)
    return Key(path)


def check_segment(segment: str) -> None:
    """Apply section 1's rules for one segment."""
    if segment == "":
        raise InvalidKey("the path has an empty segment")
    if segment in (".", ".."):
        raise InvalidKey(f"the path has a '{segment}' segment")
    try:
        size = len(segment.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("the name is not valid UTF-8") from None
    if size > MAX_SEGMENT_BYTES:
        raise InvalidKey(f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")
    if segment.startswith(RESERVED_PREFIX):
        raise InvalidKey(f"segments starting with {RESERVED_PREFIX!r} are reserved")
    if "\\" in segment or "/" in segment:
        raise InvalidKey(
            "the path contains a backslash" if "\\" in segment else "a name may not contain '/'"
        )
    for char in segment:
        if unicodedata.category(char) == "Cc":
            raise InvalidKey(f"the path contains the control character U+{ord(char):04X}")


def guess_type(key: str) -> str:
    """The media type a key's extension suggests."""
    return mimetypes.guess_type(key, strict=False)[0] or OCTET_STREAM


def copy_hashed(
    src: BinaryIO,
    write: Callable[[bytes], object],
    max_bytes: int | None,
    progress: Callable[[int], object] | None = None,
) -> tuple[str, int]:
    """Copy src to write() in one pass, hashing as it goes; TooLarge past max_bytes.
    progress(bytes written so far) is called after each chunk."""
    digest = hashlib.sha256()
    size = 0
    read, update = src.read, digest.update
    while True:
        chunk = read(CHUNK_BYTES)
        if not chunk:
            break
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise TooLarge(f"the body is larger than {max_bytes} bytes")
        update(chunk)
        write(chunk)
        if progress is not None:
            progress(size)
    return digest.hexdigest(), size


def check_record_name(name: str) -> str:
    """A record name is a relative path of plain segments (filedock's own names only)."""
    if not name or name.startswith("/") or "\0" in name or "\\" in name:
        raise ValueError(f"bad record name {name!r}")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"bad record name {name!r}")
    return name


def check_upload_id(upload_id: str) -> str:
    """Upload ids are lowercase hex (they name files and objects)."""
    if not upload_id or len(upload_id) > 64 or not all(c in "0123456789abcdef" for c in upload_id):
        raise ValueError(f"bad upload id {upload_id!r}")
    return upload_id


def check_expect(key: str, current: ObjectInfo | None, expect: Expect) -> None:
    """Raise unless `expect` holds of the current object (None: there is none)."""
    if isinstance(expect, Absent):
        if current is not None:
            raise AlreadyExists(f"an object exists at {key}")
    elif isinstance(expect, Matches):
        if current is None:
            raise PreconditionFailed(f"no object at {key} to match")
        if current.sha256 != expect.version:
            raise PreconditionFailed(f"the object at {key} has changed")


def check_record_expect(name: str, current: Record | None, expect: Expect) -> None:
    """Raise unless `expect` holds of the current record (None: there is none)."""
    if isinstance(expect, Absent) and current is not None:
        raise AlreadyExists(f"the record {name} exists")
    if isinstance(expect, Matches) and (current is None or current.version != expect.version):
        raise PreconditionFailed(f"the record {name} has changed")


@runtime_checkable
class KeyListing(Protocol):
    """Listing keys without describing their objects (which can mean hashing them), so a
    caller can filter keys first and describe only those it returns. Optional."""

    def list_keys(self, prefix: str = "", after: str = "") -> Iterator[str]:
        """Keys that start with prefix and sort after `after`, in key order."""
        ...
