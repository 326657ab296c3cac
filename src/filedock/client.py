"""The filedock Python client: files, JSON documents and resumable uploads over HTTP.

    from filedock.client import Client

    client = Client("http://127.0.0.1:5000", token="...")
    client.put("cat.jpg", "images/cat.jpg")
    client.get("images/cat.jpg", "cat-copy.jpg")
    client.json_patch("labels/classes.json", {"3": "bird"}, merge=True)

Every method speaks the native API (`/api/v1`); an error answer raises `FiledockError`
with the problem's `status`, `code` and `detail`. Transfers stream in pieces of a MiB, so
memory use does not grow with the size of a file. Uploads send a `Content-Digest` the server
checks, downloads are checked against the object's ETag (its SHA-256).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload
from urllib.parse import quote, urljoin, urlsplit

import requests

from . import __version__

#: progress(bytes_done, bytes_total or None), called as a transfer advances
Progress = Callable[[int, int | None], None]
Source = str | os.PathLike[str] | IO[bytes]

DEFAULT_URL = "http://127.0.0.1:5000"
CHUNK_BYTES = 1 << 20
TUS_CHUNK_BYTES = 8 << 20
TUS_VERSION = "1.0.0"
TUS_RETRIES = 3
JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
PROBLEM_TYPES = ("application/problem+json", JSON)


class FiledockError(Exception):
    """A request that failed: the server's problem (status, code, detail), or no answer at
    all (status None, code `connection-failed`, `bad-url`, `digest-mismatch` ...)."""

    def __init__(self, status: int | None, code: str, detail: str, title: str = "") -> None:
        super().__init__(status, code, detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title

    def __str__(self) -> str:
        if self.status is None:
            return f"{self.code}: {self.detail}"
        return f"{self.status} {self.code}: {self.detail}"


def problem_error(response: requests.Response) -> FiledockError:
    """The FiledockError of an error answer (problem+json, or whatever a proxy sent)."""
    status = response.status_code
    mimetype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    body: Any = None
    if mimetype in PROBLEM_TYPES:
        with contextlib.suppress(ValueError):
            body = response.json()
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        title = str(body.get("title") or response.reason or "")
        detail = str(body.get("detail") or title)
        return FiledockError(status, body["code"], detail, title)
    reason = response.reason or "error"
    return FiledockError(status, "http-error", f"the server answered {status} {reason}", reason)


def root_cause(exc: BaseException) -> str:
    """The innermost readable reason of a transport error ("Connection refused")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    last = str(exc)
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        if str(current):
            last = str(current)
        reason = getattr(current, "reason", None)
        inner = current.args[0] if current.args else None
        current = (
            reason
            if isinstance(reason, BaseException)
            else inner
            if isinstance(inner, BaseException)
            else current.__cause__ or current.__context__
        )
    return last


def remote_path(remote: str) -> str:
    """A stored path as it goes into a URL: each byte percent-encoded but the slashes
    (the server decodes the URL path exactly once)."""
    return quote(remote, safe="/")


def content_digest(sha256: bytes) -> str:
    """An RFC 9530 Content-Digest value."""
    return "sha-256=:" + base64.b64encode(sha256).decode("ascii") + ":"


def etag_sha256(etag: str | None) -> str | None:
    """The hex SHA-256 in a filedock ETag (`"<64 hex>"`), None for any other ETag."""
    if etag and len(etag) == 66 and etag[0] == etag[-1] == '"':
        value = etag[1:-1].lower()
        if all(c in "0123456789abcdef" for c in value):
            return value
    return None


def rfc3339(http_date: str | None) -> str | None:
    """An HTTP date as RFC 3339 UTC, the way the API writes `modified`."""
    if not http_date:
        return None
    try:
        return email.utils.parsedate_to_datetime(http_date).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None


