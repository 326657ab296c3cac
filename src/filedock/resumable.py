"""tus 1.0.0 upload state and rules (API.md section 7); no Flask.

An upload is two things in the store, so that any worker, a restarted server or another
instance can continue it:

- a small JSON record `uploads/<id>.json` in the store's Records: length, acknowledged offset,
  metadata, target key, overwrite flag, expiry and the running SHA-256 state;
- the upload's data `<id>` in the store's UploadParts, added to chunk by chunk.

A PATCH holds the upload's lock (from the store's Locker: flock on one host, a lease record
across hosts; a second writer gets Locked, 423), writes at the acknowledged offset, makes it
durable, and only then saves the record with the new offset: an offset is acknowledged only
when its bytes are durable. The last chunk completes the data into its target object, hashed
incrementally (see sha256state.py).

Expiry: an upload expires UPLOAD_TTL_SECONDS after it was created or last written to.
Expired uploads answer 404 and are removed when next touched, and a sweep of every upload
record runs at most once per SWEEP_INTERVAL_SECONDS per store, started by an upload creation
(the throttle is a state record, so all workers and instances share it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields, replace
from typing import IO, Any, BinaryIO, Protocol, cast

from .mediatypes import choose_type
from .sha256state import TAG, ResumableSha256
from .storage import (
    ABSENT,
    ANYTHING,
    AlreadyExists,
    Conflict,
    Key,
    Locked,
    Locker,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ReadableUploads,
    Records,
    StorageError,
    TooLarge,
    UploadParts,
    check_key,
    check_segment,
    open_locker,
)
from .storage.base import CHUNK_BYTES
from .upload_quota import UNRECORDED_CLAIM_SECONDS, Limits, UploadClaims, owner_of
from .upload_quota import release as release_claim

TUS_VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "termination", "checksum", "expiration")
CHECKSUM_ALGORITHMS = ("sha1", "sha256")
UPLOAD_TTL_SECONDS = 24 * 3600
SWEEP_INTERVAL_SECONDS = 600
RECORD_PREFIX = "uploads/"
SWEEP_RECORD = "uploads-swept-at"
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
METADATA_KEY = re.compile(r"[!-~]+")  # printable ASCII without space; commas checked apart
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class UploadError(Exception):
    """Base of the resumable upload errors."""


class UploadNotFound(UploadError, LookupError):
    """No such upload (never created, finished and forgotten, expired or terminated)."""


class InvalidUpload(UploadError, ValueError):
    """A tus header or the metadata is malformed."""


class OffsetMismatch(UploadError):
    """Upload-Offset is not the upload's current offset."""


class ChecksumMismatch(UploadError):
    """The chunk does not match its Upload-Checksum; it was not kept."""


class TargetExists(UploadError):
    """An object exists at the target path and overwrite was not asked for."""


class NotResumable(UploadError):
    """This store cannot hold resumable uploads."""


class UploadStore(ObjectStore, Records, UploadParts, Protocol):
    """A store with the records and upload data resumable uploads need."""


@dataclass(frozen=True)
class Target:
    """Where a finished upload goes, from its Upload-Metadata."""

    key: Key
    overwrite: bool
    content_type: str


@dataclass(frozen=True)
class Checksum:
    """A parsed Upload-Checksum header."""

    algorithm: str
    digest: bytes


