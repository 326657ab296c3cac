"""Files API v1: list, upload, download, delete and describe stored objects (API.md section 4)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, BinaryIO

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.http import http_date, parse_options_header
from werkzeug.wsgi import wrap_file

from .. import access, mediatypes
from ..bodies import body_reader
from ..conditional import (
    RangeNotSatisfiable,
    ReadPlan,
    plan_read,
    write_conditions,
)
from ..context import get_settings, get_storage
from ..digests import DigestCheck, content_digest
from ..downloads import content_disposition, must_download
from ..errors import ApiError, BadRequest, lookup
from ..listing import list_page
from ..multipart import StagedForm, client_basename, stage_form
from ..openapi import PATH_PARAMETER, header, header_parameter, problem_responses
from ..storage import (
    ABSENT,
    ANYTHING,
    Absent,
    AlreadyExists,
    Expect,
    InvalidKey,
    Key,
    Matches,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Storage,
    StorageError,
    TooLarge,
    check_key,
    check_segment,
    durable_batch,
)
from ..storage.base import MAX_KEY_BYTES
from .shapes import metadata_json

bp = Blueprint("files", __name__, url_prefix="/api/v1")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
SEND_BLOCK_BYTES = 1 << 20
FILE_FIELD = "file"


# -- shaping -------------------------------------------------------------------------------------


def metadata_response(info: ObjectInfo, status: int = 200) -> Response:
    """A metadata body with the object's ETag and Location."""
    response = jsonify(metadata_json(info))
    response.status_code = status
    response.headers["ETag"] = info.etag
    response.headers["Location"] = url_for("files.get_file", key=info.key)
    return response


def encode_cursor(key: str) -> str:
    """An opaque cursor that continues a listing after key."""
    raw = key.encode("utf-8", "surrogateescape")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The key a cursor continues after; 400 if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest("the cursor is not one this server handed out") from None


def check_prefix(prefix: str) -> str:
    """A listing prefix must be able to start a valid path (its last segment may be partial)."""
    if not prefix:
        return prefix
    size = len(prefix.encode("utf-8", "replace"))
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"the prefix is {size} bytes long; no path is over {MAX_KEY_BYTES}")
    *folders, last = prefix.split("/")
    for segment in folders:
        check_segment(segment)
    if last not in ("", ".", ".."):  # a partial "." or ".." may still begin ".x" or "..y"
        check_segment(last)
    return prefix


def parse_limit(value: str | None) -> int:
    """The page size: 1 to 1000, 100 by default."""
    if value is None:
        return DEFAULT_LIMIT
    # ASCII digits only: str.isdigit() also accepts "²" (int() then fails) and "١"; and few of
    # them: int() refuses thousands of digits (leading zeros too) with a ValueError.
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > 10
        or not 1 <= int(value) <= MAX_LIMIT
    ):
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, not {value!r}")
    return int(value)


def request_content_type(key: Key) -> str:
    """The media type to store the request's body at key with (API.md section 3)."""
    return mediatypes.choose_type(key, request.headers.get("Content-Type"))


def refuse_declared_size(limit: int) -> None:
    """413 from Content-Length, before a byte of the body is read."""
    length = request.content_length
    if length is not None and length > limit:
        raise TooLarge(f"the body is {length} bytes; the limit is {limit}")


# -- list and describe ---------------------------------------------------------------------------


@bp.get("/files")
@access.deferred("read")
def list_files() -> Response:
    """Objects whose path starts with prefix, in path order, a page at a time."""
    prefix = check_prefix(request.args.get("prefix", ""))
    limit = parse_limit(request.args.get("limit"))
    cursor = request.args.get("cursor")
    after = decode_cursor(cursor) if cursor else ""
    # only what the caller may read: the walk narrowed to its token's prefix, each key checked
    page = list_page(
        get_storage(),
        prefix,
        after,
        limit,
        access.readable_prefix(),
        lambda key: access.allowed("read", key),
    )
    next_cursor = encode_cursor(page.items[-1].key) if page.more else None
    return jsonify({"items": [metadata_json(i) for i in page.items], "next_cursor": next_cursor})


