"""The web UI (API.md section 12): one page at `/` that drives the API from the browser."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from . import access

bp = Blueprint("web", __name__)

# Only the page's own scripts and styles run: no inline code, nothing from elsewhere, so a
# file name or a document that slipped into the markup could not execute.
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/")
@access.public
def get_index() -> Response:
    """The web UI's page; it asks for a token itself when the server needs one."""
    response = Response(render_template("index.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = UI_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response
