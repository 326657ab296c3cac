"""Stores: where objects live. open_storage() picks one from the settings."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..config import ConfigError
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


# A store setting that starts like a URL names a kind of store, not a folder.
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_storage(settings: Settings) -> Storage:
    """The store named by settings.store: a directory, or memory:// for tests and demos."""
    if settings.store == "memory://":
        return MemoryStorage()
    scheme = URL_SCHEME.match(settings.store)
    if scheme and scheme[1].lower() == "s3":
        raise ConfigError("s3:// stores need the S3 support, which this version does not have")
    if scheme:
        raise ConfigError(
            f"unknown kind of store {scheme[0]!r} in {settings.store!r}: "
            "give a folder, or memory://"
        )
    return LocalStorage(settings.store)
