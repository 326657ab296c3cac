"""The OpenAPI 3.1 document of the native API, assembled from the API modules' fragments.

Each module listed in FRAGMENT_MODULES defines, at module level,
`OPENAPI_PATHS: dict[str, Any]` (path items keyed by OpenAPI path, e.g.
"/api/v1/files/{path}") and optionally `OPENAPI_SCHEMAS: dict[str, Any]` (entries of
components/schemas). The helpers below keep the shared pieces (the problem+json error,
the `{path}` parameter) identical everywhere."""

from __future__ import annotations

import copy
import functools
import importlib
from typing import Any

from . import __version__

# Every module that documents endpoints, one a line. Add yours here.
FRAGMENT_MODULES: tuple[str, ...] = (
    "filedock.api.files",
    "filedock.api.documents",
    "filedock.api.tus",
    "filedock.api.presign",
    "filedock.api.docs",
    "filedock.api.whoami",
)

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem; `code` is stable and machine-readable (API.md section 2).",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string", "examples": ["about:blank"]},
        "title": {"type": "string", "examples": ["Not Found"]},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "examples": ["not-found"]},
    },
}

REASONS: dict[int, str] = {
    400: "Bad request: `invalid-path`, `bad-request`, `digest-mismatch`",
    401: "No or unknown token: `unauthorized`",
    403: "Not allowed: `forbidden`, or `read-only` when the server is read-only",
    404: "No object at that path: `not-found`",
    405: "Method not allowed: `method-not-allowed`",
    409: "The path collides with the tree: `conflict`",
    412: "A precondition did not hold: `precondition-failed`",
    413: "The body is larger than `max_upload_bytes`: `too-large`",
    415: "Unsupported media type: `unsupported-media-type`",
    416: "The range selects no byte of the object: `range-not-satisfiable`",
    500: "The server failed: `internal`",
    507: "The store is full: `insufficient-storage`; nothing was stored",
}

PATH_PARAMETER: dict[str, Any] = {
    "name": "path",
    "in": "path",
    "required": True,
    "description": (
        "The object's path (API.md section 1). Its slashes may be sent as they are or as "
        "%2F: the URL path is percent-decoded exactly once."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 1024},
}


def problem_response(description: str) -> dict[str, Any]:
    """A response whose body is application/problem+json."""
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def problem_responses(*statuses: int) -> dict[str, Any]:
    """Problem responses for these statuses, keyed as OpenAPI wants them."""
    return {str(status): problem_response(REASONS[status]) for status in statuses}


def header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response header object."""
    return {"description": description, "schema": schema or {"type": "string"}}


def header_parameter(name: str, description: str) -> dict[str, Any]:
    """An optional request header parameter."""
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string"}}  # fmt: skip


@functools.cache
def build_document() -> dict[str, Any]:
    """The whole document: every fragment module's paths and schemas, merged."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "filedock",
            "version": __version__,
            "description": (
                "Files and JSON documents over HTTP. Errors are RFC 9457 problem+json with "
                "a stable `code`."
            ),
        },
        "paths": {},
        "components": {"schemas": {"Problem": PROBLEM_SCHEMA}, "securitySchemes": {}},
        # A server with tokens wants one of them; a server without tokens (loopback) wants none.
        "security": [{"bearer": []}, {"basic": []}, {}],
    }
    for name in FRAGMENT_MODULES:
        module = importlib.import_module(name)
        merge_paths(document["paths"], getattr(module, "OPENAPI_PATHS", {}), name)
        schemas = document["components"]["schemas"]
        for schema_name, schema in getattr(module, "OPENAPI_SCHEMAS", {}).items():
            if schemas.get(schema_name, schema) != schema:
                raise ValueError(f"{name} redefines the schema {schema_name}")
            schemas[schema_name] = schema
        document["components"]["securitySchemes"].update(
            getattr(module, "OPENAPI_SECURITY_SCHEMES", {})
        )
    for item in document["paths"].values():
        complete_path_item(item)
    return document


def merge_paths(paths: dict[str, Any], fragment: dict[str, Any], module: str) -> None:
    """Add a module's path items; two modules may share a path but not an operation."""
    for path, item in fragment.items():
        target = paths.setdefault(path, {})
        for key, value in copy.deepcopy(item).items():
            if key in target and key != "parameters":
                raise ValueError(f"{module} redefines {key} {path}")
            target[key] = value


METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def complete_path_item(item: dict[str, Any]) -> None:
    """HEAD wherever GET is (the server answers it: Werkzeug adds it to every GET route), and
    a problem+json default response on every operation."""
    if "get" in item and "head" not in item:
        head = copy.deepcopy(item["get"])
        head["operationId"] = head.get("operationId", "get") + "Head"
        head["summary"] = "Headers of: " + head.get("summary", "GET")
        for response in head.get("responses", {}).values():
            response.pop("content", None)
        item["head"] = head
    for method in METHODS:
        if method in item:
            item[method].setdefault("responses", {}).setdefault(
                "default", problem_response("Any other error, as problem+json")
            )