@bp.get("/meta/<anypath:key>")
def get_meta(key: Key) -> Response:
    """The metadata of one object."""
    info = get_storage().stat(key)
    response = jsonify(metadata_json(info))
    response.headers["ETag"] = info.etag
    return response


# -- download ------------------------------------------------------------------------------------


def read_plan(info: ObjectInfo) -> ReadPlan:
    """What the request's conditions and Range ask of this object."""
    headers = request.headers
    try:
        return plan_read(
            info,
            if_match=headers.get("If-Match"),
            if_none_match=headers.get("If-None-Match"),
            if_modified_since=headers.get("If-Modified-Since"),
            if_unmodified_since=headers.get("If-Unmodified-Since"),
            range_header=headers.get("Range"),
            if_range=headers.get("If-Range"),
        )
    except RangeNotSatisfiable as exc:
        raise ApiError(
            416,
            "range-not-satisfiable",
            str(exc),
            headers={"Content-Range": f"bytes */{exc.size}", "Accept-Ranges": "bytes"},
        ) from None


def open_stable(
    storage: Storage, key: Key, with_body: bool
) -> tuple[ObjectInfo, ReadPlan, BinaryIO | None]:
    """Stat, decide, and open the object, making sure the file opened is the one described
    (a writer may replace it in between: then look again)."""
    for _ in range(3):
        info = storage.stat(key)
        plan = read_plan(info)
        if plan.status == 304 or not with_body:
            return info, plan, None
        stream = storage.open(key, plan.start, plan.end)
        after = storage.stat(key)
        if (after.sha256, after.size) == (info.sha256, info.size):
            return info, plan, stream
        stream.close()
    raise ApiError(409, "conflict", f"the object at {key} kept changing while it was opened")


