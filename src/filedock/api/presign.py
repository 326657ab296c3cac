"""Signed links: POST /api/v1/presign (API.md section 8)."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, request

from .. import access, auth
from ..bodies import body_reader
from ..context import get_settings
from ..errors import ApiError, BadRequest
from ..storage import check_key

bp = Blueprint("presign", __name__)

MAX_BODY_BYTES = 64 << 10
DEFAULT_EXPIRES_SECONDS = 3600


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object, read with a small bound (chunked bodies too)."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported-media-type", "send the request as application/json")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "too-large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    data = b""
    body = body_reader(request.stream, request.content_length)  # IncompleteBody if cut short
    while len(data) <= MAX_BODY_BYTES and (chunk := body.read(MAX_BODY_BYTES + 1)):
        data += chunk
    if len(data) > MAX_BODY_BYTES:
        raise ApiError(413, "too-large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


@bp.post("/api/v1/presign")
@access.deferred()
def post_presign() -> Any:
    """A link that allows one method on one path, without a token, until it expires."""
    body = read_json_object()
    path, method = body.get("path"), body.get("method")
    if not isinstance(path, str):
        raise BadRequest("path must be a string")
    key = check_key(path)
    if method not in auth.PRESIGN_METHODS:
        raise BadRequest('method must be "GET" or "PUT"')
    try:
        expires_in = auth.check_expires_in(body.get("expires_in", DEFAULT_EXPIRES_SECONDS))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    access.require(auth.scope_for_method(method), key)
    if method != "GET" and get_settings().read_only:
        raise ApiError(403, "read-only", "the server is read-only")
    expires = int(time.time()) + expires_in
    return {"url": access.presign_url(method, key, expires), "expires_at": auth.rfc3339(expires)}


_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }


OPENAPI_SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: Authorization: Bearer <token>.",
    },
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "HTTP Basic with the token as password (curl -u :TOKEN).",
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/presign": {
        "post": {
            "operationId": "post_presign",
            "summary": "Create a signed link",
            "description": (
                "A link that allows exactly one method (GET or PUT) on one path, without a "
                "token, until it expires. The caller needs the matching scope (read for GET, "
                "write for PUT) on the path. The url is relative to the server's root."
            ),
            "security": [{"bearer": []}, {"basic": []}, {}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["path", "method"],
                            "properties": {
                                "path": {"type": "string", "minLength": 1, "maxLength": 1024},
                                "method": {"type": "string", "enum": ["GET", "PUT"]},
                                "expires_in": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": auth.MAX_PRESIGN_SECONDS,
                                    "default": DEFAULT_EXPIRES_SECONDS,
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "The signed link.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["url", "expires_at"],
                                "properties": {
                                    "url": {"type": "string"},
                                    "expires_at": {"type": "string", "format": "date-time"},
                                },
                            }
                        }
                    },
                },
                "400": _problem_response("Malformed body, bad path, method or expires_in."),
                "401": _problem_response("No token, or an unknown one."),
                "403": _problem_response("The token may not use that method on that path."),
                "413": _problem_response("The body is too large."),
                "415": _problem_response("The body is not application/json."),
            },
        }
    }
}
