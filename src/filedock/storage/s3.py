"""A store in an S3 bucket (AWS S3 or any S3-compatible store: SeaweedFS, Ceph, Garage, R2).

Each object is an S3 object at PREFIX/key holding exactly its bytes and its Content-Type, with
its SHA-256 in user metadata (`x-amz-meta-sha256`), so stat() is one HEAD. Objects put by other
tools have none: their SHA-256 is computed on first use and written back by a metadata-only
copy onto themselves, conditional on the object not having changed meanwhile.

- Writes stream: a body that fits in one part is one PUT; a larger one is a multipart upload
  of PART_BYTES parts, holding one part in memory at a time. Either way the object appears
  whole or not at all, and the precondition is the store's own conditional write
  (If-None-Match: * to create, If-Match on the current S3 ETag to replace one version).
- Records (filedock's own state) are small objects under PREFIX/.filedock/records/; their
  version is the S3 ETag, and compare-and-swap is a conditional PUT.
- A resumable upload is an S3 multipart upload at its target key plus a manifest object
  (parts and their ETags) and, for a chunk shorter than S3's 5 MiB minimum part, a small tail
  object, all in the bucket, so any instance continues it (as tusd's s3store keeps them).
- Every failure to reach the store, or a refusal of access, is StoreUnavailable (503), with
  the endpoint's answer but never a credential; botocore's timeouts and retries are bounded.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

from .base import (
    ABSENT,
    ANYTHING,
    CHUNK_BYTES,
    RESERVED_PREFIX,
    Absent,
    AlreadyExists,
    Anything,
    Conflict,
    Expect,
    InvalidKey,
    Key,
    Matches,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Record,
    StorageError,
    StoreUnavailable,
    TooLarge,
    Verify,
    check_key,
    check_record_name,
    check_upload_id,
    guess_type,
)

PART_BYTES = 8 << 20  # S3 wants parts of at least 5 MiB (but the last)
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20
MAX_ATTEMPTS = 2  # one retry: a dead store answers 503 within about 2 x (5 + 20) s at worst
HEAD_THREADS = 16  # concurrent HEADs when a listing meets objects it has not described yet
TRANSFER_THREADS = 16  # parts being uploaded, over all requests of a process
UPLOAD_PARTS_AHEAD = 1  # per upload: parts being sent while the next one is read
KNOWN_ENTRIES = 100_000
SHA_META = "sha256"
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

# Error codes that mean "the store is not usable by us": unreachable, no bucket, no access.
UNAVAILABLE_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "NoSuchBucket",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "403",
        "500",
        "502",
        "503",
        "504",
    }
)


def open_s3(url: str, endpoint: str = "") -> S3Storage:
    """The store at s3://BUCKET/PREFIX, with a boto3 client from the usual AWS sources.

    No request is made to the store here (finding credentials may ask the instance's metadata
    service): a store that is down still lets the server start (and answer 503 until it is
    back), while a setup without credentials is a ConfigError at once."""
    import boto3
    from botocore.config import Config

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not BUCKET_NAME.fullmatch(bucket):
        raise ValueError(f"not a bucket name: {bucket!r} (in {url})")
    prefix = prefix.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except InvalidKey as exc:
            raise ValueError(f"bad prefix in {url}: {exc}") from None
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=64,
        s3={"addressing_style": "path"} if endpoint else {},
        # Checksums only when an operation requires them: S3-compatible stores differ in
        # which of the newer flexible checksums they accept.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session()
        client = session.client(
            "s3",
            endpoint_url=endpoint or None,
            region_name=session.region_name or "us-east-1",
            config=config,
        )
        credentials = session.get_credentials()
    except (BotoCoreError, ValueError) as exc:  # an unknown AWS_PROFILE, a bad endpoint URL
        raise ValueError(f"cannot use {url}: {exc}") from None
    if credentials is None:  # a mistake of the setup, not a store that is down: say so now
        raise ValueError(
            f"cannot use {url}: no AWS credentials were found (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the shared credentials file)"
        )
    return S3Storage(client, bucket, prefix)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    if not code:
        code = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code


@contextmanager
def translated() -> Iterator[None]:
    """botocore's exceptions as storage exceptions (503 for an unusable store)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in ("NoSuchKey", "404", "NotFound", "NoSuchUpload"):
            raise ObjectNotFound("no such object") from None
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            raise PreconditionFailed("the object changed meanwhile") from None
        if code in ("NotImplemented", "501"):
            # A store without conditional writes (If-Match / If-None-Match on PUT): filedock
            # will not fall back to a check-then-write race that could lose an update.
            detail = (
                "the object store does not support a request filedock needs (conditional writes)"
            )
            raise StoreUnavailable(detail) from None
        if code in UNAVAILABLE_CODES or code.startswith("5"):
            if code == "NoSuchBucket":
                detail = "the store's bucket does not exist"
            elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                detail = f"the object store refused access ({code})"
            else:
                detail = f"the object store failed ({code})"
            raise StoreUnavailable(detail) from None
        raise StorageError(f"the object store answered {code}") from None
    except (NoCredentialsError, PartialCredentialsError):
        raise StoreUnavailable("no credentials for the object store were found") from None
    except ConnectTimeoutError:
        detail = f"the object store did not accept a connection within {CONNECT_TIMEOUT_SECONDS} s"
        raise StoreUnavailable(detail) from None
    except ReadTimeoutError:
        detail = f"the object store did not answer within {READ_TIMEOUT_SECONDS} s"
        raise StoreUnavailable(detail) from None
    except BotoCoreError as exc:
        # Connection refused, DNS, a dropped connection. botocore's message names the URL
        # (bucket and key): not repeated to clients.
        name = type(exc).__name__.removesuffix("Error")
        raise StoreUnavailable(f"the object store cannot be reached ({name})") from None


