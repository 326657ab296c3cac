"""An in-memory store for fast tests and demos; same semantics as the others."""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from .base import (
    ANYTHING,
    CHUNK_BYTES,
    AlreadyExists,
    Conflict,
    Expect,
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
from .locks import InProcessLocker


class MemoryStorage:
    """Objects in a dict, guarded by one lock. Offers Records, UploadParts and Staging."""

    # stat() asks this machine only (no network): a server may call it where waiting is costly
    stat_is_local = True

    def __init__(self) -> None:
        self._objects: dict[str, tuple[ObjectInfo, bytes]] = {}
        self._records: dict[str, bytes] = {}
        self._staged: dict[str, bytes] = {}
        self._uploads: dict[str, bytearray] = {}
        self._lock = threading.Lock()
        self._locker = InProcessLocker()

    def locker(self) -> InProcessLocker:
        """Locks for this store's users: one process holds it all."""
        return self._locker

    # -- the core --------------------------------------------------------------------------

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

    def put(
        self,
        key: Key,
        data: BinaryIO,
        content_type: str,
        expect: Expect = ANYTHING,
        max_bytes: int | None = None,
        verify: Verify | None = None,
    ) -> ObjectInfo:
        """Buffer the data, then swap it in under the lock if `expect` holds."""
        buffer = io.BytesIO()
        sha256, _ = copy_hashed(data, buffer.write, max_bytes)
        if verify is not None:
            verify(sha256)
        return self._swap_in(key, buffer.getvalue(), sha256, content_type, expect)

    def _swap_in(
        self, key: Key, body: bytes, sha256: str, content_type: str, expect: Expect
    ) -> ObjectInfo:
        with self._lock:
            current = self._objects.get(key)
            check_expect(key, current[0] if current else None, expect)
            parts = key.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in self._objects:
                    raise Conflict(f"a parent of {key} is a file")
            if any(k.startswith(key + "/") for k in self._objects):
                raise Conflict(f"{key} is a folder that holds objects")
            info = ObjectInfo(
                key=key,
                size=len(body),
                content_type=content_type or guess_type(key),
                sha256=sha256,
                modified=datetime.now(UTC).replace(microsecond=0),
                created=current is None,
            )
            self._objects[key] = (info, body)
            return info

    def delete(self, key: Key, expect: Expect = ANYTHING) -> None:
        """Remove the object at key."""
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                raise ObjectNotFound(f"no object at {key}")
            check_expect(key, current[0], expect)
            del self._objects[key]

    def list(self, prefix: str = "", after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with prefix, in key order."""
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix) and k > after)
            infos = [self._objects[k][0] for k in keys]
        yield from infos

    def check(self) -> None:
        """Always ready."""

    # -- Records -----------------------------------------------------------------------------

    def get_record(self, name: str) -> Record | None:
        """The record called name, or None."""
        value = self._records.get(check_record_name(name))
        return None if value is None else Record(value, _version(value))

    def put_record(self, name: str, value: bytes, expect: Expect = ANYTHING) -> Record:
        """Store a record if `expect` holds."""
        with self._lock:
            current = self.get_record(name)
            check_record_expect(name, current, expect)
            self._records[name] = bytes(value)
            return Record(bytes(value), _version(value))

    def delete_record(self, name: str, expect: Expect = ANYTHING) -> None:
        """Remove a record if it exists and `expect` holds."""
        with self._lock:
            current = self.get_record(name)
            if current is None:
                return
            check_record_expect(name, current, expect)
            del self._records[name]

    def list_records(self, prefix: str) -> Iterator[str]:
        """Names of the records starting with prefix."""
        with self._lock:
            names = sorted(n for n in self._records if n.startswith(prefix))
        yield from names

    # -- Staging -------------------------------------------------------------------------------

    def stage(self, data: BinaryIO, max_bytes: int | None = None) -> Staged:
        """Buffer the data in memory."""
        buffer = io.BytesIO()
        sha256, size = copy_hashed(data, buffer.write, max_bytes)
        staged = Staged(id=uuid.uuid4().hex, size=size, sha256=sha256)
        with self._lock:
            self._staged[staged.id] = buffer.getvalue()
        return staged

    def commit(
        self, key: Key, staged: Staged, content_type: str, expect: Expect = ANYTHING
    ) -> ObjectInfo:
        """Swap the staged bytes in if `expect` holds (kept staged if it does not)."""
        body = self._staged[staged.id]
        info = self._swap_in(key, body, staged.sha256, content_type, expect)
        with self._lock:
            self._staged.pop(staged.id, None)
        return info

    def discard(self, staged: Staged) -> None:
        """Forget staged data."""
        with self._lock:
            self._staged.pop(staged.id, None)

    # -- UploadParts ---------------------------------------------------------------------------

    def _upload(self, upload_id: str) -> bytearray:
        try:
            return self._uploads[check_upload_id(upload_id)]
        except KeyError:
            raise ObjectNotFound(f"no upload data {upload_id}") from None

    def create_upload(self, upload_id: str, key: Key) -> None:
        """Start an empty buffer."""
        with self._lock:
            if check_upload_id(upload_id) in self._uploads:
                raise AlreadyExists(f"upload {upload_id} exists")
            self._uploads[upload_id] = bytearray()

    def upload_size(self, upload_id: str) -> int:
        """The size of the buffer."""
        return len(self._upload(upload_id))

    def write_upload(
        self,
        upload_id: str,
        offset: int,
        data: BinaryIO,
        total: int,
        verify: Callable[[], None] | None = None,
    ) -> int:
        """Append to the buffer at offset; cut back to offset on error."""
        buffer = self._upload(upload_id)
        if len(buffer) < offset:
            raise Conflict(f"the upload holds {len(buffer)} bytes, not {offset}")
        del buffer[offset:]
        try:
            while chunk := data.read(CHUNK_BYTES):
                if len(buffer) + len(chunk) > total:
                    raise TooLarge(f"the data would pass {total} bytes")
                buffer += chunk
            if verify is not None:
                verify()
        except BaseException:
            del buffer[offset:]
            raise
        return len(buffer)

    def open_upload(self, upload_id: str) -> BinaryIO:
        """A copy of the buffer as a stream."""
        return io.BytesIO(bytes(self._upload(upload_id)))

    def complete_upload(
        self, upload_id: str, key: Key, content_type: str, sha256: str, expect: Expect
    ) -> ObjectInfo:
        """Swap the buffer in at key; the buffer is gone once that succeeded."""
        body = bytes(self._upload(upload_id))
        info = self._swap_in(key, body, sha256, content_type, expect)
        self.delete_upload(upload_id)
        return info

    def delete_upload(self, upload_id: str) -> None:
        """Forget the buffer."""
        with self._lock:
            self._uploads.pop(check_upload_id(upload_id), None)


def _version(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()
