"""The storage interface: keys and bytes, nothing about HTTP."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows of one object."""

    key: str
    size: int
    content_type: str
    sha256: str
    modified: datetime

    @property
    def etag(self) -> str:
        """The strong ETag: the quoted hex SHA-256 of the bytes."""
        return f'"{self.sha256}"'


@dataclass(frozen=True)
class Staged:
    """Data written to a store's staging area, not yet visible at any key."""

    id: str
    size: int
    sha256: str


Verify = Callable[[str], None]
"""Called with the SHA-256 hex of the staged data before it is committed; raising aborts."""


@runtime_checkable
class Storage(Protocol):
    """A flat namespace of keys holding bytes, with compare-and-swap writes."""

    def stat(self, key: Key) -> ObjectInfo:
        """Describe the object at key; ObjectNotFound if there is none."""
        ...

    def open(self, key: Key, start: int = 0, end: int | None = None) -> BinaryIO:
        """A readable stream of bytes [start, end) of the object."""
        ...

    def write(
        self,
        key: Key,
        data: BinaryIO,
        content_type: str,
        if_match: str | None = None,
        if_none_match: bool = False,
        max_bytes: int | None = None,
        verify: Verify | None = None,
    ) -> ObjectInfo:
        """Stream data to key and commit it atomically if the preconditions hold."""
        ...

    def stage(self, data: BinaryIO, max_bytes: int | None = None) -> Staged:
        """Stream data into staging, hashing it; TooLarge past max_bytes (nothing kept)."""
        ...

    def commit(
        self,
        key: Key,
        staged: Staged,
        content_type: str,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        """Make staged data appear at key, atomically, if the preconditions hold."""
        ...

    def discard(self, staged: Staged) -> None:
        """Drop staged data that will not be committed."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Group the stage() and commit() calls of one request made inside it (a form of many
        files): the store may make them durable together rather than one by one, but every
        commit is durable when the block ends, before the request is answered."""
        ...

    def delete(self, key: Key, if_match: str | None = None) -> None:
        """Remove the object at key."""
        ...

    def list(self, prefix: str = "", after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with prefix and sorts after `after`, in key order."""
        ...

    def check(self) -> None:
        """Raise if the store cannot be read and written (readiness)."""
        ...


@runtime_checkable
class StateStore(Protocol):
    """Small records of the server's own state (signing keys, upload state), shared by all
    workers and instances of one store. Optional: stores that offer it implement these."""

    def get_state(self, name: str) -> bytes | None:
        """The record called name, or None."""
        ...

    def put_state(self, name: str, value: bytes, if_absent: bool = False) -> bool:
        """Store a record atomically; with if_absent, only when none exists (returns False)."""
        ...

    def delete_state(self, name: str) -> None:
        """Remove a record if it exists."""
        ...

    def list_state(self, prefix: str) -> Iterator[str]:
        """Names of the records starting with prefix."""
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


class Locked(StorageError):
    """Another request holds the lock on that resource; try again once it is done."""


@runtime_checkable
class StagingStore(Protocol):
    """Appendable staging data for resumable uploads, kept by id until it is committed with
    Storage.commit() (through staged()) or deleted. Optional, as StateStore is."""

    def create_staging(self, staging_id: str) -> None:
        """Create empty staging data called staging_id."""
        ...

    def append_staging(
        self,
        staging_id: str,
        offset: int,
        data: BinaryIO,
        max_bytes: int | None = None,
        verify: Callable[[], None] | None = None,
    ) -> int:
        """Write data at offset (dropping anything past it), make it durable, return the new
        size. TooLarge if the size would pass max_bytes; if that or verify() raises, the data
        is cut back to offset."""
        ...

    def staging_size(self, staging_id: str) -> int:
        """The size of the staging data; ObjectNotFound if there is none."""
        ...

    def open_staging(self, staging_id: str) -> BinaryIO:
        """The staging data as a readable stream."""
        ...

    def lock_staging(self, staging_id: str) -> AbstractContextManager[None]:
        """Hold the lock of staging_id across threads and processes; Locked if it is taken,
        ObjectNotFound if there is no such staging data."""
        ...

    def staged(self, staging_id: str, sha256: str) -> Staged:
        """The staging data as a Staged that commit() accepts; the staging data stays."""
        ...

    def delete_staging(self, staging_id: str) -> None:
        """Remove the staging data if it exists."""
        ...


@runtime_checkable
class KeyListing(Protocol):
    """Listing keys without describing their objects (which can mean hashing them), so a
    caller can filter keys first and describe only those it returns. Optional."""

    def list_keys(self, prefix: str = "", after: str = "") -> Iterator[str]:
        """Keys that start with prefix and sort after `after`, in key order."""
        ...
