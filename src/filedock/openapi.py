"""The OpenAPI 3.1 document of every endpoint, assembled from the API modules' fragments.

Each module listed in FRAGMENT_MODULES defines, at module level,
`OPENAPI_PATHS: dict[str, Any]` (path items keyed by OpenAPI path, e.g.
"/api/v1/files/{path}") and optionally `OPENAPI_SCHEMAS: dict[str, Any]` (entries of
components/schemas). The helpers below keep the shared pieces (the problem+json error,
the `{path}` parameter) identical everywhere."""

from __future__ import annotations

import copy
import functools
import importlib
import re
from typing import Any

from . import __version__
from .errors import HTTP_CODES, problem_body

# Every module that documents endpoints, one a line. Add yours here.
FRAGMENT_MODULES: tuple[str, ...] = (
    "filedock.api.files",
    "filedock.api.documents",
    "filedock.api.tus",
    "filedock.api.presign",
    "filedock.api.docs",
    "filedock.api.health",
    "filedock.api.compat",
    "filedock.api.whoami",
    "filedock.openapi",  # OPENAPI_PATHS, below: the web UI's page
)

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem; `code` is stable and machine-readable (API.md section 2).",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string", "const": "about:blank"},
        "title": {"type": "string", "description": "The HTTP reason phrase of `status`."},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
}

# The stable problem codes (API.md section 2, and `not-ready` of /readyz).
CODES = frozenset(
    {
        "invalid-path", "not-found", "conflict", "exists", "too-large", "precondition-failed",
        "digest-mismatch", "invalid-json", "invalid-patch", "patch-test-failed",
        "pointer-not-found", "unsupported-media-type", "range-not-satisfiable", "unauthorized",
        "forbidden", "method-not-allowed", "insufficient-storage", "read-only", "bad-request",
        "internal", "not-ready",
    }
)  # fmt: skip
# The code of a status whose description names none.
STATUS_CODES: dict[int, str] = HTTP_CODES | {
    423: "conflict",
    460: "digest-mismatch",
    500: "internal",
    503: "not-ready",
}
# A detail for the examples, per code, in the words the server uses.
EXAMPLE_DETAILS: dict[str, str] = {
    "invalid-path": "a path may not have a '..' segment",
    "not-found": "no object at images/cat.jpg",
    "pointer-not-found": "nothing at /labels/7",
    "unauthorized": "this request needs a token",
    "forbidden": "this token may not write images/cat.jpg",
    "read-only": "the server is read-only",
    "precondition-failed": "the object's ETag is not one of If-Match's",
    "too-large": "the body is larger than 10737418240 bytes",
    "internal": "the server failed; the request id is in its log",
    "not-ready": "the store is not reachable or not writable",
}
_NAMED_CODE = re.compile(r"`([a-z-]+)`|(?:^|; )([a-z-]+):")

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


def problem_example(status: int, description: str) -> dict[str, Any]:
    """A problem as the server sends it for this status: the first code the description
    names (`code` or code: ...), else the status's usual one."""
    named = [a or b for a, b in _NAMED_CODE.findall(description)]
    code = next((c for c in named if c in CODES), STATUS_CODES.get(status, "bad-request"))
    return problem_body(status, code, EXAMPLE_DETAILS.get(code))


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
            responses = item[method].setdefault("responses", {})
            responses.setdefault("default", problem_response("Any other error, as problem+json"))
            add_problem_examples(responses)


def add_problem_examples(responses: dict[str, Any]) -> None:
    """Give each problem response with a status an example of its own: without one, a docs
    page makes one up from the schema, the same for every status."""
    for status, response in responses.items():
        media = response.get("content", {}).get("application/problem+json")
        if status.isdigit() and media is not None and "example" not in media:
            media["example"] = problem_example(int(status), response.get("description", ""))


# The web UI's page (API.md section 12); its blueprint serves HTML and assets, no API.
OPENAPI_PATHS: dict[str, Any] = {
    "/": {
        "get": {
            "operationId": "getWebUi",
            "summary": "The web UI: browse, upload, share and edit files in a browser",
            "tags": ["ui"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The page (its assets are served by filedock too).",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}
