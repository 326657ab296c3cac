"""GET /api/v1/whoami: what the caller may do (API.md section 8), for clients such as the
web UI that show only what a token allows."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from .. import access, auth
from ..openapi import problem_response

bp = Blueprint("whoami", __name__)


@bp.get("/api/v1/whoami")
@access.deferred()
def get_whoami() -> dict[str, Any]:
    """The caller's scopes and path prefix; anonymous with every scope on an open server."""
    token = access.current_token()
    if token is None:
        return {"anonymous": True, "scopes": list(auth.SCOPES), "prefix": None, "name": None}
    # admin implies read and write, so the answer lists them too: a client need not know that.
    scopes = [scope for scope in auth.SCOPES if auth.has_scope(token, scope)]
    return {
        "anonymous": False,
        "scopes": scopes,
        "prefix": token.prefix or None,
        "name": token.name or None,
    }


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/whoami": {
        "get": {
            "operationId": "get_whoami",
            "summary": "What the caller may do",
            "description": (
                "The caller's scopes (admin lists read and write too) and path prefix, so a "
                "client can show only what its token allows. With no tokens configured the "
                "caller is anonymous with every scope. A missing or unknown token is 401 on a "
                "server with tokens."
            ),
            "tags": ["auth"],
            "security": [{"bearer": []}, {"basic": []}, {}],
            "responses": {
                "200": {
                    "description": "The caller's permissions.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/Whoami"},
                            "example": {
                                "anonymous": False,
                                "scopes": ["read", "write"],
                                "prefix": "team-a",
                                "name": "team-a-uploader",
                            },
                        }
                    },
                },
                "401": problem_response("No token, or an unknown one, on a server with tokens."),
                "403": problem_response("A signed link: it is valid only for its own path."),
            },
        }
    }
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Whoami": {
        "type": "object",
        "required": ["anonymous", "scopes", "prefix", "name"],
        "properties": {
            "anonymous": {"type": "boolean", "description": "True when no tokens are configured."},
            "scopes": {
                "type": "array",
                "items": {"type": "string", "enum": list(auth.SCOPES)},
                "description": "What the caller may do (admin lists read and write too).",
            },
            "prefix": {"type": ["string", "null"], "description": "The token's path prefix."},
            "name": {"type": ["string", "null"], "description": "The token's name."},
        },
    }
}
