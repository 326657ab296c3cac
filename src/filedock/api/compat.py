"""The original app's two endpoints, with their response shapes (API.md section 6)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.http import parse_options_header

from .. import access, mediatypes
from ..bodies import IncompleteBody, body_reader
from ..context import get_settings, get_storage
from ..jsondocs import Document, InvalidJson, get_document
from ..multipart import MalformedMultipart, client_basename, stage_form
from ..openapi import PATH_PARAMETER
from ..routing import came_from_utf8
from ..storage import (
    InvalidKey,
    ObjectNotFound,
    StorageError,
    TooLarge,
    check_key,
    check_segment,
    durable_batch,
)

bp = Blueprint("compat", __name__)


def compat_error(status: int, error: str) -> tuple[Response, int]:
    """The original app's error shape."""
    return jsonify({"STATUS": "false", "error": error}), status


access.shape_denials(bp.name, compat_error)


@bp.get("/getJsonFromFile/", defaults={"filename": ""})
@bp.get("/getJsonFromFile/<anypath:filename>")
@access.key_argument("filename")
def get_json_from_file(filename: str) -> Any:
    """Return a JSON document as {"STATUS": "true", "LABELS_MAPPING": ...}."""
    try:
        if not came_from_utf8(filename):  # else U+FFFD would stand in for the bad bytes
            raise InvalidKey("the path is not valid UTF-8")
        key = check_key(filename)
        document = get_document(get_storage(), key, get_settings().max_json_bytes)
        body = document.derived("compat", labels_mapping_body)
    except InvalidKey as exc:
        return compat_error(400, f"invalid file name: {exc}")
    except ObjectNotFound:
        return compat_error(404, "file not found in server")
    except InvalidJson:
        return compat_error(422, "file is not valid JSON")
    except TooLarge:
        return compat_error(413, "file is too large")
    return Response(body, mimetype="application/json")


def labels_mapping_body(document: Document) -> bytes:
    """The original's answer for a document, as jsonify() writes it (made once per version)."""
    return jsonify({"STATUS": "true", "LABELS_MAPPING": document.value()}).get_data()


@bp.post("/uploadFiles")
@access.deferred("write")
def upload_files() -> Any:
    """Store each file of FILES_LIST at the root as FILE_NAME + its name without spaces."""
    with durable_batch(get_storage()):  # the files are made durable together, before the answer
        return store_files_list()


def store_files_list() -> Any:
    """upload_files() inside its storage batch."""
    settings, storage = get_settings(), get_storage()
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype != "multipart/form-data" or not options.get("boundary"):
        return compat_error(400, "expected a multipart/form-data body with files in FILES_LIST")
    if request.content_length is not None and request.content_length > settings.max_upload_bytes:
        return compat_error(413, f"the body is larger than {settings.max_upload_bytes} bytes")
    boundary = options["boundary"].encode("latin-1", "replace")
    try:
        form = stage_form(
            storage,
            body_reader(request.stream, request.content_length),
            boundary,
            "FILES_LIST",
            settings.max_upload_bytes,
        )
    except (MalformedMultipart, IncompleteBody) as exc:
        return compat_error(400, str(exc))
    except TooLarge as exc:
        return compat_error(413, str(exc))
    try:
        prefix = form.fields.get("FILE_NAME", "")
        if prefix:
            try:
                check_segment(prefix)
            except InvalidKey as exc:
                return compat_error(400, f"invalid FILE_NAME: {exc}")
        if not form.files:
            return compat_error(400, "no files in FILES_LIST")
        names = [prefix + client_basename(item.filename).replace(" ", "") for item in form.files]
        for name in names:  # nothing is stored unless the token may write every valid name
            try:
                check_key(name)
            except InvalidKey:
                continue  # reported in ERROR_FILES_LIST below
            if not access.allowed("write", name):
                return compat_error(403, f"this token may not write {name}")
        saved: list[str] = []
        error_files = ""
        for item, name in zip(form.files, names, strict=True):
            try:
                key = check_key(name)
                item.commit(storage, key, mediatypes.choose_type(key, item.content_type))
            except StorageError:
                error_files += "," + item.filename
                continue
            saved.append(key)
        return jsonify({"STATUS": "true", "ERROR_FILES_LIST": error_files, "SAVED_FILES": saved})
    finally:
        form.discard(storage)