def download_headers(info: ObjectInfo, plan: ReadPlan) -> dict[str, str]:
    """Validators, caching and the headers that keep uploaded content out of our origin."""
    headers = {
        "ETag": info.etag,
        "Last-Modified": http_date(info.modified),
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    if plan.status == 304:
        return headers
    headers["Content-Type"] = info.content_type or mediatypes.OCTET_STREAM
    wanted = request.args.get("download", "") in ("1", "true")
    if wanted or must_download([info.content_type, mediatypes.guess_type(info.key)]):
        headers["Content-Disposition"] = content_disposition(info.key.rsplit("/", 1)[-1])
    if plan.status == 206:
        headers["Content-Range"] = plan.range.content_range
    else:
        headers["Content-Digest"] = content_digest(info.sha256)
    headers["Content-Length"] = str(plan.range.length)
    return headers


@bp.route("/files/<anypath:key>", methods=["GET", "HEAD"])
def get_file(key: Key) -> Response:
    """The object's bytes (or a range of them), sent with sendfile(2) where the store allows."""
    with_body = request.method == "GET"
    info, plan, stream = open_stable(get_storage(), key, with_body)
    headers = download_headers(info, plan)
    if stream is None:
        return Response(status=plan.status, headers=headers)
    # The WSGI server's file wrapper, returned as it is, lets gunicorn call sendfile(2)
    # from the file's current offset for Content-Length bytes.
    body = wrap_file(request.environ, stream, SEND_BLOCK_BYTES)
    return Response(body, status=plan.status, headers=headers, direct_passthrough=True)


# -- upload --------------------------------------------------------------------------------------


def request_conditions(storage: Storage, key: Key) -> Expect:
    """If-Match / If-None-Match of this request as the store's precondition."""
    if_match = request.headers.get("If-Match")
    if_none_match = request.headers.get("If-None-Match")
    current = None
    if if_match is not None or (if_none_match is not None and "*" not in if_none_match):
        try:
            current = storage.stat(key)
        except ObjectNotFound:
            current = None
    return write_conditions(current, if_match, if_none_match)


@bp.put("/files/<anypath:key>")
def put_file(key: Key) -> Response:
    """Store the raw body at key: 201 created, 200 replaced."""
    settings, storage = get_settings(), get_storage()
    refuse_declared_size(settings.max_upload_bytes)
    digest = DigestCheck.from_header(request.headers.get("Content-Digest"))
    expect = request_conditions(storage, key)
    body = digest.wrap(body_reader(request.stream, request.content_length))
    info = storage.put(
        key, body, request_content_type(key), expect, settings.max_upload_bytes, digest.verify
    )
    return metadata_response(info, 201 if info.created else 200)


@bp.delete("/files/<anypath:key>")
def delete_file(key: Key) -> Response:
    """Remove the object at key: 204."""
    storage = get_storage()
    expect = request_conditions(storage, key)
    if isinstance(expect, Absent):  # If-None-Match: * on DELETE holds only for no object
        storage.stat(key)
        raise PreconditionFailed(f"an object exists at {key}")
    try:
        storage.delete(key, expect)
    except ObjectNotFound:
        if isinstance(expect, Matches):  # RFC 9110 13.1.1: If-Match fails on no object
            raise PreconditionFailed(f"no object at {key} to match If-Match") from None
        raise
    return Response(status=204)


def form_options(form: StagedForm) -> tuple[str, bool]:
    """The `dir` and `overwrite` fields of an upload form."""
    folder = form.fields.get("dir", "").rstrip("/")
    if folder:
        check_key(folder)
    overwrite = form.fields.get("overwrite", "false").lower()
    if overwrite not in ("true", "false", ""):
        raise BadRequest(f"overwrite must be true or false, not {overwrite!r}")
    return folder, overwrite == "true"


def upload_error(name: str, exc: Exception) -> dict[str, Any]:
    """One entry of an upload's `errors` list."""
    if isinstance(exc, AlreadyExists):
        status, code = 409, "exists"
    elif isinstance(exc, ApiError):
        status, code = exc.status, exc.code
    else:
        status, code = lookup(exc) or (500, "internal")
    return {"name": name, "status": status, "code": code, "detail": str(exc)}


def commit_form(
    storage: Storage, form: StagedForm
) -> tuple[list[ObjectInfo], list[dict[str, Any]]]:
    """Commit each staged file under dir/its basename; what was saved and what failed."""
    folder, overwrite = form_options(form)
    saved: list[ObjectInfo] = []
    failed: list[dict[str, Any]] = []
    for item in form.files:
        try:
            name = client_basename(item.filename)
            check_segment(name)
            key = check_key(f"{folder}/{name}" if folder else name)
            access.require("write", key)
            content_type = mediatypes.choose_type(key, item.content_type)
            saved.append(item.commit(storage, key, content_type, ANYTHING if overwrite else ABSENT))
        except (InvalidKey, StorageError, access.AccessDenied) as exc:
            failed.append(upload_error(item.filename, exc))
    return saved, failed


@bp.post("/files")
@access.deferred("write")
def post_files() -> Response:
    """Store each file of a multipart form: 201 all saved, 207 some, else the first error."""
    settings, storage = get_settings(), get_storage()
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported-media-type", "expected a multipart/form-data body")
    if not options.get("boundary"):
        raise BadRequest("the multipart/form-data body has no boundary")
    refuse_declared_size(settings.max_upload_bytes)
    digest = DigestCheck.from_header(request.headers.get("Content-Digest"), False)
    body = digest.wrap(body_reader(request.stream, request.content_length))
    boundary = options["boundary"].encode("latin-1", "replace")
    with durable_batch(storage):  # the files are made durable together, before the answer
        form = stage_form(storage, body, boundary, FILE_FIELD, settings.max_upload_bytes)
        try:
            digest.verify()
            if not form.files:
                raise BadRequest(f"the form has no files in the field {FILE_FIELD!r}")
            saved, failed = commit_form(storage, form)
        finally:
            form.discard(storage)
    status = 201 if not failed else 207 if saved else int(failed[0]["status"])
    response = jsonify({"saved": [metadata_json(i) for i in saved], "errors": failed})
    response.status_code = status
    return response


# -- OpenAPI -------------------------------------------------------------------------------------

_META = {"$ref": "#/components/schemas/FileMetadata"}
_UPLOAD_RESULT = {"$ref": "#/components/schemas/UploadResult"}
_ETAG = header("The object's strong ETag: its quoted hex SHA-256")
_WRITE_HEADERS = [
    header_parameter("If-Match", "Only if the object exists and has one of these ETags"),
    header_parameter("If-None-Match", "`*`: create only; ETags: only if none of them matches"),
]

OPENAPI_SCHEMAS: dict[str, Any] = {
    "FileMetadata": {
        "type": "object",
        "required": ["path", "size", "sha256", "etag", "content_type", "modified"],
        "properties": {
            "path": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "etag": {"type": "string", "pattern": '^"[0-9a-f]{64}"$'},
            "content_type": {"type": "string"},
            "modified": {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"},
        },
    },
    "FileList": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _META},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page",
            },
        },
    },
    "UploadError": {
        "type": "object",
        "required": ["name", "status", "code", "detail"],
        "properties": {
            "name": {"type": "string", "description": "The client's filename as sent"},
            "status": {"type": "integer"},
            "code": {"type": "string"},
            "detail": {"type": "string"},
        },
    },
    "UploadResult": {
        "type": "object",
        "required": ["saved", "errors"],
        "properties": {
            "saved": {"type": "array", "items": _META},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/UploadError"}},
        },
    },
}

