"""An in-memory store for fast tests and demos; same semantics as the others."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import BinaryIO

from .base import (
    CHUNK_BYTES,
    AlreadyExists,
    Conflict,
    Key,
    Locked,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Staged,
    TooLarge,
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

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Nothing to group in memory."""
        yield

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

    # -- staging data of resumable uploads -----------------------------------------------------

    def _upload(self, staging_id: str) -> bytearray:
        try:
            return self._uploads[staging_id]
        except (AttributeError, KeyError):
            raise ObjectNotFound(f"no staging data {staging_id}") from None

    def create_staging(self, staging_id: str) -> None:
        """Start empty staging data."""
        with self._lock:
            if not hasattr(self, "_uploads"):
                self._uploads: dict[str, bytearray] = {}
                self._upload_locks: dict[str, threading.Lock] = {}
            if staging_id in self._uploads:
                raise FileExistsError(staging_id)
            self._uploads[staging_id] = bytearray()
            self._upload_locks[staging_id] = threading.Lock()

    def append_staging(
        self,
        staging_id: str,
        offset: int,
        data: BinaryIO,
        max_bytes: int | None = None,
        verify: Callable[[], None] | None = None,
    ) -> int:
        """Append to the buffer at offset; cut back to offset on error."""
        buffer = self._upload(staging_id)
        if len(buffer) < offset:
            raise Conflict(f"the staging data holds {len(buffer)} bytes, not {offset}")
        del buffer[offset:]
        try:
            while chunk := data.read(CHUNK_BYTES):
                if max_bytes is not None and len(buffer) + len(chunk) > max_bytes:
                    raise TooLarge(f"the data would pass {max_bytes} bytes")
                buffer += chunk
            if verify is not None:
                verify()
        except BaseException:
            del buffer[offset:]
            raise
        return len(buffer)

    def staging_size(self, staging_id: str) -> int:
        """The size of the buffer."""
        return len(self._upload(staging_id))

    def open_staging(self, staging_id: str) -> BinaryIO:
        """A copy of the buffer as a stream."""
        return io.BytesIO(bytes(self._upload(staging_id)))

    @contextmanager
    def lock_staging(self, staging_id: str) -> Iterator[None]:
        """A per-upload lock, not waited for."""
        self._upload(staging_id)
        lock = self._upload_locks[staging_id]
        if not lock.acquire(blocking=False):
            raise Locked(f"staging data {staging_id} is being written")
        try:
            yield
        finally:
            lock.release()

    def staged(self, staging_id: str, sha256: str) -> Staged:
        """A copy of the buffer in the staging area commit() takes from."""
        body = bytes(self._upload(staging_id))
        staged = Staged(id=uuid.uuid4().hex, size=len(body), sha256=sha256)
        with self._lock:
            self._staged[staged.id] = body
        return staged

    def delete_staging(self, staging_id: str) -> None:
        """Forget the buffer."""
        with self._lock:
            if hasattr(self, "_uploads"):
                self._uploads.pop(staging_id, None)
                self._upload_locks.pop(staging_id, None)
