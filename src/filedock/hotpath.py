"""JSON document GETs without the framework: the most frequent request, answered in plain WSGI.

A plain `GET /api/v1/json/<key>` (or the original `GET /getJsonFromFile/<name>`) is what ML
and web apps send over and over for the same few documents. Through Flask the app's part of
such a request cost about 120 µs (a request context, URL routing, the before- and
after-request hooks, a Response object) for an answer that is the cached document with
constant headers; here it costs about 10 µs. This answers exactly the requests whose answer
it can give byte for byte as the app would (a 200 with the document, to a caller the app lets
read it) and hands every other request to the app untouched: a query string (a pointer, a
signed link), conditional or range headers, a body, a method override, an unknown token, a
missing or invalid document, listed CORS origins, anything that raises. The app stays the one
place that decides refusals and errors; tests compare the answers of both paths."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from . import access, auth, jsondocs, metrics, request_ids
from .api import compat
from .api.documents import ACCEPT_PATCH
from .config import Settings
from .storage import InvalidKey, Key, Storage, check_key

NATIVE, COMPAT = "/api/v1/json/", "/getJsonFromFile/"
ENDPOINTS = {NATIVE: "documents.get_document", COMPAT: "compat.get_json_from_file"}
# Request headers that change the answer (or need the app's checks): the app answers them.
DECLINED_HEADERS = (
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_RANGE",
    "HTTP_RANGE",
    "HTTP_X_HTTP_METHOD_OVERRIDE",
    "HTTP_TRANSFER_ENCODING",
)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class DocumentGets:
    """WSGI middleware in front of the app's own wsgi_app (inside any proxy fix-up)."""

    def __init__(
        self,
        app: WsgiApp,
        flask_app: Flask,
        settings: Settings,
        storage: Storage,
        exposed_headers: Iterable[str],
    ) -> None:
        self.app = app
        self.storage = storage
        self.max_bytes = settings.max_json_bytes
        self.tokens: access.TokenSource = flask_app.extensions[access.EXTENSION]
        self.metrics: metrics.Metrics = flask_app.extensions[metrics.EXTENSION]
        self.flask_app = flask_app
        rules = {r.endpoint: r.rule for r in flask_app.url_map.iter_rules() if "<" in r.rule}
        self.routes = {prefix: rules[endpoint] for prefix, endpoint in ENDPOINTS.items()}
        self.cors: list[tuple[str, str]] = [("Access-Control-Allow-Origin", "*")]
        exposed = ", ".join(sorted(exposed_headers))  # as Flask-CORS writes them
        if exposed:
            self.cors.append(("Access-Control-Expose-Headers", exposed))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        prefix = NATIVE if path.startswith(NATIVE) else COMPAT if path.startswith(COMPAT) else ""
        key = self._key(environ, path, prefix) if prefix else None
        if key is None:
            return self.app(environ, start_response)
        try:
            if not self._may_read(environ, key):
                return self.app(environ, start_response)
            doc = jsondocs.get_document(self.storage, key, self.max_bytes)
            doc.check()
            if prefix == NATIVE:
                body = doc.data
                headers = [("ETag", doc.etag), ("Accept-Patch", ACCEPT_PATCH)]
            else:
                body = doc.derived("compat", self._compat_body)
                headers = []
        except Exception:  # noqa: BLE001 - the app answers it (404, 413, 422, 503...) itself
            return self.app(environ, start_response)
        request_id = request_ids.sane(environ.get("HTTP_X_REQUEST_ID")) or request_ids.new_id()
        environ[request_ids.ENVIRON_KEY] = request_id
        start_response(
            "200 OK",
            [
                ("Content-Type", jsondocs.JSON),
                ("Content-Length", str(len(body))),
                *headers,
                *self.cors,
                (request_ids.HEADER, request_id),
            ],
        )
        self.metrics.count_answer(self.routes[prefix], "GET", 200, len(body))
        return [body]

    def _key(self, environ: dict[str, Any], path: str, prefix: str) -> Key | None:
        """The document's key if this request is a plain GET of one, else None."""
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("QUERY_STRING")
            or environ.get("CONTENT_LENGTH", "") not in ("", "0")
            or any(name in environ for name in DECLINED_HEADERS)
        ):
            return None
        try:
            return check_key(path[len(prefix) :].encode("latin-1").decode("utf-8"))
        except (UnicodeEncodeError, UnicodeDecodeError, InvalidKey):
            return None

    def _compat_body(self, doc: jsondocs.Document) -> bytes:
        """The original endpoint's answer, made by the app's own code (once per version)."""
        with self.flask_app.app_context():
            return compat.labels_mapping_body(doc)

    def _may_read(self, environ: dict[str, Any], key: Key) -> bool:
        """Would the app let this request read key? (When not, it says why itself.)"""
        enabled, tokens, store_unread = self.tokens.current()
        if not enabled:
            return True
        if store_unread:
            return False
        presented = auth.credential_from_header(environ.get("HTTP_AUTHORIZATION"))
        if presented is None:
            return False
        token = auth.find_token(tokens, presented)
        return token is not None and auth.permits(token, auth.READ, key)


def install(
    app: Flask, settings: Settings, storage: Storage, exposed_headers: Iterable[str]
) -> None:
    """Answer plain document GETs in front of the app, when their CORS headers are the same
    for every caller (the default, any origin); with listed origins they depend on Origin."""
    if settings.cors_origins == ("*",):
        app.wsgi_app = DocumentGets(  # type: ignore[method-assign]
            app.wsgi_app, app, settings, storage, exposed_headers
        )
