"""Stores: where objects live. open_storage() picks one from the settings; nothing above this
package names a concrete backend. Callers use the core (ObjectStore) and ask for the optional
capabilities (Records, UploadParts, Staging, Batching) with isinstance()."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..config import ConfigError
from .base import (
    ABSENT,
    ANYTHING,
    Absent,
    AlreadyExists,
    Anything,
    Batching,
    Conflict,
    Expect,
    InsufficientStorage,
    InvalidKey,
    Key,
    KeyListing,
    Locked,
    Locker,
    Matches,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PreconditionFailed,
    ReadableUploads,
    Record,
    Records,
    Staged,
    Staging,
    Storage,
    StorageError,
    StoreUnavailable,
    TooLarge,
    UploadParts,
    check_key,
    check_segment,
    guess_type,
)
from .locks import InProcessLocker, LeaseLocker

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "ABSENT",
    "ANYTHING",
    "Absent",
    "AlreadyExists",
    "Anything",
    "Batching",
    "Conflict",
    "Expect",
    "InsufficientStorage",
    "InvalidKey",
    "Key",
    "KeyListing",
    "Locked",
    "Locker",
    "Matches",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PreconditionFailed",
    "ReadableUploads",
    "Record",
    "Records",
    "Staged",
    "Staging",
    "Storage",
    "StorageError",
    "StoreUnavailable",
    "TooLarge",
    "UploadParts",
    "check_key",
    "check_segment",
    "durable_batch",
    "guess_type",
    "open_locker",
    "open_storage",
]


# A store setting that starts like a URL names a kind of store, not a folder.
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@runtime_checkable
class _HasLocker(Protocol):
    def locker(self) -> Locker: ...


def open_storage(settings: Settings) -> ObjectStore:
    """The store named by settings.store: a directory, memory:// for tests and demos, or
    s3://BUCKET/PREFIX."""
    if settings.store == "memory://":
        from .memory import MemoryStorage

        return MemoryStorage()
    if settings.store.startswith("s3://"):
        from .s3 import open_s3

        try:
            return open_s3(settings.store, settings.s3_endpoint)
        except ValueError as exc:  # a bad bucket name or prefix: the command says so
            raise ConfigError(f"store: {exc}") from None
    scheme = URL_SCHEME.match(settings.store)
    if scheme:
        raise ConfigError(
            f"unknown kind of store {scheme[0]!r} in {settings.store!r}: "
            "give a folder, s3://BUCKET/PREFIX or memory://"
        )
    from .local import LocalStorage

    return LocalStorage(settings.store)


def open_locker(store: ObjectStore) -> Locker:
    """The locks that suit a store: its own (flock on a local disk, one process in memory),
    else leases in its records (any host), else this process's."""
    if isinstance(store, _HasLocker):
        return store.locker()
    if isinstance(store, Records):
        return LeaseLocker(store)
    return InProcessLocker()


def durable_batch(store: ObjectStore) -> AbstractContextManager[None]:
    """A block whose writes the store may make durable together (when it offers Batching)."""
    return store.batch() if isinstance(store, Batching) else nullcontext()
