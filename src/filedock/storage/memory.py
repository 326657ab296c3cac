"""An in-memory store for fast tests and demos; same semantics as the others."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from .base import (
    AlreadyExists,
    Conflict,
    Key,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Staged,
    Verify,
)
from .local import _copy, _etag_matches, guess_type


class MemoryStorage:
    """Objects in a dict, guarded by one lock."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[ObjectInfo, bytes]] = {}
        self._state: dict[str, bytes] = {}
        self._staged: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def stat(self, key: Key) -> ObjectInfo:
        """Describe the object at key."""
        try:
            return self._objects[key][0]
        except KeyError:
            raise ObjectNotFound(f"no object at {key}") from None

    def open(self, key: Key, start: int = 0, end: int | None = None) -> BinaryIO:
        """The bytes [start, end) as a stream."""
        try:
            body = self._objects[key][1]
        except KeyError:
            raise ObjectNotFound(f"no object at {key}") from None
        return io.BytesIO(body[start:end])

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
        """Stage the data, then commit it under key."""
        staged = self.stage(data, max_bytes)
        try:
            if verify is not None:
                verify(staged.sha256)
            return self.commit(key, staged, content_type, if_match, if_none_match)
        finally:
            self.discard(staged)

    def stage(self, data: BinaryIO, max_bytes: int | None = None) -> Staged:
        """Buffer the data in memory."""
        buffer = io.BytesIO()
        sha256, size = _copy(data, buffer, max_bytes)
        staged = Staged(id=uuid.uuid4().hex, size=size, sha256=sha256)
        with self._lock:
            self._staged[staged.id] = buffer.getvalue()
        return staged

    def discard(self, staged: Staged) -> None:
        """Forget staged data."""
        with self._lock:
            self._staged.pop(staged.id, None)

    def commit(
        self,
        key: Key,
        staged: Staged,
        content_type: str,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        """Swap the staged bytes in under the lock if the preconditions hold."""
        with self._lock:
            body = self._staged[staged.id]  # kept until the commit succeeds, as on disk
            current = self._objects.get(key)
            if if_none_match and current is not None:
                raise AlreadyExists(f"an object exists at {key}")
            if if_match is not None and (
                current is None or not _etag_matches(if_match, current[0])
            ):
                raise PreconditionFailed(f"the object at {key} does not match {if_match}")
            parts = key.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in self._objects:
                    raise Conflict(f"a parent of {key} is a file")
            if any(k.startswith(key + "/") for k in self._objects):
                raise Conflict(f"{key} is a folder that holds objects")
            info = ObjectInfo(
                key=key,
                size=staged.size,
                content_type=content_type or guess_type(key),
                sha256=staged.sha256,
                modified=datetime.now(UTC).replace(microsecond=0),
            )
            self._objects[key] = (info, body)
            del self._staged[staged.id]
            return info

    def delete(self, key: Key, if_match: str | None = None) -> None:
        """Remove the object at key."""
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                raise ObjectNotFound(f"no object at {key}")
            if if_match is not None and not _etag_matches(if_match, current[0]):
                raise PreconditionFailed(f"the object at {key} does not match {if_match}")
            del self._objects[key]

    def list(self, prefix: str = "", after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with prefix, in key order."""
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix) and k > after)
            infos = [self._objects[k][0] for k in keys]
        yield from infos

    def check(self) -> None:
        """Always ready."""

    def get_state(self, name: str) -> bytes | None:
        """The record called name, or None."""
        return self._state.get(name)

    def put_state(self, name: str, value: bytes, if_absent: bool = False) -> bool:
        """Store a record; with if_absent only when none exists."""
        with self._lock:
            if if_absent and name in self._state:
                return False
            self._state[name] = value
            return True

    def delete_state(self, name: str) -> None:
        """Remove a record if it exists."""
        self._state.pop(name, None)

    def list_state(self, prefix: str) -> Iterator[str]:
        """Names of the records starting with prefix."""
        yield from sorted(n for n in list(self._state) if n.startswith(prefix))