@dataclass(frozen=True)
class Upload:
    """The state record of one upload."""

    id: str
    length: int
    offset: int
    key: str
    overwrite: bool
    content_type: str
    metadata: str  # the client's Upload-Metadata, validated: safe to echo in a header
    created: float
    expires: float
    hash_tag: str = ""  # sha256state.TAG of hash_state, "" when no state could be saved
    hash_state: str = ""  # base64 of the raw SHA256_CTX after `offset` bytes
    done: bool = False
    sha256: str = ""  # set when done
    etag: str = field(default="")  # set when done
    owner: str = ""  # whose open-upload claim it holds (upload_quota.py); "" for none

    @property
    def target(self) -> Key:
        """The target path (validated when the upload was created)."""
        return Key(self.key)

    def to_json(self) -> bytes:
        """The record as stored (every field, flat: no need for asdict's deep copy, which was
        a third of the cost of saving the record after each chunk)."""
        values = {name: getattr(self, name) for name in _UPLOAD_FIELDS}
        return json.dumps(values, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Upload:
        """Read a stored record."""
        return cls(**json.loads(data))


_UPLOAD_FIELDS = tuple(f.name for f in fields(Upload))


def parse_metadata(header: str | None) -> dict[str, str]:
    """Upload-Metadata: comma-separated `key base64value` pairs (value optional) -> dict.

    Values must be plain padded base64 of UTF-8 text; anything else is InvalidUpload, so the
    header is safe to echo back once this passed."""
    result: dict[str, str] = {}
    if header is None or not header.strip():
        return result
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not METADATA_KEY.fullmatch(parts[0]):
            raise InvalidUpload(f"malformed Upload-Metadata pair {pair.strip()[:40]!r}")
        name = parts[0]
        if name in result:
            raise InvalidUpload(f"Upload-Metadata has {name!r} twice")
        encoded = parts[1] if len(parts) == 2 else ""
        if not BASE64.fullmatch(encoded) or len(encoded) % 4:
            raise InvalidUpload(f"the Upload-Metadata value of {name!r} is not base64")
        try:
            result[name] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            detail = f"the Upload-Metadata value of {name!r} is not base64 of UTF-8"
            raise InvalidUpload(detail) from None
    return result


def parse_target(metadata: dict[str, str]) -> Target:
    """The target of an upload: `path`, else `filename` at the root (its last segment)."""
    if "path" in metadata:
        key = check_key(metadata["path"])
    elif "filename" in metadata:
        name = re.split(r"[/\\]", metadata["filename"])[-1]
        check_segment(name)
        key = Key(name)
    else:
        raise InvalidUpload("Upload-Metadata must carry the target as 'path' or 'filename'")
    overwrite = metadata.get("overwrite", "false")
    if overwrite not in ("true", "false"):
        raise InvalidUpload("the 'overwrite' metadata is 'true' or 'false'")
    # `filetype` counts as a declared Content-Type (API.md section 3)
    return Target(key, overwrite == "true", choose_type(key, metadata.get("filetype")))


def parse_checksum(header: str | None) -> Checksum | None:
    """Upload-Checksum: `<algorithm> <base64 digest>`."""
    if header is None:
        return None
    parts = header.strip().split(" ")
    if len(parts) != 2:
        raise InvalidUpload("Upload-Checksum is '<algorithm> <base64 digest>'")
    algorithm = parts[0].lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidUpload(
            f"unsupported checksum algorithm {parts[0][:20]!r}; "
            f"use {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    try:
        digest = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise InvalidUpload("the Upload-Checksum digest is not base64") from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise InvalidUpload(f"a {algorithm} digest is {hashlib.new(algorithm).digest_size} bytes")
    return Checksum(algorithm, digest)


def parse_offset(value: str | None, name: str) -> int:
    """A non-negative integer header such as Upload-Offset or Upload-Length."""
    if value is None:
        raise InvalidUpload(f"{name} is required")
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise InvalidUpload(f"{name} must be a non-negative integer")
    return int(value)


class _Hasher:
    """Feeds the running SHA-256 (and a chunk checksum) from the bytes read off a body,
    ending the body quietly when the client goes away so that what arrived can be kept."""

    def __init__(
        self,
        body: IO[bytes],
        sha256: ResumableSha256 | Any,
        checksum: Checksum | None,
        disconnect_errors: tuple[type[BaseException], ...],
    ) -> None:
        self._body = body
        self._sha256 = sha256
        self._chunk = hashlib.new(checksum.algorithm) if checksum else None
        self._errors = disconnect_errors
        self.received = 0
        self.cut_short = False

    def read(self, size: int = -1) -> bytes:
        """Read from the body, hashing what is read."""
        if self.cut_short:
            return b""
        try:
            data = self._body.read(size)
        except self._errors:
            self.cut_short = True
            return b""
        self._sha256.update(data)
        if self._chunk is not None:
            self._chunk.update(data)
        self.received += len(data)
        return data

    def chunk_digest(self) -> bytes:
        """The digest of the chunk for Upload-Checksum."""
        assert self._chunk is not None
        return self._chunk.digest()


class _PrefixHashes:
    """Fallback without libcrypto: hashlib objects of this process, by upload and offset.
    A process that has none for an upload's current offset re-hashes the stored prefix once."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, upload_id: str, offset: int) -> Any | None:
        with self._lock:
            item = self._items.pop(upload_id, None)
        return item[1] if item is not None and item[0] == offset else None

    def put(self, upload_id: str, offset: int, digest: Any) -> None:
        with self._lock:
            self._items[upload_id] = (offset, digest)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self._items.pop(upload_id, None)


PREFIX_HASHES = _PrefixHashes()


class Uploads:
    """The tus rules over one store."""

    def __init__(
        self,
        storage: ObjectStore,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
        use_openssl: bool = True,
        disconnect_errors: tuple[type[BaseException], ...] = (),
        locker: Locker | None = None,
        limits: Limits | None = None,
    ) -> None:
        if not isinstance(storage, Records) or not isinstance(storage, UploadParts):
            raise NotResumable("this store cannot hold resumable uploads")
        self.storage = cast(UploadStore, storage)
        self.locker = locker or open_locker(storage)
        self.max_bytes = max_bytes
        self.clock = clock
        self.use_openssl = use_openssl
        self.disconnect_errors = disconnect_errors
        self.claims = UploadClaims(self.storage, limits, clock) if limits is not None else None

    # -- records ---------------------------------------------------------------------------

    def _load(self, upload_id: str) -> Upload:
        if not ID_PATTERN.fullmatch(upload_id):
            raise UploadNotFound(f"no upload {upload_id[:64]}")
        record = self.storage.get_record(RECORD_PREFIX + upload_id + ".json")
        if record is None:
            raise UploadNotFound(f"no upload {upload_id}")
        return Upload.from_json(record.value)

    def _save(self, upload: Upload) -> None:
        self.storage.put_record(RECORD_PREFIX + upload.id + ".json", upload.to_json())

    def _lock(self, upload_id: str) -> AbstractContextManager[None]:
        return self.locker.lock("upload:" + upload_id)

    def _forget(self, upload_id: str, owner: str = "") -> None:
        self.storage.delete_upload(upload_id)
        self.storage.delete_record(RECORD_PREFIX + upload_id + ".json")
        PREFIX_HASHES.drop(upload_id)
        self._release(owner, upload_id)

    def _release(self, owner: str, upload_id: str) -> None:
        """Give back the upload's open-upload claim, if it holds one (also when this server
        has no limits set and another one made the claim)."""
        release_claim(self.storage, owner, upload_id)

    def is_open(self, upload_id: str, claimed_at: float) -> bool:
        """Does the upload still hold its claim: not finished, not expired, and recorded
        (or just claimed, its record about to be written)?"""
        try:
            upload = self._load(upload_id)
        except UploadNotFound:
            return self.clock() - claimed_at < UNRECORDED_CLAIM_SECONDS
        except (ValueError, TypeError):
            return False
        return not upload.done and upload.expires > self.clock()

    def get(self, upload_id: str) -> Upload:
        """The upload's record; UploadNotFound if there is none or it expired (then removed)."""
        upload = self._load(upload_id)
        if upload.expires <= self.clock():
            self._remove_expired(upload.id)
            raise UploadNotFound(f"upload {upload_id} expired")
        return upload

    def _remove_expired(self, upload_id: str) -> bool:
        try:
            with self._lock(upload_id):
                upload = self._load(upload_id)
                if upload.expires > self.clock():
                    return False
                self._forget(upload_id, upload.owner)
        except Locked:
            return False
        except UploadNotFound:
            self._forget(upload_id)  # a record that went meanwhile: its data too
        return True

    # -- creation ----------------------------------------------------------------------------

    def check_target(self, target: Target, length: int) -> None:
        """Refuse an upload whose target is taken (without overwrite) or that is too large."""
        if length > self.max_bytes:
            raise TooLarge(f"Upload-Length {length} is past the limit of {self.max_bytes} bytes")
        if not target.overwrite:
            try:
                self.storage.stat(target.key)
            except ObjectNotFound:
                pass
            else:
                raise TargetExists(f"an object exists at {target.key}; set overwrite to replace it")

    def create(self, length: int, metadata_header: str, target: Target, client: str = "") -> Upload:
        """Start an upload of `length` bytes to target (checked again here) for client (a
        token or an address, counted against the open-upload limits when they are set)."""
        self.check_target(target, length)
        self.maybe_sweep()
        now = self.clock()
        sha256: Any = (ResumableSha256.new() if self.use_openssl else None) or hashlib.sha256()
        upload = Upload(
            id=uuid.uuid4().hex,
            length=length,
            offset=0,
            key=target.key,
            overwrite=target.overwrite,
            content_type=target.content_type,
            metadata=metadata_header.strip(),
            created=now,
            expires=now + UPLOAD_TTL_SECONDS,
            owner=owner_of(client) if self.claims is not None else "",
        )
        upload = self._with_hash(upload, sha256)
        if self.claims is not None:  # TooManyUploads, before anything else is stored
            self.claims.claim(upload.owner, upload.id, length, self.is_open)
        try:
            # The record first: data without a record could never be found and swept.
            self.storage.put_record(RECORD_PREFIX + upload.id + ".json", upload.to_json(), ABSENT)
        except BaseException:
            self._release(upload.owner, upload.id)
            raise
        self.storage.create_upload(upload.id, upload.target)
        if length == 0:
            with self._lock(upload.id):
                return self._finish(upload, sha256)
        return upload

    # -- PATCH -------------------------------------------------------------------------------

    def append(
        self,
        upload_id: str,
        offset: int,
        body: IO[bytes],
        content_length: int | None,
        checksum: Checksum | None = None,
        known: Upload | None = None,
    ) -> Upload:
        """Write a chunk at offset; the last one commits the upload to its target. `known`
        is the upload's record if the caller just read it (it is read again under the lock).

        Raises OffsetMismatch, TooLarge (chunk past Upload-Length), ChecksumMismatch,
        Locked (another request is writing), TargetExists / Conflict at commit."""
        upload = known if known is not None and known.id == upload_id else self.get(upload_id)
        if upload.done:
            return self._append_done(upload, offset, content_length)
        try:
            with self._lock(upload.id):
                upload = self.get(upload_id)  # the record as it is now that we hold the lock
                if upload.done:
                    return self._append_done(upload, offset, content_length)
                return self._append_locked(upload, offset, body, content_length, checksum)
        except ObjectNotFound:
            upload = self.get(upload_id)  # finished meanwhile, or data lost
            if upload.done:
                return self._append_done(upload, offset, content_length)
            raise UploadNotFound(f"upload {upload_id} has no data") from None

    def _append_done(self, upload: Upload, offset: int, content_length: int | None) -> Upload:
        if offset != upload.offset:
            raise OffsetMismatch(f"expected Upload-Offset {upload.offset}, got {offset}")
        if content_length:
            raise TooLarge(f"the upload is complete at {upload.length} bytes")
        return upload

    def _append_locked(
        self,
        upload: Upload,
        offset: int,
        body: IO[bytes],
        content_length: int | None,
        checksum: Checksum | None,
    ) -> Upload:
        if offset != upload.offset:
            raise OffsetMismatch(f"expected Upload-Offset {upload.offset}, got {offset}")
        if content_length is not None and offset + content_length > upload.length:
            raise TooLarge(
                f"{content_length} bytes at offset {offset} pass Upload-Length {upload.length}"
            )
        sha256 = self._resume_hash(upload)
        reader = _Hasher(body, sha256, checksum, self.disconnect_errors)

        def verify() -> None:
            if reader.cut_short and checksum is not None:
                raise ChecksumMismatch("the chunk ended early; it was not kept")
            if checksum is not None and reader.chunk_digest() != checksum.digest:
                raise ChecksumMismatch(f"the chunk does not match its {checksum.algorithm}")

        size = self.storage.write_upload(
            upload.id, offset, cast(BinaryIO, reader), upload.length, verify
        )
        upload = replace(upload, offset=size, expires=self.clock() + UPLOAD_TTL_SECONDS)
        upload = self._with_hash(upload, sha256)
        self._save(upload)
        if upload.offset == upload.length:
            # Also reached by an empty PATCH at the end of an upload whose commit failed
            # (the target had appeared): the client may clear the target and try again.
            return self._finish(upload, sha256)
        return upload

    def _resume_hash(self, upload: Upload) -> Any:
        """The running SHA-256 at the upload's offset, resumed from the record when it can be,
        else from this process's cache, else by re-hashing the stored prefix once."""
        if self.use_openssl and upload.hash_tag:
            resumed = ResumableSha256.from_state(
                upload.hash_tag, base64.b64decode(upload.hash_state)
            )
            if resumed is not None:
                return resumed
        cached = PREFIX_HASHES.take(upload.id, upload.offset)
        if cached is not None:
            return cached
        if not isinstance(self.storage, ReadableUploads):
            raise NotResumable("this process cannot resume the upload's hash on this store")
        digest: Any = (ResumableSha256.new() if self.use_openssl else None) or hashlib.sha256()
        with self.storage.open_upload(upload.id) as f:
            left = upload.offset
            while left > 0:
                chunk = f.read(min(CHUNK_BYTES, left))
                if not chunk:
                    raise StorageError(f"the staging data of upload {upload.id} is short")
                digest.update(chunk)
                left -= len(chunk)
        return digest

    def _with_hash(self, upload: Upload, sha256: Any) -> Upload:
        """Put the running hash in the record, or in this process's cache without libcrypto."""
        if isinstance(sha256, ResumableSha256):
            state = base64.b64encode(sha256.state()).decode()
            return replace(upload, hash_tag=TAG, hash_state=state)
        PREFIX_HASHES.put(upload.id, upload.offset, sha256.copy())
        return replace(upload, hash_tag="", hash_state="")

    def _finish(self, upload: Upload, sha256: Any) -> Upload:
        """Complete the upload's data into the target (the caller holds the lock)."""
        try:
            info: ObjectInfo = self.storage.complete_upload(
                upload.id,
                upload.target,
                upload.content_type,  # "": the store guesses from the key
                sha256.hexdigest(),
                ANYTHING if upload.overwrite else ABSENT,
            )
        except AlreadyExists:
            raise TargetExists(
                f"an object appeared at {upload.key} meanwhile; DELETE the upload, "
                "or delete the object and send an empty PATCH to commit again"
            ) from None
        except ObjectNotFound:
            # The target leads out of the store (a symlink): not "upload has no data", which
            # append() would make of an ObjectNotFound, and which tells a client to start over.
            raise Conflict(f"{upload.key} cannot be written: it leads out of the store") from None
        done = replace(upload, done=True, sha256=info.sha256, etag=info.etag, hash_state="")
        self._save(done)
        PREFIX_HASHES.drop(upload.id)
        self._release(upload.owner, upload.id)
        return done

    # -- termination and expiry ------------------------------------------------------------------

    def terminate(self, upload_id: str) -> None:
        """Remove an upload and its data (not the object it was committed to)."""
        upload = self.get(upload_id)
        with self._lock(upload.id):
            self._forget(upload.id, upload.owner)

    def maybe_sweep(self) -> int:
        """Sweep if no worker or instance has within SWEEP_INTERVAL_SECONDS."""
        now = self.clock()
        last = self.storage.get_record(SWEEP_RECORD)
        try:
            if last is not None and now - float(last.value) < SWEEP_INTERVAL_SECONDS:
                return 0
        except ValueError:
            pass
        self.storage.put_record(SWEEP_RECORD, repr(now).encode())
        return self.sweep()

    def sweep(self) -> int:
        """Remove every expired upload not being written to; how many were removed."""
        now = self.clock()
        removed = 0
        for name in list(self.storage.list_records(RECORD_PREFIX)):
            upload_id = name[len(RECORD_PREFIX) :].removesuffix(".json")
            try:
                upload = self._load(upload_id)
            except (UploadNotFound, ValueError, TypeError):
                continue
            if upload.expires <= now and self._remove_expired(upload_id):
                removed += 1
        return removed
