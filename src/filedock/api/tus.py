"""Resumable uploads: tus 1.0.0 at /api/v1/uploads (API.md section 7).

The rules live in resumable.py; this module reads the tus headers and shapes the answers.
Every request learns its upload's target key in exactly one of two functions,
`new_upload_target()` (creation) and `existing_upload()` (everything else), and both check
there that the caller may write that key: creating and continuing an upload need `write` on
its target."""

from __future__ import annotations

from typing import Any, BinaryIO, cast

from flask import Blueprint, Response, request, url_for
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import http_date

from .. import access
from ..bodies import BodyReader, IncompleteBody
from ..context import get_settings, get_storage
from ..errors import ApiError, to_response
from ..resumable import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    TUS_VERSION,
    Checksum,
    InvalidUpload,
    Target,
    Upload,
    Uploads,
    parse_checksum,
    parse_metadata,
    parse_offset,
    parse_target,
)
from ..upload_quota import Limits

bp = Blueprint("tus", __name__, url_prefix="/api/v1/uploads")

OFFSET_OCTET_STREAM = "application/offset+octet-stream"
OVERRIDABLE = ("PATCH", "DELETE", "HEAD")


def uploads() -> Uploads:
    """The tus rules over this app's store."""
    settings = get_settings()
    return Uploads(
        get_storage(),
        settings.max_upload_bytes,
        disconnect_errors=(ClientDisconnected, OSError, IncompleteBody),
        limits=Limits(settings.max_open_uploads, settings.open_upload_bytes_limit),
    )


def append_body(
    rules: Uploads,
    upload_id: str,
    offset: int,
    checksum: Checksum | None,
    known: Upload | None = None,
) -> Upload:
    """Append this request's body to the upload at offset.

    A body that ends before its Content-Length, or a chunked one that breaks off before its
    last chunk, is answered 400. What did arrive stays in the upload, as tus asks (a client
    that lost its connection resumes from HEAD's Upload-Offset, not from the start), but it is
    not acknowledged: a broken request never gets a success answer, unless the bytes that
    arrived were all the upload still lacked (it is then complete, and committed)."""
    body = BodyReader(request.stream, request.content_length)
    upload = rules.append(
        upload_id, offset, cast(BinaryIO, body), request.content_length, checksum, known
    )
    if body.incomplete and not upload.done:
        raise ApiError(
            400,
            "bad-request",
            f"the request body ended early, after {body.received} bytes; the upload keeps "
            f"what arrived: continue from Upload-Offset {upload.offset}",
            headers={"Upload-Offset": str(upload.offset)},
        )
    return upload


def new_upload_target(metadata_header: str) -> Target:
    """The target of the upload this creation request asks for."""
    target = parse_target(parse_metadata(metadata_header))
    access.require("write", target.key)
    return target


def existing_upload(rules: Uploads, upload_id: str) -> Upload:
    """The upload this request is about (its target key is upload.target)."""
    upload = rules.get(upload_id)
    access.require("write", upload.target)
    return upload


@bp.before_request
def check_tus_resumable() -> None:
    """Every request but OPTIONS carries the protocol version this server speaks."""
    if request.method == "OPTIONS":
        return
    version = request.headers.get("Tus-Resumable")
    if version != TUS_VERSION:
        detail = (
            "the Tus-Resumable header is missing"
            if version is None
            else f"unsupported Tus-Resumable {version[:20]!r}; this server speaks {TUS_VERSION}"
        )
        raise ApiError(412, "precondition-failed", detail, headers={"Tus-Version": TUS_VERSION})


@bp.after_request
def add_tus_resumable(response: Response) -> Response:
    """Every answer names the protocol version."""
    response.headers["Tus-Resumable"] = TUS_VERSION
    return response


def upload_headers(upload: Upload) -> dict[str, str]:
    """Offset, length and expiry of an upload."""
    return {
        "Upload-Offset": str(upload.offset),
        "Upload-Length": str(upload.length),
        "Upload-Expires": http_date(upload.expires),
    }