class S3Stream:
    """The body of a GET: read() and close(), with errors translated. It has no fileno(),
    so a server never tries sendfile(2) on it."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int = -1) -> bytes:
        """Up to size bytes (all that is left for -1)."""
        with translated():
            data: bytes = self._body.read(None if size is None or size < 0 else size)
            return data

    def readable(self) -> bool:
        """Always."""
        return True

    def close(self) -> None:
        """Release the connection."""
        with suppress(Exception):
            self._body.close()

    def __enter__(self) -> S3Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_Entries = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class _Head:
    info: ObjectInfo
    s3_etag: str


@dataclass
class _Manifest:
    """What a resumable upload holds: the key, its multipart upload, the parts uploaded in
    order (number, S3 ETag, size), and a tail object shorter than a part."""

    key: str
    mpu: str = ""
    parts: list[tuple[int, str, int]] | None = None
    tail: str = ""
    tail_size: int = 0

    @property
    def parts_bytes(self) -> int:
        return sum(size for _, _, size in self.parts or [])

    @property
    def size(self) -> int:
        return self.parts_bytes + self.tail_size

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "key": self.key,
                "mpu": self.mpu,
                "parts": self.parts or [],
                "tail": self.tail,
                "tail_size": self.tail_size,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _Manifest:
        raw = json.loads(data)
        parts = [(int(n), str(e), int(s)) for n, e, s in raw["parts"]]
        return cls(raw["key"], raw["mpu"], parts, raw["tail"], int(raw["tail_size"]))


class S3Storage:
    """Objects in a bucket under a prefix. Offers Records and UploadParts (no Staging, no
    Batching: every write is durable when S3 answers it). Locks are lease records."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._base = f"{self.prefix}/" if self.prefix else ""
        self._state = f"{self._base}{RESERVED_PREFIX}/"
        self._known: OrderedDict[tuple[str, str, int, str], ObjectInfo] = OrderedDict()
        self._known_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(HEAD_THREADS, thread_name_prefix="s3-head")
        self._transfers = ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="s3-part")
        self.requests = 0  # made by this process (the benchmark reports it)

    # -- plumbing ------------------------------------------------------------------------------

    def _full(self, key: str) -> str:
        return self._base + key

    def _call(self, operation: str, **kwargs: Any) -> Any:
        """One request to the store, its errors translated."""
        self.requests += 1
        with translated():
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)

    def _head(self, key: str) -> _Head:
        """HEAD the object at key, computing and keeping its SHA-256 if it has none."""
        full = self._full(key)
        try:
            answer = self._call("head_object", Key=full)
        except ObjectNotFound:
            raise ObjectNotFound(f"no object at {key}") from None
        info = self._described(key, answer)
        if info is None:
            info = self._hash_and_keep(key, answer)
        return _Head(info, answer["ETag"])

    def _described(self, key: str, answer: dict[str, Any]) -> ObjectInfo | None:
        sha256 = answer.get("Metadata", {}).get(SHA_META, "")
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return None
        return ObjectInfo(
            key=key,
            size=int(answer["ContentLength"]),
            content_type=answer.get("ContentType") or guess_type(key),
            sha256=sha256,
            modified=_seconds(answer["LastModified"]),
        )

    def _hash_and_keep(self, key: str, answer: dict[str, Any]) -> ObjectInfo:
        """An object another tool put: hash it (one streaming GET of that very version), and
        keep the hash in its metadata by a metadata-only copy onto itself, unless it changed."""
        full, s3_etag = self._full(key), answer["ETag"]
        digest = hashlib.sha256()
        got = self._call("get_object", Key=full, IfMatch=s3_etag)
        with S3Stream(got["Body"]) as body:
            while chunk := body.read(CHUNK_BYTES):
                digest.update(chunk)
        content_type = answer.get("ContentType") or guess_type(key)
        with suppress(PreconditionFailed, StorageError):  # changed meanwhile: not ours to label
            self._label(full, s3_etag, digest.hexdigest(), content_type)
        return ObjectInfo(
            key=key,
            size=int(answer["ContentLength"]),
            content_type=content_type,
            sha256=digest.hexdigest(),
            modified=_seconds(answer["LastModified"]),
        )

    def _label(self, full: str, s3_etag: str, sha256: str, content_type: str) -> None:
        """Set the SHA-256 and type of exactly that version (a copy onto itself)."""
        self._call(
            "copy_object",
            Key=full,
            CopySource={"Bucket": self.bucket, "Key": full},
            CopySourceIfMatch=s3_etag,
            MetadataDirective="REPLACE",
            Metadata={SHA_META: sha256},
            ContentType=content_type,
        )

    def _check_tree(self, key: str, expect: Expect) -> None:
        """409 as on a disk: no object where a parent folder of key would be, and no objects
        under key/ (HEADs and a one-key listing, made together). A write that must replace
        an object (Matches) has its place in the tree already."""
        if isinstance(expect, Matches):
            return
        parts = key.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]

        def exists(parent: str) -> bool:
            try:
                self._call("head_object", Key=self._full(parent))
            except ObjectNotFound:
                return False
            return True

        def has_children() -> bool:
            answer = self._call("list_objects_v2", Prefix=self._full(key) + "/", MaxKeys=1)
            return bool(answer.get("KeyCount", 0))

        children = self._pool.submit(has_children)
        if any(self._pool.map(exists, parents)):
            children.cancel()
            raise Conflict(f"a parent of {key} is a file")
        if children.result():
            raise Conflict(f"{key} is a folder that holds objects")

    def _conditions(self, key: str, expect: Expect) -> dict[str, str]:
        """The conditional-write arguments that make the write happen only if expect holds."""
        if isinstance(expect, Absent):
            return {"IfNoneMatch": "*"}
        if isinstance(expect, Matches):
            try:
                current = self._head(key)
            except ObjectNotFound:
                raise PreconditionFailed(f"no object at {key} to match") from None
            if current.info.sha256 != expect.version:
                raise PreconditionFailed(f"the object at {key} has changed")
            return {"IfMatch": current.s3_etag}
        return {}

    def _conditional(
        self, key: str, expect: Expect, write: Callable[[dict[str, str]], Any]
    ) -> tuple[Any, bool]:
        """Run write() with the store's conditions for expect; whether it created the object.
        Anything tries create-only first, so created-or-replaced is exact under races."""
        if isinstance(expect, Anything):
            try:
                return write({"IfNoneMatch": "*"}), True
            except PreconditionFailed:
                return write({}), False
        try:
            return write(self._conditions(key, expect)), isinstance(expect, Absent)
        except PreconditionFailed:
            if isinstance(expect, Absent):
                raise AlreadyExists(f"an object exists at {key}") from None
            raise PreconditionFailed(f"the object at {key} has changed") from None

    def _written(
        self, key: str, sha256: str, size: int, content_type: str, created: bool
    ) -> ObjectInfo:
        """What was written (a HEAD for its time, which only the store knows)."""
        head = self._head(key)
        if head.info.sha256 != sha256:  # another writer came right after us: describe ours
            modified = datetime.now(UTC).replace(microsecond=0)
            return ObjectInfo(key, size, content_type, sha256, modified, created=created)
        return replace(head.info, created=created)

    # -- the core --------------------------------------------------------------------------

    def stat(self, key: Key) -> ObjectInfo:
        """Describe the object at key: one HEAD."""
        return self._head(key).info

    def open(self, key: Key, start: int = 0, end: int | None = None) -> BinaryIO:
        """A stream of bytes [start, end): a GET with a Range when it is not the whole."""
        if end is not None and end <= start:
            self.stat(key)
            return io.BytesIO(b"")
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            got = self._call("get_object", Key=self._full(key), **extra)
        except ObjectNotFound:
            raise ObjectNotFound(f"no object at {key}") from None
        except StorageError as exc:
            if "InvalidRange" in str(exc):
                return io.BytesIO(b"")
            raise
        return S3Stream(got["Body"])  # type: ignore[return-value]

    def put(
        self,
        key: Key,
        data: BinaryIO,
        content_type: str,
        expect: Expect = ANYTHING,
        max_bytes: int | None = None,
        verify: Verify | None = None,
    ) -> ObjectInfo:
        """One PUT if the body fits in a part, else a multipart upload; committed by the
        store's conditional write."""
        content_type = content_type or guess_type(key)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        while len(buffer) <= PART_BYTES:
            chunk = data.read(CHUNK_BYTES)
            if not chunk:
                break
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise TooLarge(f"the body is larger than {max_bytes} bytes")
            digest.update(chunk)
            buffer += chunk
        if len(buffer) <= PART_BYTES:
            sha256 = digest.hexdigest()
            if verify is not None:
                verify(sha256)
            self._check_tree(key, expect)
            body = bytes(buffer)
            del buffer

            def put_once(conditions: dict[str, str]) -> Any:
                return self._call(
                    "put_object",
                    Key=self._full(key),
                    Body=body,
                    ContentType=content_type,
                    Metadata={SHA_META: sha256},
                    **conditions,
                )

            _, created = self._conditional(key, expect, put_once)
            return self._written(key, sha256, size, content_type, created)
        return self._put_multipart(
            key, data, content_type, expect, max_bytes, verify, digest, buffer, size
        )

    def _put_multipart(
        self,
        key: Key,
        data: BinaryIO,
        content_type: str,
        expect: Expect,
        max_bytes: int | None,
        verify: Verify | None,
        digest: Any,
        buffer: bytearray,
        size: int,
    ) -> ObjectInfo:
        full = self._full(key)
        mpu = self._call("create_multipart_upload", Key=full, ContentType=content_type)
        upload_id = mpu["UploadId"]
        parts: list[dict[str, Any]] = []
        flying: deque[Future[dict[str, Any]]] = deque()
        try:
            eof = False
            while not eof or buffer:
                while not eof and len(buffer) < PART_BYTES:
                    chunk = data.read(CHUNK_BYTES)
                    if not chunk:
                        eof = True
                        break
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(f"the body is larger than {max_bytes} bytes")
                    digest.update(chunk)
                    buffer += chunk
                if not buffer:
                    break
                body = bytes(memoryview(buffer)[:PART_BYTES])
                del buffer[:PART_BYTES]
                number = len(parts) + len(flying) + 1
                # sent while the next part is read from the client
                flying.append(
                    self._transfers.submit(self._send_part, full, upload_id, number, body)
                )
                del body
                while len(flying) > UPLOAD_PARTS_AHEAD or (flying and flying[0].done()):
                    parts.append(flying.popleft().result())
            while flying:
                parts.append(flying.popleft().result())
            sha256 = digest.hexdigest()
            if verify is not None:
                verify(sha256)
            self._check_tree(key, expect)
            created, s3_etag = self._complete(key, upload_id, parts, expect)
        except BaseException:
            for future in flying:
                future.cancel()
            wait(flying)
            with suppress(Exception):
                self._call("abort_multipart_upload", Key=full, UploadId=upload_id)
            raise
        return self._finish_multipart(key, s3_etag, sha256, size, content_type, created)

    def _send_part(self, full: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        answer = self._call(
            "upload_part", Key=full, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _complete(
        self, key: str, upload_id: str, parts: list[dict[str, Any]], expect: Expect
    ) -> tuple[bool, str]:
        """Complete a multipart upload at key if expect holds (a refused completion leaves
        the upload and its parts as they were); whether it created the object, its S3 ETag."""

        def complete(conditions: dict[str, str]) -> Any:
            return self._call(
                "complete_multipart_upload",
                Key=self._full(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **conditions,
            )

        answer, created = self._conditional(key, expect, complete)
        return created, str(answer["ETag"])

    def _finish_multipart(
        self, key: str, s3_etag: str, sha256: str, size: int, content_type: str, created: bool
    ) -> ObjectInfo:
        """Label the completed object with its SHA-256 (metadata is fixed when a multipart
        upload starts, before the hash is known). Until then a reader hashes it itself."""
        with suppress(PreconditionFailed):  # replaced meanwhile: the newer one is labelled
            self._label(self._full(key), s3_etag, sha256, content_type)
        return self._written(key, sha256, size, content_type, created)

    def delete(self, key: Key, expect: Expect = ANYTHING) -> None:
        """Remove the object at key (a conditional DELETE for Matches)."""
        conditions = self._conditions(key, expect) if isinstance(expect, Matches) else {}
        if not conditions:  # 404 for no object, as on a disk (S3 deletes nothing silently)
            try:
                self._call("head_object", Key=self._full(key))
            except ObjectNotFound:
                raise ObjectNotFound(f"no object at {key}") from None
        try:
            self._call("delete_object", Key=self._full(key), **conditions)
        except PreconditionFailed:
            raise PreconditionFailed(f"the object at {key} has changed") from None
        except ObjectNotFound:
            raise ObjectNotFound(f"no object at {key}") from None

    def list(self, prefix: str = "", after: str = "") -> Iterator[ObjectInfo]:
        """Objects under prefix after `after`, in key (UTF-8 byte) order, read a folder level
        at a time; objects not described before in this process are HEADed, several at once.

        Some S3-compatible stores (SeaweedFS) list a folder before a sibling file whose name
        extends the folder's with a character below '/' ("a/b" before "a-c"); walking the
        levels with a delimiter and merging each folder in at its place in key order gives
        the same order, and so the same cursors, on every store."""
        batch: list[tuple[str, dict[str, Any]]] = []
        for key, item in self._walk(prefix, after):
            batch.append((key, item))
            if len(batch) == 64:
                yield from self._describe_many(batch)
                batch = []
        yield from self._describe_many(batch)

    def _walk(self, level: str, after: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, listing entry) of every object under the level prefix after `after`."""
        pending: list[str] = []  # folders (as "name/" keys) waiting for their place

        def flush(below: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
            pending.sort()
            while pending and (below is None or pending[0] < below):
                folder = pending.pop(0)
                if after and after >= folder and not after.startswith(folder):
                    continue  # every key under it is at or before `after`
                yield from self._walk(folder, after if after.startswith(folder) else "")

        for name, item in self._level(level, after):
            yield from flush(name)
            if item is None:
                pending.append(name + "/")
            elif not after or name > after:
                yield name, item
        yield from flush(None)

    def _level(self, level: str, after: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """Files (with their entry) and folders (None) directly under level, as keys
        relative to the store, in the order the store lists them."""
        args: dict[str, Any] = {"Prefix": self._full(level), "Delimiter": "/", "MaxKeys": 1000}
        base = level.rsplit("/", 1)[0] + "/" if "/" in level else ""
        if after.startswith(base) and after > level:
            segment = after[len(base) :].split("/", 1)[0]
            low = next((i for i, c in enumerate(segment) if c < "/"), None)
            if low is not None:  # a folder named segment[:low] sorts after `after`
                segment = segment[: max(low - 1, 0)]
            elif "/" in after[len(base) :]:  # `after` is inside the folder `segment`
                segment = segment[:-1]
            if segment:
                args["StartAfter"] = self._full(base + segment)
        while True:
            page = self._call("list_objects_v2", **args)
            entries: list[tuple[str, dict[str, Any] | None]] = []
            for item in page.get("Contents", []):
                key = item["Key"][len(self._base) :]
                if not key.endswith("/") and not key.startswith(RESERVED_PREFIX):
                    entries.append((key, item))
            for common in page.get("CommonPrefixes", []):
                key = common["Prefix"][len(self._base) : -1]  # one "/": "a//" holds "a//x"
                if key and not key.startswith(RESERVED_PREFIX):
                    entries.append((key, None))
            entries.sort(key=lambda entry: entry[0])
            yield from entries
            if not page.get("IsTruncated"):
                return
            args.pop("StartAfter", None)
            args["ContinuationToken"] = page["NextContinuationToken"]

    def _describe_many(self, entries: _Entries) -> Iterator[ObjectInfo]:
        def describe(entry: tuple[str, dict[str, Any]]) -> ObjectInfo | None:
            key, item = entry
            stamp = (key, item["ETag"], int(item["Size"]), str(item["LastModified"]))
            with self._known_lock:
                known = self._known.get(stamp)
            if known is not None:
                return known
            try:
                info = self._head(key).info
            except ObjectNotFound:
                return None  # deleted since the listing
            with self._known_lock:
                self._known[stamp] = info
                while len(self._known) > KNOWN_ENTRIES:
                    self._known.popitem(last=False)
            return info

        for info in self._pool.map(describe, entries):
            if info is not None:
                yield info

    def check(self) -> None:
        """Write, read back and remove a probe record (readiness); and make sure the store
        enforces conditional writes, on which every compare-and-swap here rests."""
        name = f"probe/{uuid.uuid4().hex}"
        self.put_record(name, b"ok", ABSENT)
        try:
            record = self.get_record(name)
            if record is None or record.value != b"ok":
                raise StoreUnavailable("the object store did not read back what was written")
            try:
                self.put_record(name, b"again", ABSENT)
            except AlreadyExists:
                pass
            else:
                raise StoreUnavailable(
                    "the object store ignores conditional writes (If-None-Match), "
                    "which filedock needs so that no update is lost"
                )
        finally:
            self.delete_record(name)

    # -- Records ---------------------------------------------------------------------------

    def _record_key(self, name: str) -> str:
        return f"{self._state}records/{check_record_name(name)}"

    def get_record(self, name: str) -> Record | None:
        """The record called name, or None."""
        try:
            got = self._call("get_object", Key=self._record_key(name))
        except ObjectNotFound:
            return None
        with S3Stream(got["Body"]) as body:
            return Record(body.read(), got["ETag"])

    def put_record(self, name: str, value: bytes, expect: Expect = ANYTHING) -> Record:
        """A conditional PUT of the record."""
        conditions: dict[str, str] = {}
        if isinstance(expect, Absent):
            conditions = {"IfNoneMatch": "*"}
        elif isinstance(expect, Matches):
            conditions = {"IfMatch": expect.version}
        try:
            answer = self._call("put_object", Key=self._record_key(name), Body=value, **conditions)
        except (PreconditionFailed, ObjectNotFound):
            if isinstance(expect, Absent):
                raise AlreadyExists(f"the record {name} exists") from None
            raise PreconditionFailed(f"the record {name} has changed") from None
        return Record(bytes(value), answer["ETag"])

    def delete_record(self, name: str, expect: Expect = ANYTHING) -> None:
        """Remove a record (conditionally for Matches); nothing happens if there is none."""
        conditions = {"IfMatch": expect.version} if isinstance(expect, Matches) else {}
        try:
            self._call("delete_object", Key=self._record_key(name), **conditions)
        except ObjectNotFound:
            return
        except PreconditionFailed:
            if self.get_record(name) is None:
                return
            raise PreconditionFailed(f"the record {name} has changed") from None

    def list_records(self, prefix: str) -> Iterator[str]:
        """Names of the records starting with prefix, in order."""
        base = f"{self._state}records/"
        args: dict[str, Any] = {"Prefix": base + prefix}
        while True:
            page = self._call("list_objects_v2", **args)
            for item in page.get("Contents", []):
                yield item["Key"][len(base) :]
            if not page.get("IsTruncated"):
                return
            args["ContinuationToken"] = page["NextContinuationToken"]

    # -- UploadParts ---------------------------------------------------------------------------

    def _upload_key(self, upload_id: str, suffix: str) -> str:
        return f"{self._state}uploads/{check_upload_id(upload_id)}{suffix}"

    def _manifest(self, upload_id: str) -> tuple[_Manifest, str]:
        try:
            got = self._call("get_object", Key=self._upload_key(upload_id, ".json"))
        except ObjectNotFound:
            raise ObjectNotFound(f"no upload data {upload_id}") from None
        with S3Stream(got["Body"]) as body:
            return _Manifest.from_json(body.read()), got["ETag"]

    def _save_manifest(self, upload_id: str, manifest: _Manifest, version: str) -> str:
        """The commit point of a chunk: parts and tail are only counted once this is saved
        (compare-and-swap, so a writer whose lease ran out cannot overwrite a newer one).
        The manifest's new version."""
        conditions = {"IfMatch": version} if version else {"IfNoneMatch": "*"}
        try:
            answer = self._call(
                "put_object",
                Key=self._upload_key(upload_id, ".json"),
                Body=manifest.to_json(),
                **conditions,
            )
        except PreconditionFailed:
            raise Conflict(f"upload {upload_id} was changed by another writer") from None
        return str(answer["ETag"])

    def _read_tail(self, manifest: _Manifest) -> bytes:
        if not manifest.tail:
            return b""
        got = self._call("get_object", Key=manifest.tail)
        with S3Stream(got["Body"]) as body:
            data = body.read()
        if len(data) != manifest.tail_size:
            raise StorageError("an upload's tail object is not the size recorded")
        return data

    def create_upload(self, upload_id: str, key: Key) -> None:
        """Save an empty manifest; the multipart upload starts with the first full part."""
        try:
            self._save_manifest(upload_id, _Manifest(self._full(key), parts=[]), "")
        except Conflict:
            raise AlreadyExists(f"upload {upload_id} exists") from None

    def upload_size(self, upload_id: str) -> int:
        """Bytes in the saved parts and tail."""
        return self._manifest(upload_id)[0].size

    def write_upload(
        self,
        upload_id: str,
        offset: int,
        data: BinaryIO,
        total: int,
        verify: Callable[[], None] | None = None,
    ) -> int:
        """Upload each full part as it fills, keep what is left (under a part) as the new
        tail object, then save the manifest: nothing of this call counts until then."""
        manifest, version = self._manifest(upload_id)
        parts = list(manifest.parts or [])
        if offset > manifest.size:
            raise Conflict(f"the upload holds {manifest.size} bytes, not {offset}")
        buffer = bytearray(self._read_tail(manifest))
        kept = manifest.parts_bytes
        if offset >= kept:  # bytes past the acknowledged offset are dropped
            del buffer[offset - kept :]
        else:  # back into the parts: only to a part's boundary (S3 cannot cut one)
            buffer = bytearray()
            while parts and kept > offset:
                kept -= parts.pop()[2]
            if kept != offset:
                raise Conflict(f"upload {upload_id} cannot go back to {offset} within a part")
        position = offset
        mpu = manifest.mpu
        while True:
            chunk = data.read(CHUNK_BYTES)
            if not chunk:
                break
            if position + len(chunk) > total:
                raise TooLarge(f"the data would pass {total} bytes")
            position += len(chunk)
            buffer += chunk
            while len(buffer) >= PART_BYTES:
                if not mpu:
                    mpu, version = self._start_multipart(upload_id, manifest, version)
                parts.append(self._upload_part(manifest.key, mpu, len(parts) + 1, buffer))
        if verify is not None:
            verify()
        if position == total and buffer and mpu:  # the last part may be short
            parts.append(self._upload_part(manifest.key, mpu, len(parts) + 1, buffer))
        tail = ""
        if buffer:
            tail = self._upload_key(upload_id, f".tail.{uuid.uuid4().hex}")
            self._call("put_object", Key=tail, Body=bytes(buffer))
        new = _Manifest(manifest.key, mpu, parts, tail, len(buffer))
        try:
            self._save_manifest(upload_id, new, version)
        except BaseException:
            if tail:
                with suppress(Exception):
                    self._call("delete_object", Key=tail)
            raise
        if manifest.tail and manifest.tail != tail:
            with suppress(Exception):
                self._call("delete_object", Key=manifest.tail)
        return position

    def _start_multipart(
        self, upload_id: str, manifest: _Manifest, version: str
    ) -> tuple[str, str]:
        """Start the upload's multipart upload and name it in the manifest at once (what it
        holds is unchanged), so that it is aborted with the upload even if this writer
        stops before its chunk is saved; (multipart upload id, manifest version)."""
        answer = self._call("create_multipart_upload", Key=manifest.key)
        mpu = str(answer["UploadId"])
        try:
            version = self._save_manifest(upload_id, replace(manifest, mpu=mpu), version)
        except BaseException:
            with suppress(Exception):
                self._call("abort_multipart_upload", Key=manifest.key, UploadId=mpu)
            raise
        return mpu, version

    def _upload_part(
        self, full: str, mpu: str, number: int, buffer: bytearray
    ) -> tuple[int, str, int]:
        """Upload up to PART_BYTES from the front of buffer as part number; remove them."""
        body = bytes(memoryview(buffer)[:PART_BYTES])
        del buffer[: len(body)]
        answer = self._call("upload_part", Key=full, UploadId=mpu, PartNumber=number, Body=body)
        return (number, str(answer["ETag"]), len(body))

    def complete_upload(
        self, upload_id: str, key: Key, content_type: str, sha256: str, expect: Expect
    ) -> ObjectInfo:
        """A small upload becomes one conditional PUT; a large one completes its multipart
        upload conditionally. The manifest and tail go once the object is there."""
        manifest, _ = self._manifest(upload_id)
        if manifest.key != self._full(key):
            raise ValueError(f"upload {upload_id} was started for another key")
        content_type = content_type or guess_type(key)
        self._check_tree(key, expect)
        if not manifest.mpu:
            body = self._read_tail(manifest)

            def put_once(conditions: dict[str, str]) -> Any:
                return self._call(
                    "put_object",
                    Key=manifest.key,
                    Body=body,
                    ContentType=content_type,
                    Metadata={SHA_META: sha256},
                    **conditions,
                )

            _, created = self._conditional(key, expect, put_once)
            info = self._written(key, sha256, len(body), content_type, created)
        else:
            parts = list(manifest.parts or [])
            if manifest.tail_size:
                tail = bytearray(self._read_tail(manifest))
                parts.append(self._upload_part(manifest.key, manifest.mpu, len(parts) + 1, tail))
            listed = [{"PartNumber": n, "ETag": e} for n, e, _ in parts]
            created, s3_etag = self._complete(key, manifest.mpu, listed, expect)
            size = sum(p[2] for p in parts)
            info = self._finish_multipart(key, s3_etag, sha256, size, content_type, created)
        self._drop_upload_objects(upload_id, manifest)
        return info

    def _drop_upload_objects(self, upload_id: str, manifest: _Manifest) -> None:
        """The manifest and every tail object of the upload: the saved one, and any a writer
        stored but did not get to save in the manifest (it died, on whatever host)."""
        tails = {manifest.tail} if manifest.tail else set()
        prefix = self._upload_key(upload_id, ".tail.")
        args: dict[str, Any] = {"Prefix": prefix}
        while True:
            page = self._call("list_objects_v2", **args)
            tails.update(item["Key"] for item in page.get("Contents", []))
            if not page.get("IsTruncated"):
                break
            args["ContinuationToken"] = page["NextContinuationToken"]
        for tail in sorted(tails):
            with suppress(ObjectNotFound):
                self._call("delete_object", Key=tail)
        with suppress(ObjectNotFound):
            self._call("delete_object", Key=self._upload_key(upload_id, ".json"))

    def delete_upload(self, upload_id: str) -> None:
        """Abort the multipart upload and remove the manifest and tail."""
        try:
            manifest, _ = self._manifest(upload_id)
        except ObjectNotFound:
            return
        if manifest.mpu:
            with suppress(ObjectNotFound):
                self._call("abort_multipart_upload", Key=manifest.key, UploadId=manifest.mpu)
        self._drop_upload_objects(upload_id, manifest)


def _seconds(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)
