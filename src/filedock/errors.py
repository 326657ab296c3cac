"""Exceptions -> RFC 9457 problem+json with stable codes (API.md section 2)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from .bodies import IncompleteBody
from .digests import DigestMismatch, MalformedDigest
from .jsondocs import (
    DocumentBusy,
    InvalidDocument,
    InvalidJson,
    InvalidPatch,
    InvalidPointer,
    JsonTooComplex,
    PatchConflict,
    PatchTestFailed,
    PointerNotFound,
)
from .multipart import MalformedMultipart
from .resumable import (
    ChecksumMismatch,
    InvalidUpload,
    NotResumable,
    OffsetMismatch,
    TargetExists,
    UploadNotFound,
)
from .storage import (
    AlreadyExists,
    Conflict,
    InsufficientStorage,
    InvalidKey,
    Locked,
    ObjectNotFound,
    PreconditionFailed,
    StoreUnavailable,
    TooLarge,
)
from .upload_quota import TooManyUploads

log = logging.getLogger("filedock")

__all__ = [
    "HTTP_CODES",
    "PROBLEMS",
    "ApiError",
    "BadRequest",
    "DigestMismatch",
    "init_app",
    "lookup",
    "problem",
    "problem_body",
    "to_response",
]


class ApiError(Exception):
    """An error raised by the HTTP layer with its own status and code."""

    def __init__(self, status: int, code: str, detail: str = "", headers: Any = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


class BadRequest(ApiError):
    """Generic malformed input."""

    def __init__(self, detail: str, code: str = "bad-request") -> None:
        super().__init__(400, code, detail)


PROBLEMS: dict[type[Exception], tuple[int, str]] = {
    InvalidKey: (400, "invalid-path"),
    DigestMismatch: (400, "digest-mismatch"),
    MalformedDigest: (400, "bad-request"),
    MalformedMultipart: (400, "bad-request"),
    IncompleteBody: (400, "bad-request"),
    # a body read straight from the server's stream: a malformed chunk, or it ended early
    ParseException: (400, "bad-request"),
    NoMoreData: (400, "bad-request"),
    ObjectNotFound: (404, "not-found"),
    AlreadyExists: (412, "precondition-failed"),
    PreconditionFailed: (412, "precondition-failed"),
    Conflict: (409, "conflict"),
    TooLarge: (413, "too-large"),
    InsufficientStorage: (507, "insufficient-storage"),
    StoreUnavailable: (503, "store-unavailable"),
    InvalidJson: (400, "invalid-json"),
    InvalidDocument: (422, "invalid-json"),
    JsonTooComplex: (413, "too-large"),
    InvalidPointer: (400, "bad-request"),
    PointerNotFound: (404, "pointer-not-found"),
    InvalidPatch: (400, "invalid-patch"),
    PatchTestFailed: (409, "patch-test-failed"),
    PatchConflict: (409, "conflict"),
    DocumentBusy: (409, "conflict"),
    # resumable uploads (tus 1.0.0 dictates these statuses)
    InvalidUpload: (400, "bad-request"),
    UploadNotFound: (404, "not-found"),
    OffsetMismatch: (409, "conflict"),
    # not 409: tus clients take a 409 for an offset conflict and retry it
    TargetExists: (412, "exists"),
    # not 429, which Uppy retries (pausing every upload): the client has to finish or delete
    TooManyUploads: (403, "too-many-uploads"),
    Locked: (423, "conflict"),
    ChecksumMismatch: (460, "digest-mismatch"),
    NotResumable: (501, "internal"),
}

# What a 503 for a store that cannot be reached asks a client to wait before trying again.
STORE_RETRY_AFTER_SECONDS = "5"

# Statuses that are not in the HTTP registry Werkzeug knows.
TITLES: dict[int, str] = {460: "Checksum Mismatch"}

HTTP_CODES: dict[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    411: "bad-request",
    412: "precondition-failed",
    413: "too-large",
    415: "unsupported-media-type",
    416: "range-not-satisfiable",
    422: "invalid-json",
    431: "bad-request",
    507: "insufficient-storage",
}


def problem_body(
    status: int, code: str, detail: str | None = None, title: str | None = None
) -> dict[str, Any]:
    """The members of a problem (RFC 9457), in the order they are sent."""
    title = title or TITLES.get(status) or HTTP_STATUS_CODES.get(status, "Error")
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["code"] = code
    return body


def problem(status: int, code: str, detail: str | None = None) -> Response:
    """An application/problem+json response."""
    response = jsonify(problem_body(status, code, detail))
    response.status_code, response.mimetype = status, "application/problem+json"
    return response


def lookup(exc: Exception) -> tuple[int, str] | None:
    """The (status, code) of an exception, by its MRO in PROBLEMS."""
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return None


def to_response(exc: Exception) -> Response:
    """The problem+json response for any exception."""
    if isinstance(exc, ApiError):
        response = problem(exc.status, exc.code, exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        detail = exc.description if status != 404 else "no such resource"
        response = problem(status, HTTP_CODES.get(status, "bad-request"), detail)
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response
    found = lookup(exc)
    if found is not None:
        response = problem(found[0], found[1], str(exc) or None)
        if found[0] == 503:  # the store is down or slow for now: nothing changed, try again
            response.headers["Retry-After"] = STORE_RETRY_AFTER_SECONDS
        return response
    # Lazy %-arguments: a '%s' in the path is data, and %r keeps a CR/LF in it on one line.
    log.exception("unhandled error in %s %r", request.method, request.path)
    return problem(500, "internal", "the server failed; the request id is in its log")


def init_app(app: Flask) -> None:
    """Route every error through problem()."""
    app.register_error_handler(Exception, to_response)