def empty(status: int, headers: dict[str, str]) -> Response:
    """A bodiless answer (no Content-Type)."""
    response = Response(status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


def location(upload_id: str) -> str:
    """The upload's URL, as a path (clients resolve it against the creation URL)."""
    return url_for("tus.head_upload", upload_id=upload_id)


@bp.route("", methods=["OPTIONS"])
@bp.route("/<upload_id>", methods=["OPTIONS"])
def options_uploads(upload_id: str | None = None) -> Any:
    """What this server supports (also the answer to CORS preflights)."""
    return (
        "",
        204,
        {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": ",".join(EXTENSIONS),
            "Tus-Max-Size": str(get_settings().max_upload_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        },
    )


@access.deferred("write")
@bp.route("", methods=["POST"], provide_automatic_options=False)
def post_upload() -> Any:
    """Create an upload (creation), with its first chunk when a body is sent
    (creation-with-upload)."""
    if request.headers.get("Upload-Defer-Length") is not None:
        raise InvalidUpload("Upload-Defer-Length is not supported: send Upload-Length")
    length = parse_offset(request.headers.get("Upload-Length"), "Upload-Length")
    has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding")
    if has_body and request.mimetype != OFFSET_OCTET_STREAM:
        raise ApiError(
            415, "unsupported-media-type", f"a creation body must be {OFFSET_OCTET_STREAM}"
        )
    checksum = parse_checksum(request.headers.get("Upload-Checksum"))
    metadata_header = request.headers.get("Upload-Metadata", "")
    target = new_upload_target(metadata_header)
    rules = uploads()
    upload = rules.create(length, metadata_header, target, access.requester())
    url = location(upload.id)
    if has_body:
        try:
            upload = append_body(rules, upload.id, 0, checksum, upload)
        except Exception as exc:  # the upload exists: tell the client where, with the error
            response = to_response(exc)
            response.headers["Location"] = url
            return response
    return empty(201, {"Location": url} | upload_headers(upload))


@access.deferred("write")
@bp.route("/<upload_id>", methods=["HEAD"], provide_automatic_options=False)
def head_upload(upload_id: str) -> Any:
    """How far an upload has come."""
    upload = existing_upload(uploads(), upload_id)
    headers = upload_headers(upload) | {"Cache-Control": "no-store"}
    if upload.metadata:
        headers["Upload-Metadata"] = upload.metadata  # validated plain base64 at creation
    return empty(200, headers)


@access.deferred("write")
@bp.route("/<upload_id>", methods=["PATCH"], provide_automatic_options=False)
def patch_upload(upload_id: str) -> Any:
    """Append a chunk at Upload-Offset; the last one commits the upload to its target."""
    rules = uploads()
    upload = existing_upload(rules, upload_id)
    if request.mimetype != OFFSET_OCTET_STREAM:
        raise ApiError(415, "unsupported-media-type", f"a PATCH body must be {OFFSET_OCTET_STREAM}")
    offset = parse_offset(request.headers.get("Upload-Offset"), "Upload-Offset")
    checksum = parse_checksum(request.headers.get("Upload-Checksum"))
    upload = append_body(rules, upload.id, offset, checksum, upload)
    headers = upload_headers(upload)
    del headers["Upload-Length"]
    return empty(204, headers)


@access.deferred("write")
@bp.route("/<upload_id>", methods=["DELETE"], provide_automatic_options=False)
def delete_upload(upload_id: str) -> Any:
    """Terminate an upload: its data is removed (an object it was committed to stays)."""
    rules = uploads()
    upload = existing_upload(rules, upload_id)
    rules.terminate(upload.id)
    return empty(204, {})


@access.deferred("write")
@bp.route("/<upload_id>", methods=["POST"], provide_automatic_options=False)
def post_upload_override(upload_id: str) -> Any:
    """X-HTTP-Method-Override: PATCH, DELETE or HEAD sent as POST (for clients that can't)."""
    method = request.headers.get("X-HTTP-Method-Override", "").strip().upper()
    if method == "PATCH":
        return patch_upload(upload_id)
    if method == "DELETE":
        return delete_upload(upload_id)
    if method == "HEAD":
        return head_upload(upload_id)
    raise ApiError(
        405,
        "method-not-allowed",
        "POST on an upload needs X-HTTP-Method-Override: PATCH, DELETE or HEAD",
        headers={"Allow": "HEAD, PATCH, DELETE, OPTIONS, POST"},
    )


# -- OpenAPI 3.1 path items, assembled into the spec by openapi.py -----------------------------


def _header(description: str, kind: str = "string", required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": kind}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


_TUS_RESUMABLE = {
    "name": "Tus-Resumable",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "const": TUS_VERSION},
}
_UPLOAD_ID = {
    "name": "upload_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_RESUMABLE_OUT = {"Tus-Resumable": _header("always 1.0.0")}
_STATE_OUT = _RESUMABLE_OUT | {
    "Upload-Offset": _header("bytes received and stored durably", "integer"),
    "Upload-Expires": _header("when the upload expires (RFC 9110 date)"),
}
_COMMON_ERRORS = {
    "412": _problem("Tus-Resumable missing or not 1.0.0 (answer carries Tus-Version)"),
}
_OPTIONS = {
    "summary": "tus capabilities (no Tus-Resumable needed)",
    "responses": {
        "204": {
            "description": "capabilities",
            "headers": _RESUMABLE_OUT
            | {
                "Tus-Version": _header("1.0.0"),
                "Tus-Extension": _header(",".join(EXTENSIONS)),
                "Tus-Max-Size": _header("max_upload_bytes", "integer"),
                "Tus-Checksum-Algorithm": _header(",".join(CHECKSUM_ALGORITHMS)),
            },
        }
    },
}
_OFFSET_BODY = {
    "content": {OFFSET_OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/uploads": {
        "options": _OPTIONS,
        "post": {
            "summary": "Create a resumable upload (creation, creation-with-upload)",
            "parameters": [
                _TUS_RESUMABLE,
                {
                    "name": "Upload-Length",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "Upload-Metadata",
                    "in": "header",
                    "required": True,
                    "description": "base64 pairs: path (or filename), optional overwrite=true, "
                    "filetype",
                    "schema": {"type": "string"},
                },
                {
                    "name": "Upload-Checksum",
                    "in": "header",
                    "schema": {"type": "string"},
                    "description": "'sha1 <base64>' or 'sha256 <base64>' of the body",
                },
            ],  # fmt: skip
            "requestBody": {"required": False, **_OFFSET_BODY},
            "responses": {
                "201": {
                    "description": "created; Location is the upload's URL",
                    "headers": _STATE_OUT | {"Location": _header("the upload's URL")},
                },
                "400": _problem("bad Upload-Length or Upload-Metadata, invalid path"),
                "403": _problem(
                    "read-only: a read-only server; too-many-uploads: this client (its token, "
                    "or its address without one) has max_open_uploads unfinished uploads, or "
                    "they would claim more than max_open_upload_bytes; forbidden: no write "
                    "scope on the target"
                ),
                "412": _problem(
                    "exists: the target exists and overwrite is not set (not 409, which tus "
                    "clients retry as an offset conflict); precondition-failed: Tus-Resumable "
                    "missing or not 1.0.0 (answer carries Tus-Version)"
                ),
                "413": _problem("Upload-Length past Tus-Max-Size"),
                "415": _problem(f"a body that is not {OFFSET_OCTET_STREAM}"),
                "460": _problem("the body does not match Upload-Checksum"),
            },
        },
    },
    "/api/v1/uploads/{upload_id}": {
        "parameters": [_UPLOAD_ID],
        "options": _OPTIONS,
        "head": {
            "summary": "How far the upload has come",
            "parameters": [_TUS_RESUMABLE],
            "responses": {
                "200": {
                    "description": "the upload's state",
                    "headers": _STATE_OUT
                    | {
                        "Upload-Length": _header("total size", "integer"),
                        "Upload-Metadata": _header("the metadata as sent at creation"),
                        "Cache-Control": _header("no-store"),
                    },
                },
                "404": {"description": "no such upload (or expired)"},
            }
            | _COMMON_ERRORS,
        },
        "patch": {
            "summary": "Append a chunk at Upload-Offset; the last one stores the file",
            "parameters": [
                _TUS_RESUMABLE,
                {
                    "name": "Upload-Offset",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                },
                {"name": "Upload-Checksum", "in": "header", "schema": {"type": "string"}},
            ],  # fmt: skip
            "requestBody": {"required": True, **_OFFSET_BODY},
            "responses": {
                "204": {"description": "chunk stored durably", "headers": _STATE_OUT},
                "400": _problem("bad Upload-Offset or Upload-Checksum"),
                "404": _problem("no such upload (or expired)"),
                "409": _problem("conflict: Upload-Offset mismatch, or a parent is a file"),
                "412": _problem(
                    "exists: the target appeared meanwhile and overwrite is not set; the "
                    "upload stays (DELETE it, or clear the target and send an empty PATCH); "
                    "precondition-failed: Tus-Resumable missing or not 1.0.0"
                ),
                "413": _problem("the chunk passes Upload-Length"),
                "415": _problem(f"Content-Type is not {OFFSET_OCTET_STREAM}"),
                "423": _problem("another request is writing to this upload"),
                "460": _problem("the chunk does not match Upload-Checksum; not kept"),
            },
        },
        "delete": {
            "summary": "Terminate the upload (termination)",
            "parameters": [_TUS_RESUMABLE],
            "responses": {
                "204": {"description": "removed", "headers": _RESUMABLE_OUT},
                "404": _problem("no such upload"),
                "423": _problem("another request is writing to this upload"),
            }
            | _COMMON_ERRORS,
        },
        "post": {
            "summary": "PATCH, DELETE or HEAD for clients that cannot send them",
            "parameters": [
                _TUS_RESUMABLE,
                {
                    "name": "X-HTTP-Method-Override",
                    "in": "header",
                    "required": True,
                    "schema": {"enum": list(OVERRIDABLE)},
                },
            ],  # fmt: skip
            "responses": {
                "204": {"description": "as PATCH or DELETE"},
                "200": {"description": "as HEAD"},
                "405": _problem("no override given"),
            },
        },
    },
}