_DOWNLOAD_HEADERS = {
    "ETag": _ETAG,
    "Last-Modified": header("When the object was last written"),
    "Accept-Ranges": header("Always `bytes`"),
    "X-Content-Type-Options": header("Always `nosniff`"),
    "Content-Security-Policy": header("Always `sandbox`"),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/files": {
        "get": {
            "operationId": "listFiles",
            "summary": "List objects whose path starts with a prefix",
            "description": (
                "Every object whose path starts with the string `prefix` (recursive, as S3 "
                "does), sorted by path, `limit` at a time. Follow `next_cursor` for more."
            ),
            "tags": ["files"],
            "parameters": [
                {
                    "name": "prefix",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "default": ""},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                    },
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "description": "The `next_cursor` of the previous page (opaque)",
                    "schema": {"type": "string"},
                },
            ],  # fmt: skip
            "responses": {
                "200": {
                    "description": "One page of objects",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/FileList"}}
                    },
                },
                **problem_responses(400),
            },
        },
        "post": {
            "operationId": "uploadFiles",
            "summary": "Upload files from a multipart form",
            "description": (
                "Each `file` part is stored at `dir`/its filename's last segment (split on "
                "`/` and `\\`). An existing object is a per-file `409 exists` unless "
                "`overwrite=true`. Fields may come before or after the files. 201 when all "
                "were saved, 207 when some were, else the first error's status; the body "
                "is the same in all three cases."
            ),
            "tags": ["files"],
            "parameters": [
                header_parameter("Content-Digest", "RFC 9530 digest of the whole body"),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                },
                                "dir": {"type": "string", "description": "Folder to store in"},
                                "overwrite": {"type": "string", "enum": ["true", "false"]},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": {
                    "description": "Every file was saved",
                    "content": {"application/json": {"schema": _UPLOAD_RESULT}},
                },
                "207": {
                    "description": "Some files were saved, some failed",
                    "content": {"application/json": {"schema": _UPLOAD_RESULT}},
                },
                "409": {
                    "description": "No file was saved; the first failed with 409",
                    "content": {
                        "application/json": {"schema": _UPLOAD_RESULT},
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        },
                    },
                },
                **problem_responses(400, 403, 413, 415, 507),
            },
        },
    },
    "/api/v1/files/{path}": {
        "parameters": [PATH_PARAMETER],
        "get": {
            "operationId": "getFile",
            "summary": "Download an object",
            "description": (
                "A single `Range` gives 206; several ranges are answered with 200 and the "
                "whole object. `If-None-Match` / `If-Modified-Since` give 304, `If-Match` / "
                "`If-Unmodified-Since` 412. HTML, SVG and XML are always attachments."
            ),
            "tags": ["files"],
            "parameters": [
                header_parameter("Range", "One byte range, e.g. `bytes=0-1023`"),
                header_parameter("If-Range", "An ETag or date: the range only if it still holds"),
                header_parameter("If-None-Match", "ETags the client has: 304 if one matches"),
                header_parameter("If-Modified-Since", "304 unless modified since"),
                header_parameter("If-Match", "412 unless the object has one of these ETags"),
                header_parameter("If-Unmodified-Since", "412 if modified since"),
                {
                    "name": "download",
                    "in": "query",
                    "required": False,
                    "description": "`1`: send as an attachment (Content-Disposition)",
                    "schema": {"type": "string", "enum": ["1"]},
                },
            ],  # fmt: skip
            "responses": {
                # Raw bytes in the object's own media type: no schema (as OpenAPI 3.1 has
                # binary content), so that a range of a JSON object is not taken for JSON.
                "200": {
                    "description": "The bytes",
                    "headers": {**_DOWNLOAD_HEADERS, "Content-Digest": header("sha-256")},
                    "content": {"*/*": {}},
                },
                "206": {
                    "description": "The requested range",
                    "headers": {**_DOWNLOAD_HEADERS, "Content-Range": header("bytes a-b/size")},
                    "content": {"*/*": {}},
                },
                "304": {"description": "Not modified", "headers": {"ETag": _ETAG}},
                **problem_responses(400, 404, 412, 416),
            },
        },
        "put": {
            "operationId": "putFile",
            "summary": "Store the raw body at a path",
            "description": (
                "Streams the body into the store and makes it appear atomically. "
                "`Content-Digest` (sha-256, sha-512) is checked before anything is stored."
            ),
            "tags": ["files"],
            "parameters": [
                *_WRITE_HEADERS,
                header_parameter("Content-Digest", "RFC 9530, e.g. `sha-256=:<base64>:`"),
            ],
            "requestBody": {
                "required": False,
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            "responses": {
                "200": {
                    "description": "Replaced",
                    "headers": {"ETag": _ETAG, "Location": header("The object's URL")},
                    "content": {"application/json": {"schema": _META}},
                },
                "201": {
                    "description": "Created",
                    "headers": {"ETag": _ETAG, "Location": header("The object's URL")},
                    "content": {"application/json": {"schema": _META}},
                },
                **problem_responses(400, 403, 404, 409, 412, 413, 507),
            },
        },
        "delete": {
            "operationId": "deleteFile",
            "summary": "Delete an object",
            "tags": ["files"],
            "parameters": _WRITE_HEADERS,
            "responses": {
                "204": {"description": "Deleted"},
                **problem_responses(400, 403, 404, 412),
            },
        },
    },
    "/api/v1/meta/{path}": {
        "parameters": [PATH_PARAMETER],
        "get": {
            "operationId": "getMeta",
            "summary": "An object's metadata",
            "tags": ["files"],
            "responses": {
                "200": {
                    "description": "The metadata",
                    "headers": {"ETag": _ETAG},
                    "content": {"application/json": {"schema": _META}},
                },
                **problem_responses(400, 404),
            },
        },
    },
}