class UploadBody:
    """A request body read from a stream: at most `size` bytes, hashed and reported to a
    progress callback as requests sends it (requests learns the length from `len`)."""

    def __init__(self, stream: IO[bytes], size: int | None, progress: Progress | None) -> None:
        self.stream = stream
        self.size = size
        self.progress = progress
        self.sha256 = hashlib.sha256()
        self.sent = 0
        if size is not None:
            self.len = size

    def read(self, n: int = -1) -> bytes:
        """The next piece of the body ("" at its end)."""
        n = CHUNK_BYTES if n is None or n < 0 else n
        if self.size is not None:
            n = min(n, self.size - self.sent)
            if n <= 0:
                return b""
        chunk = self.stream.read(n)
        if chunk:
            self.sha256.update(chunk)
            self.sent += len(chunk)
            if self.progress is not None:
                self.progress(self.sent, self.size)
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK_BYTES):
            yield chunk


def remaining_size(stream: IO[bytes]) -> int | None:
    """Bytes from the stream's position to its end, None if it cannot seek."""
    try:
        if not stream.seekable():
            return None
        start = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return end - start


def hash_stream(stream: IO[bytes], size: int) -> bytes:
    """SHA-256 of the next size bytes of a seekable stream, leaving its position as it was."""
    start = stream.tell()
    sha256 = hashlib.sha256()
    left = size
    while left > 0:
        chunk = stream.read(min(CHUNK_BYTES, left))
        if not chunk:
            break
        sha256.update(chunk)
        left -= len(chunk)
    stream.seek(start)
    return sha256.digest()


def default_state_file() -> Path:
    """Where upload_resumable remembers unfinished uploads: $XDG_CACHE_HOME/filedock."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "filedock" / "uploads.json"


class UploadState:
    """Unfinished resumable uploads, fingerprint -> upload URL, in a small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        """Every remembered upload (nothing if the file is missing or unreadable)."""
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}

    def get(self, fingerprint: str) -> str | None:
        """The upload URL remembered for this fingerprint."""
        return self.load().get(fingerprint)

    def set(self, fingerprint: str, url: str | None) -> None:
        """Remember (or, with None, forget) an upload; written by rename, never half."""
        data = self.load()
        if url is None:
            if data.pop(fingerprint, None) is None:
                return
        else:
            data[fingerprint] = url
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".uploads-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


