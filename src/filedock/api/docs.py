"""The OpenAPI document and the offline docs page that renders it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template

from ..openapi import build_document

bp = Blueprint("docs", __name__)

# The page loads only its own assets: this policy makes any outside fetch fail loudly.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@bp.get("/api/v1/openapi.json")
def get_openapi() -> Response:
    """The OpenAPI 3.1 document of every native endpoint."""
    return jsonify(build_document())


@bp.get("/docs")
def get_docs() -> Response:
    """A page rendering the OpenAPI document with the bundled Swagger UI (no CDN)."""
    response = Response(render_template("docs.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "getOpenapi",
            "summary": "This OpenAPI 3.1 document",
            "tags": ["docs"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/docs": {
        "get": {
            "operationId": "getDocs",
            "summary": "This document, rendered by the bundled Swagger UI (works offline)",
            "tags": ["docs"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The page; its assets are under /static/docs/.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}