def _original(description: str, error: str) -> dict[str, Any]:
    """A response in the original app's error shape (not problem+json)."""
    example = {"STATUS": "false", "error": error}
    schema = {"$ref": "#/components/schemas/CompatError"}
    return {
        "description": description,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


_DENIED = {
    "401": _original("No token, or an unknown one.", "this request needs a token"),
    "403": _original("The token does not allow it.", "this token may not read labels.json"),
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "CompatError": {
        "type": "object",
        "description": "The original app's error shape.",
        "required": ["STATUS", "error"],
        "properties": {"STATUS": {"const": "false"}, "error": {"type": "string"}},
    },
}

_GET_JSON = {
    "operationId": "compatGetJsonFromFile",
    "summary": "A JSON document in the original app's shape",
    "description": "API.md section 6. Errors keep the original's shape, not problem+json.",
    "tags": ["compatibility"],
    "responses": {
        "200": {
            "description": "The document as LABELS_MAPPING.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["STATUS", "LABELS_MAPPING"],
                        "properties": {"STATUS": {"const": "true"}, "LABELS_MAPPING": {}},
                    },
                    "example": {"STATUS": "true", "LABELS_MAPPING": {"ironman": "1"}},
                }
            },
        },
        "400": _original("The path breaks a rule of API.md section 1.", "invalid file name: …"),
        **_DENIED,
        "404": _original("No file at the path.", "file not found in server"),
        "413": _original("The file is over max_json_bytes.", "file is too large"),
        "422": _original("The file is not valid UTF-8 JSON.", "file is not valid JSON"),
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/getJsonFromFile/{path}": {
        "parameters": [PATH_PARAMETER],
        "get": _GET_JSON,
    },
    "/getJsonFromFile/": {
        "get": {
            "operationId": "compatGetJsonFromFileEmpty",
            "summary": "An empty path: 400 in the original app's shape",
            "tags": ["compatibility"],
            "responses": {"400": _original("No path.", "invalid file name: …"), **_DENIED},
        },
    },
    "/uploadFiles": {
        "post": {
            "operationId": "compatUploadFiles",
            "summary": "Upload files in the original app's shape",
            "description": (
                "API.md section 6. Each file of FILES_LIST is stored at the store's root as "
                "FILE_NAME + the last segment of its filename without spaces, replacing an "
                "existing one. Errors keep the original's shape, not problem+json."
            ),
            "tags": ["compatibility"],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["FILES_LIST"],
                            "properties": {
                                "FILES_LIST": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                },
                                "FILE_NAME": {"type": "string", "description": "A prefix"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": (
                        "The files stored (SAVED_FILES); ERROR_FILES_LIST is empty, or a comma "
                        "before each failed file's filename as sent."
                    ),
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["STATUS", "ERROR_FILES_LIST", "SAVED_FILES"],
                                "properties": {
                                    "STATUS": {"const": "true"},
                                    "ERROR_FILES_LIST": {"type": "string"},
                                    "SAVED_FILES": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                            "example": {
                                "STATUS": "true",
                                "ERROR_FILES_LIST": "",
                                "SAVED_FILES": ["new_filefile1.jpg", "new_filefile2.jpg"],
                            },
                        }
                    },
                },
                "400": _original(
                    "Not multipart, no files, a malformed body or a bad FILE_NAME.",
                    "no files in FILES_LIST",
                ),
                **_DENIED,
                "413": _original(
                    "The body is over max_upload_bytes.", "the body is larger than 1024 bytes"
                ),
            },
        }
    },
}
