"""JSON documents: read, pointer-read, replace and patch (API.md section 5).

Choices where API.md is silent:
- PUT stores the body exactly as sent once it has been checked to be JSON, so its ETag is the
  SHA-256 of what the client sent. PATCH stores the result serialised compactly (UTF-8, members
  in document order), and that stored text is the response body.
- GET without a pointer answers with the stored bytes verbatim. With `?pointer=` the ETag is the
  document's: the value at a pointer changes only when the document does, and the client can
  send it back as If-Match on PATCH. If-None-Match gives 304.
- A pointer that is not RFC 6901 (not starting with '/', a stray '~') is `400 bad-request`.
- A JSON Patch that is well-formed but whose target does not exist (remove of a missing member)
  is `409 conflict`, as RFC 5789 suggests for a patch that conflicts with the document.
- JSON past the parser's limits (nested too deeply, a number too long or too large) is
  `413 too-large`, whether it comes in a body, a patch or a stored document.
- A `Content-Digest` (RFC 9530) on PUT or PATCH is checked as on `/api/v1/files`: a mismatch
  is `400 digest-mismatch` and nothing is stored.
- PATCH needs `read` as well as `write` on the path: it answers with the whole new document
  (and a JSON Patch `test` probes values), so a write-only token would otherwise read through it.
- PATCH with `Content-Type: application/json` (what httpie, fetch, axios and requests send) is a
  merge patch when the body is a JSON object, as json-server takes it; any other value is `415`,
  since as a merge patch an array would replace the whole document.
- A body that ends before its Content-Length (or a chunked one without its last chunk) is
  `400 bad-request`, and nothing is stored.
"""

from __future__ import annotations

from typing import Any, BinaryIO, cast

from flask import Blueprint, Response, jsonify, request, url_for

from .. import access, jsondocs
from ..bodies import body_reader
from ..context import get_settings, get_storage
from ..digests import DigestCheck
from ..errors import ApiError
from ..openapi import PATH_PARAMETER, header_parameter, problem_response
from ..storage import Key, TooLarge
from ..storage.base import CHUNK_BYTES
from .shapes import metadata_json

bp = Blueprint("documents", __name__, url_prefix="/api/v1/json")

ACCEPT_PATCH = ", ".join(jsondocs.PATCH_TYPES)