class Client:
    """A filedock server at `url` (e.g. http://127.0.0.1:5000), with an optional token."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        timeout: float | tuple[float, float] = (10.0, 300.0),
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise FiledockError(None, "bad-url", f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"filedock/{__version__}"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def endpoint(self, area: str, remote: str = "") -> str:
        """The URL of /api/v1/<area>[/<remote>]."""
        url = f"{self.url}/api/v1/{area}"
        return f"{url}/{remote_path(remote)}" if remote else url

    @contextlib.contextmanager
    def transport_errors(self, what: str) -> Iterator[None]:
        """Turn requests' exceptions into FiledockError."""
        try:
            yield
        except requests.exceptions.Timeout as exc:
            raise FiledockError(None, "timeout", f"{what}: {root_cause(exc)}") from None
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            raise FiledockError(None, "bad-url", f"{what}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            detail = f"{what}: {root_cause(exc)}"
            raise FiledockError(None, "connection-failed", detail) from None

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send a request; FiledockError for a transport failure or an error status."""
        kwargs.setdefault("timeout", self.timeout)
        with self.transport_errors(f"cannot reach {self.url}"):
            response = self.session.request(method, url, **kwargs)
            if response.status_code >= 400:
                try:
                    raise problem_error(response)
                finally:
                    response.close()
        return response

    # -- files -------------------------------------------------------------------------------

    def put(
        self,
        local: Source,
        remote: str,
        overwrite: bool = True,
        progress: Progress | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Upload a file (a path, or a binary file object from its position) to remote;
        the stored object's metadata. overwrite=False fails with 412 if remote exists.

        A seekable source is hashed first and sent with a Content-Digest the server checks
        before it stores anything; a pipe is sent chunked and hashed on the way, and the
        SHA-256 the server reports is compared with it."""
        with contextlib.ExitStack() as stack:
            if isinstance(local, str | os.PathLike):
                stream: IO[bytes] = stack.enter_context(open(local, "rb"))
            else:
                stream = local
            size = remaining_size(stream)
            headers = {} if overwrite else {"If-None-Match": "*"}
            if content_type:
                headers["Content-Type"] = content_type
            if size is not None:
                headers["Content-Digest"] = content_digest(hash_stream(stream, size))
            body = UploadBody(stream, size, progress)
            data: Any = b"" if size == 0 else body
            response = self.request(
                "PUT", self.endpoint("files", remote), data=data, headers=headers
            )
            info: dict[str, Any] = response.json()
        if size == 0 and progress is not None:
            progress(0, 0)
        if info.get("sha256") != body.sha256.hexdigest():
            raise FiledockError(
                None,
                "digest-mismatch",
                f"the server stored {remote} with sha256 {info.get('sha256')}, "
                f"but {body.sha256.hexdigest()} was sent",
            )
        return info

    def get(
        self,
        remote: str,
        local: str | os.PathLike[str] | IO[bytes],
        progress: Progress | None = None,
        resume: bool = False,
    ) -> dict[str, Any]:
        """Download remote into a local path or a writable binary file object; what the
        answer said of the object (path, size, sha256, etag, content_type, modified).

        The bytes are checked against the object's ETag (its SHA-256). A local file is
        written only once the server has answered, so an error leaves it as it was. With
        resume=True and a local path that holds the start of the object (an interrupted
        download), only the rest is fetched (Range + If-Range); if the object changed in
        between, the whole of it."""
        if not isinstance(local, str | os.PathLike):
            if resume:
                raise ValueError("resume needs a local path, not a file object")
            return self.receive(remote, self.download(remote), local, progress)
        path = Path(local)
        if resume and path.is_file() and path.stat().st_size > 0:
            return self.resume_download(remote, path, progress)
        response = self.download(remote)
        with response, path.open("wb") as sink:
            return self.receive(remote, response, sink, progress)

    def download(self, remote: str, offset: int = 0, if_range: str = "") -> requests.Response:
        """The streaming answer to GET remote (from offset if its ETag is still if_range)."""
        headers = {"Range": f"bytes={offset}-", "If-Range": if_range} if offset else {}
        return self.request("GET", self.endpoint("files", remote), headers=headers, stream=True)

    def resume_download(self, remote: str, path: Path, progress: Progress | None) -> dict[str, Any]:
        """Continue a download whose first bytes are in the file at path."""
        head = self.request("HEAD", self.endpoint("files", remote))
        etag = head.headers.get("ETag", "")
        expected = etag_sha256(etag)
        size = int(head.headers.get("Content-Length", "-1"))
        have = path.stat().st_size
        if expected is not None and have <= size:
            with path.open("rb") as start:
                sha256 = hashlib.sha256()
                while chunk := start.read(CHUNK_BYTES):
                    sha256.update(chunk)
            if have == size and sha256.hexdigest() == expected:
                if progress is not None:
                    progress(size, size)
                return self.describe(remote, head, size, expected)
            if have < size:
                response = self.download(remote, have, etag)
                with response, path.open("r+b") as sink:
                    sink.seek(have)
                    try:
                        return self.receive(remote, response, sink, progress, have, sha256)
                    except FiledockError as exc:
                        if exc.code != "digest-mismatch":
                            raise
                # the local start was of other bytes: fetch the whole object again
        response = self.download(remote)
        with response, path.open("wb") as sink:
            return self.receive(remote, response, sink, progress)

    def receive(
        self,
        remote: str,
        response: requests.Response,
        sink: IO[bytes],
        progress: Progress | None,
        offset: int = 0,
        sha256: Any = None,
    ) -> dict[str, Any]:
        """Write a download's body into sink (at offset, after bytes hashed into sha256, when
        the answer is the 206 continuing them) and check it against the ETag."""
        with response, self.transport_errors(f"the download of {remote} broke off"):
            if response.status_code != 206:  # the whole object
                if offset:
                    sink.seek(0)
                    sink.truncate()
                offset, sha256 = 0, hashlib.sha256()
            elif not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise FiledockError(None, "bad-range", "the server sent another range than asked")
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            done = offset
            if progress is not None:
                progress(done, total)
            for chunk in response.iter_content(CHUNK_BYTES):
                sink.write(chunk)
                sha256.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            sink.flush()
        if total is not None and done != total:
            detail = f"the download of {remote} ended after {done} of {total} bytes"
            raise FiledockError(None, "connection-failed", detail)
        expected = etag_sha256(response.headers.get("ETag"))
        if expected is not None and expected != sha256.hexdigest():
            raise FiledockError(
                None,
                "digest-mismatch",
                f"the bytes received for {remote} have sha256 {sha256.hexdigest()}, "
                f"the server's ETag says {expected}",
            )
        return self.describe(remote, response, done, sha256.hexdigest())

    @staticmethod
    def describe(
        remote: str, response: requests.Response, size: int, sha256: str
    ) -> dict[str, Any]:
        """The metadata shape, from a download's headers."""
        return {
            "path": remote,
            "size": size,
            "sha256": sha256,
            "etag": response.headers.get("ETag", f'"{sha256}"'),
            "content_type": response.headers.get("Content-Type", ""),
            "modified": rfc3339(response.headers.get("Last-Modified")),
        }

    def iter_files(self, prefix: str = "", page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Metadata of every object whose path starts with prefix, in path order, following
        the listing's next_cursor from page to page."""
        cursor: str | None = None
        while True:
            params = {"prefix": prefix, "limit": str(page_size)}
            if cursor:
                params["cursor"] = cursor
            page = self.request("GET", self.endpoint("files"), params=params).json()
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    @overload
    def ls(self, prefix: str = "", long: Literal[False] = False) -> list[str]: ...
    @overload
    def ls(self, prefix: str = "", *, long: Literal[True]) -> list[dict[str, Any]]: ...
    @overload
    def ls(self, prefix: str, long: Literal[True]) -> list[dict[str, Any]]: ...

    def ls(self, prefix: str = "", long: bool = False) -> list[str] | list[dict[str, Any]]:
        """Paths (long=True: metadata) of every object whose path starts with prefix."""
        items = list(self.iter_files(prefix))
        return items if long else [item["path"] for item in items]

    def rm(self, remote: str, if_match: str | None = None) -> None:
        """Delete the object at remote."""
        headers = {"If-Match": if_match} if if_match else {}
        self.request("DELETE", self.endpoint("files", remote), headers=headers).close()

    def meta(self, remote: str) -> dict[str, Any]:
        """The metadata of the object at remote."""
        info: dict[str, Any] = self.request("GET", self.endpoint("meta", remote)).json()
        return info

    # -- JSON documents ----------------------------------------------------------------------

    def json_get(self, path: str, pointer: str | None = None) -> Any:
        """The JSON document at path, or the value at an RFC 6901 pointer in it."""
        params = {"pointer": pointer} if pointer else None
        return self.request("GET", self.endpoint("json", path), params=params).json()

    def json_put(self, path: str, value: Any, if_match: str | None = None) -> dict[str, Any]:
        """Store value as the JSON document at path; its metadata."""
        headers = {"Content-Type": JSON} | ({"If-Match": if_match} if if_match else {})
        body = json.dumps(value, ensure_ascii=False).encode("utf-8")
        response = self.request("PUT", self.endpoint("json", path), data=body, headers=headers)
        info: dict[str, Any] = response.json()
        return info

    def json_patch(
        self, path: str, patch: Any, merge: bool = False, if_match: str | None = None
    ) -> Any:
        """Apply a JSON Patch (RFC 6902, a list of operations) or, with merge=True, a merge
        patch (RFC 7396) to the document at path; the new document."""
        headers = {"Content-Type": MERGE_PATCH if merge else JSON_PATCH}
        if if_match:
            headers["If-Match"] = if_match
        body = json.dumps(patch, ensure_ascii=False).encode("utf-8")
        return self.request("PATCH", self.endpoint("json", path), data=body, headers=headers).json()

    # -- resumable uploads (tus 1.0.0) -------------------------------------------------------

    def upload_resumable(
        self,
        local: str | os.PathLike[str],
        remote: str,
        overwrite: bool = True,
        progress: Progress | None = None,
        chunk_bytes: int = TUS_CHUNK_BYTES,
        state_file: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """Upload a local file through the server's tus endpoint, chunk by chunk; the stored
        object's metadata.

        A broken connection is retried from the offset the server acknowledged. The upload's
        URL is kept in state_file (default $XDG_CACHE_HOME/filedock/uploads.json) until it
        completes, so a later call with the same file, remote and server carries on where an
        interrupted one stopped, even in another process or after a server restart."""
        path = Path(local)
        stat = path.stat()
        size = stat.st_size
        state = UploadState(Path(state_file) if state_file else default_state_file())
        fingerprint = hashlib.sha256(
            "\n".join(
                [self.url, remote, str(path.resolve()), str(size), str(stat.st_mtime_ns)]
            ).encode("utf-8", "surrogateescape")
        ).hexdigest()
        tus = {"Tus-Resumable": TUS_VERSION}
        upload_url = state.get(fingerprint)
        offset = self.upload_offset(upload_url, size) if upload_url else None
        if upload_url is None or offset is None:
            upload_url = self.create_upload(remote, size, overwrite)
            offset = 0
            state.set(fingerprint, upload_url)
        if progress is not None:
            progress(offset, size)
        failures = 0
        with path.open("rb") as source:
            while offset < size:
                source.seek(offset)
                chunk = source.read(chunk_bytes)
                checksum = base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")
                headers = tus | {
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Checksum": f"sha256 {checksum}",
                }
                try:
                    response = self.request("PATCH", upload_url, data=chunk, headers=headers)
                except FiledockError as exc:
                    # Retried from the offset the server has: a broken connection, a server
                    # error, an offset it disagrees with (409), a chunk still being written
                    # by an earlier request (423), a chunk damaged on the way (460).
                    if exc.status is not None and exc.status < 500:
                        if exc.status in (404, 410):
                            state.set(fingerprint, None)
                        if exc.code == "exists":
                            self.drop_upload(upload_url, state, fingerprint)
                        if exc.status not in (409, 423, 460) or exc.code == "exists":
                            raise
                    server_offset = self.upload_offset(upload_url, size)
                    if server_offset is None:
                        state.set(fingerprint, None)
                        raise
                    if exc.status == 409 and server_offset == offset:
                        self.drop_upload(upload_url, state, fingerprint)
                        raise  # the target refused the finished upload
                    failures += 1
                    if failures > TUS_RETRIES:
                        raise
                    if exc.status == 423:
                        time.sleep(0.2 * failures)
                    offset = server_offset
                    continue
                response.close()
                failures = 0
                offset = int(response.headers["Upload-Offset"])
                if progress is not None:
                    progress(offset, size)
        state.set(fingerprint, None)
        return self.meta(remote)

    def create_upload(self, remote: str, size: int, overwrite: bool) -> str:
        """POST a new tus upload for remote; its URL."""

        def b64(text: str) -> str:
            return base64.b64encode(text.encode("utf-8")).decode("ascii")

        metadata = f"path {b64(remote)},overwrite {b64('true' if overwrite else 'false')}"
        headers = {
            "Tus-Resumable": TUS_VERSION,
            "Upload-Length": str(size),
            "Upload-Metadata": metadata,
        }
        response = self.request("POST", self.endpoint("uploads"), headers=headers)
        response.close()
        return urljoin(self.endpoint("uploads"), response.headers["Location"])

    def drop_upload(self, upload_url: str, state: UploadState, fingerprint: str) -> None:
        """Terminate an upload that cannot complete, and forget it."""
        state.set(fingerprint, None)
        with contextlib.suppress(FiledockError):
            headers = {"Tus-Resumable": TUS_VERSION}
            self.request("DELETE", upload_url, headers=headers).close()

    def upload_offset(self, upload_url: str, size: int) -> int | None:
        """How far the server has an upload (None if it is gone or is of another length)."""
        try:
            head = self.request("HEAD", upload_url, headers={"Tus-Resumable": TUS_VERSION})
        except FiledockError as exc:
            if exc.status in (403, 404, 410):
                return None
            raise
        if head.headers.get("Upload-Length") != str(size):
            return None
        return int(head.headers["Upload-Offset"])
