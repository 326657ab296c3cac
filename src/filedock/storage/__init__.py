"""Stores: where objects live. open_storage() picks one from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    AlreadyExists,
    Conflict,
    InsufficientStorage,
    InvalidKey,
    Key,
    Locked,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Staged,
    StagingStore,
    StateStore,
    Storage,
    StorageError,
    TooLarge,
    check_key,
    check_segment,
)
from .local import LocalStorage
from .memory import MemoryStorage

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "AlreadyExists",
    "Conflict",
    "InsufficientStorage",
    "InvalidKey",
    "Key",
    "LocalStorage",
    "Locked",
    "MemoryStorage",
    "ObjectInfo",
    "ObjectNotFound",
    "PreconditionFailed",
    "Staged",
    "StagingStore",
    "StateStore",
    "Storage",
    "StorageError",
    "TooLarge",
    "check_key",
    "check_segment",
    "open_storage",
]


def open_storage(settings: Settings) -> Storage:
    """The store named by settings.store: a directory, or memory:// for tests and demos."""
    if settings.store == "memory://":
        return MemoryStorage()
    if settings.store.startswith("s3://"):
        raise ValueError("the S3 store is not available in this version")
    return LocalStorage(settings.store)