def read_body(limit: int) -> bytes:
    """The whole request body, refused past limit bytes: from Content-Length before reading it,
    else as soon as the stream passes the limit; checked against its Content-Digest, if any.
    IncompleteBody if it ends early."""
    length = request.content_length
    if length is not None and length > limit:
        raise TooLarge(f"the body is {length} bytes; the limit is {limit}")
    digest = DigestCheck.from_header(request.headers.get("Content-Digest"), False)
    chunks: list[bytes] = []
    size = 0
    stream = digest.wrap(body_reader(cast(BinaryIO, request.stream), length))
    while True:
        chunk = stream.read(min(CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is larger than {limit} bytes")
    digest.verify()
    return b"".join(chunks)


def json_response(data: bytes, etag: str, status: int = 200) -> Response:
    """A JSON body with its ETag."""
    response = Response(data, status=status, mimetype=jsondocs.JSON)
    response.headers["ETag"] = etag
    response.headers["Accept-Patch"] = ACCEPT_PATCH
    return response


@bp.get("/<anypath:key>")
def get_document(key: Key) -> Response:
    """The document (stored bytes verbatim), or the value at ?pointer=."""
    pointer = request.args.get("pointer", "")
    tokens = jsondocs.parse_pointer(pointer) if pointer else []
    doc = jsondocs.get_document(get_storage(), key, get_settings().max_json_bytes)
    doc.check()  # the document is JSON (decided once per version per process)
    value = jsondocs.resolve_pointer(doc.value(), tokens) if tokens else None
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and jsondocs.etag_matches(if_none_match, doc.etag, weak=True):
        response = Response(status=304)
        response.headers["ETag"] = doc.etag
        return response
    return json_response(jsondocs.dump_json(value) if tokens else doc.data, doc.etag)


@bp.put("/<anypath:key>")
def put_document(key: Key) -> tuple[Response, int]:
    """Store the body, which must be JSON, as the document at key."""
    data = read_body(get_settings().max_json_bytes)
    jsondocs.parse_json(data)
    written = jsondocs.put_document(
        get_storage(),
        key,
        data,
        if_match=request.headers.get("If-Match"),
        if_none_match=request.headers.get("If-None-Match"),
    )
    response = jsonify(metadata_json(written.info))
    response.headers["ETag"] = written.info.etag
    response.headers["Location"] = url_for("documents.get_document", key=key)
    return response, 201 if written.created else 200


@bp.patch("/<anypath:key>")
def patch_document(key: Key) -> Response:
    """Apply a merge patch or a JSON Patch to the document, without losing concurrent updates."""
    access.require("read", key)
    if request.mimetype not in (*jsondocs.PATCH_TYPES, jsondocs.JSON):
        raise unsupported_patch_type(
            f"a PATCH body must be {' or '.join(jsondocs.PATCH_TYPES)}, "
            f"or a JSON object sent as {jsondocs.JSON} (a merge patch)"
        )
    settings = get_settings()
    patch = jsondocs.decode_patch(read_body(settings.max_json_bytes))
    if request.mimetype == jsondocs.JSON_PATCH:
        patcher = jsondocs.json_patcher(jsondocs.check_json_patch(patch), settings.max_json_bytes)
    elif request.mimetype == jsondocs.MERGE_PATCH or isinstance(patch, dict):
        patcher = jsondocs.merge_patcher(patch)
    else:
        raise unsupported_patch_type(
            f"an application/json PATCH body is taken as a merge patch only when it is a JSON "
            f"object; send a JSON Patch (an array of operations) as {jsondocs.JSON_PATCH}, "
            f"or another merge patch as {jsondocs.MERGE_PATCH}"
        )
    written = jsondocs.patch_document(
        get_storage(),
        key,
        patcher,
        settings.max_json_bytes,
        if_match=request.headers.get("If-Match"),
        if_none_match=request.headers.get("If-None-Match"),
    )
    return json_response(written.data, written.info.etag)


def unsupported_patch_type(detail: str) -> ApiError:
    """415, with the patch types this server takes."""
    return ApiError(415, "unsupported-media-type", detail, headers={"Accept-Patch": ACCEPT_PATCH})


# -- OpenAPI 3.1 fragments, merged into the spec by filedock.openapi ---------------------------


_ANY_JSON: dict[str, Any] = {"description": "Any JSON value."}
_ETAG_HEADER = {
    "description": 'The quoted SHA-256 of the stored document: "<64 hex>".',
    "schema": {"type": "string"},
}
_IF_MATCH = header_parameter(
    "If-Match", "Apply only if the document's current ETag is one of these (else 412)."
)
_IF_NONE_MATCH_WRITE = header_parameter(
    "If-None-Match", "`*`: create only (412 if the document exists)."
)
_COMMON_ERRORS = {
    "400": problem_response("`invalid-path`: the path breaks a rule of API.md section 1."),
    "403": problem_response("`read-only`: the server is read-only."),
}

_METADATA = {"$ref": "#/components/schemas/FileMetadata"}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "JsonPatch": {
        "type": "array",
        "description": "An RFC 6902 JSON Patch.",
        "items": {
            "type": "object",
            "properties": {
                "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
                "path": {"type": "string", "description": "An RFC 6901 JSON Pointer."},
                "from": {"type": "string", "description": "For move and copy."},
                "value": {"description": "For add, replace and test."},
            },
            "required": ["op", "path"],
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/json/{path}": {
        "parameters": [PATH_PARAMETER],
        "get": {
            "operationId": "getDocument",
            "summary": "Read a JSON document, or the value at a JSON Pointer",
            "description": (
                "Without `pointer` the stored bytes are returned verbatim. The ETag is the "
                "document's, also with `pointer`."
            ),
            "tags": ["documents"],
            "parameters": [
                {
                    "name": "pointer",
                    "in": "query",
                    "required": False,
                    "description": "An RFC 6901 JSON Pointer, e.g. /a/0/b (`~1` is '/', `~0` '~').",
                    "schema": {"type": "string"},
                },
                {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": False,
                    "description": "304 when the document's ETag is one of these.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The document, or the value at the pointer.",
                    "headers": {"ETag": _ETAG_HEADER},
                    "content": {"application/json": {"schema": _ANY_JSON}},
                },
                "304": {"description": "Not modified.", "headers": {"ETag": _ETAG_HEADER}},
                "400": problem_response(
                    "`invalid-path`, or `bad-request`: the pointer is not an RFC 6901 pointer."
                ),
                "403": _COMMON_ERRORS["403"],
                "404": problem_response(
                    "`not-found`: no document; `pointer-not-found`: no value at the pointer."
                ),
                "413": problem_response(
                    "`too-large`: the document is over max_json_bytes, nested too deeply, "
                    "or has a number too large."
                ),
                "422": problem_response(
                    "`invalid-json`: the stored object is not valid UTF-8 JSON."
                ),
            },
        },
        "put": {
            "operationId": "putDocument",
            "summary": "Create or replace a JSON document",
            "description": "The body is stored exactly as sent once checked to be JSON.",
            "tags": ["documents"],
            "parameters": [_IF_MATCH, _IF_NONE_MATCH_WRITE],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ANY_JSON}},
            },
            "responses": {
                "200": {
                    "description": "Replaced.",
                    "headers": {"ETag": _ETAG_HEADER, "Location": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": _METADATA}},
                },
                "201": {
                    "description": "Created.",
                    "headers": {"ETag": _ETAG_HEADER, "Location": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": _METADATA}},
                },
                "400": problem_response(
                    "`invalid-path`; `invalid-json`: the body is not JSON (a string with a lone "
                    "surrogate escape is not either); `bad-request`: the body ended early."
                ),
                "403": _COMMON_ERRORS["403"],
                "409": problem_response("`conflict`: a parent is a file, or the path is a folder."),
                "412": problem_response(
                    "`precondition-failed`: If-Match or If-None-Match did not hold."
                ),
                "413": problem_response(
                    "`too-large`: the body is over max_json_bytes, nested too deeply, "
                    "or has a number too large."
                ),
                "507": problem_response("`insufficient-storage`: the store is full."),
            },
        },
        "patch": {
            "operationId": "patchDocument",
            "summary": "Patch a JSON document (RFC 7396 merge patch or RFC 6902 JSON Patch)",
            "description": (
                "Concurrent patches are serialised by compare-and-swap on the ETag: none is "
                "lost. The result is stored compactly and returned."
            ),
            "tags": ["documents"],
            "parameters": [_IF_MATCH],
            "requestBody": {
                "required": True,
                "description": "`application/json`: an object, applied as a merge patch.",
                "content": {
                    jsondocs.MERGE_PATCH: {"schema": _ANY_JSON},
                    jsondocs.JSON_PATCH: {"schema": {"$ref": "#/components/schemas/JsonPatch"}},
                    jsondocs.JSON: {
                        "schema": {
                            "type": "object",
                            "description": "A merge patch, as everyday JSON clients send it.",
                        }
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "The patched document.",
                    "headers": {"ETag": _ETAG_HEADER},
                    "content": {"application/json": {"schema": _ANY_JSON}},
                },
                "400": problem_response(
                    "`invalid-path`; `invalid-patch`: the patch is malformed; `invalid-json`: it "
                    "has a string with a lone surrogate escape; `bad-request`: it ended early."
                ),
                "403": _COMMON_ERRORS["403"],
                "404": problem_response("`not-found`: no document at the path."),
                "409": problem_response(
                    "`patch-test-failed`: a `test` operation failed; `conflict`: the patch's "
                    "target does not exist in the document, or the document kept changing."
                ),
                "412": problem_response("`precondition-failed`: If-Match did not hold."),
                "413": problem_response(
                    "`too-large`: the patch or the result is over max_json_bytes (nothing is "
                    "stored), a JSON Patch has more than "
                    f"{jsondocs.MAX_PATCH_OPERATIONS} operations or copies more than "
                    "max_json_bytes in all, or the JSON is nested too deeply."
                ),
                "415": problem_response(
                    "`unsupported-media-type`: not one of the patch types, or an "
                    "application/json body that is not a JSON object."
                ),
                "422": problem_response(
                    "`invalid-json`: the stored object is not valid UTF-8 JSON."
                ),
                "507": problem_response("`insufficient-storage`: the store is full."),
            },
        },
    }
}
