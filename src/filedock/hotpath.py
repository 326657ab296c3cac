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
place that decides refusals and errors; tests compare the answers of both paths.

A plain `PUT /api/v1/files/<key>` (a body of declared length, no precondition, digest or
`Expect`) goes the same way: the app's part of a 100 KiB upload cost about 0.3 ms of CPU, as
much as storing it durably. Anything refused before a byte of the body is read is handed to
the app untouched; an error once the body is being read is answered by the app's own error
handlers and after-request hooks, as it would have answered it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from flask import Flask, Response

from . import access, auth, jsondocs, mediatypes, metrics, request_ids
from .api import compat
from .api.documents import ACCEPT_PATCH
from .api.shapes import metadata_json
from .bodies import BodyReader
from .config import Settings
from .routing import AnyPathConverter
from .storage import ANYTHING, InvalidKey, Key, Storage, check_key

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
        # answer(cached_only=True) may be asked in a loop that must not wait on a network
        self.stat_is_local: bool = getattr(storage, "stat_is_local", False)
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
        found = self.answer(environ)
        if found is None:
            return self.app(environ, start_response)
        headers, body = found
        start_response("200 OK", headers)
        return [body]

    def answer(
        self, environ: dict[str, Any], cached_only: bool = False
    ) -> tuple[list[tuple[str, str]], bytes] | None:
        """The headers and body of the 200 for a plain GET of a document (counted in the
        metrics, its request ID in environ), or None for the app to answer. cached_only: also
        None unless the document's current version is cached, checked and its body made, so
        that nothing is read or parsed (the worker's main loop asks so)."""
        path: str = environ.get("PATH_INFO", "")
        prefix = NATIVE if path.startswith(NATIVE) else COMPAT if path.startswith(COMPAT) else ""
        key = self._key(environ, path, prefix) if prefix else None
        if key is None:
            return None
        try:
            if not _may(self.tokens, environ, auth.READ, key):
                return None
            if cached_only:
                doc = jsondocs.cached_document(self.storage, key, self.max_bytes)
                if doc is None or not doc.checked or (prefix == COMPAT and not doc.made("compat")):
                    return None
            else:
                doc = jsondocs.get_document(self.storage, key, self.max_bytes)
            doc.check()
            if prefix == NATIVE:
                body = doc.data
                headers = [("ETag", doc.etag), ("Accept-Patch", ACCEPT_PATCH)]
            else:
                body = doc.derived("compat", self._compat_body)
                headers = []
        except Exception:  # noqa: BLE001 - the app answers it (404, 413, 422, 503...) itself
            return None
        request_id = request_ids.sane(environ.get("HTTP_X_REQUEST_ID")) or request_ids.new_id()
        environ[request_ids.ENVIRON_KEY] = request_id
        self.metrics.count_answer(self.routes[prefix], "GET", 200, len(body))
        return [
            ("Content-Type", jsondocs.JSON),
            ("Content-Length", str(len(body))),
            *headers,
            *self.cors,
            (request_ids.HEADER, request_id),
        ], body

    def _key(self, environ: dict[str, Any], path: str, prefix: str) -> Key | None:
        """The document's key if this request is a plain GET of one, else None."""
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("QUERY_STRING")
            or environ.get("CONTENT_LENGTH", "") not in ("", "0")
            or any(name in environ for name in DECLINED_HEADERS)
        ):
            return None
        return _checked_key(path[len(prefix) :])

    def _compat_body(self, doc: jsondocs.Document) -> bytes:
        """The original endpoint's answer, made by the app's own code (once per version)."""
        with self.flask_app.app_context():
            return compat.labels_mapping_body(doc)


FILES = "/api/v1/files/"
PUT_ENDPOINT = "files.put_file"
# Besides DECLINED_HEADERS: what a plain upload does not carry (the app handles them).
DECLINED_UPLOAD_HEADERS = ("HTTP_EXPECT", "HTTP_CONTENT_DIGEST", "HTTP_CONTENT_ENCODING")


class _Counted(BodyReader):
    """The body, counted into the received-bytes metric as the app's input stream counts it."""

    def __init__(self, environ: dict[str, Any], length: int, counter: Any) -> None:
        super().__init__(environ["wsgi.input"], length)
        self._counter = counter

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        if data:
            self._counter.inc(len(data))
        return data


class FilePuts:
    """WSGI middleware answering plain raw uploads (PUT /api/v1/files/<key>) as the app would."""

    def __init__(
        self, app: WsgiApp, flask_app: Flask, settings: Settings, storage: Storage,
        cors: list[tuple[str, str]],
    ) -> None:  # fmt: skip
        self.app = app
        self.flask_app = flask_app
        self.storage = storage
        self.max_bytes = settings.max_upload_bytes
        self.tokens: access.TokenSource = flask_app.extensions[access.EXTENSION]
        self.metrics: metrics.Metrics = flask_app.extensions[metrics.EXTENSION]
        self.route = next(
            r.rule for r in flask_app.url_map.iter_rules() if r.endpoint == PUT_ENDPOINT
        )
        self.to_url = AnyPathConverter(flask_app.url_map).to_url  # as url_for quotes a key
        self.cors = cors

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        key = self._key(environ, path) if path.startswith(FILES) else None
        if key is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        body = _Counted(environ, int(environ["CONTENT_LENGTH"]), self.metrics.received)
        try:
            if not _may(self.tokens, environ, auth.WRITE, key):
                return self.app(environ, start_response)
            content_type = mediatypes.choose_type(key, environ.get("CONTENT_TYPE"))
            info = self.storage.put(key, body, content_type, ANYTHING, self.max_bytes)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the app answers it, as it would have
            if body.received == 0 and not body.incomplete:
                return self.app(environ, start_response)  # nothing read: the app starts over
            return self._app_answers(environ, start_response, exc)
        status = 201 if info.created else 200
        answer = cast(Response, self.flask_app.json.response(metadata_json(info)))
        payload = answer.get_data()  # the bytes jsonify gives
        request_id = request_ids.sane(environ.get("HTTP_X_REQUEST_ID")) or request_ids.new_id()
        environ[request_ids.ENVIRON_KEY] = request_id
        location = environ.get("SCRIPT_NAME", "") + FILES + self.to_url(key)
        start_response(
            "201 CREATED" if status == 201 else "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("ETag", info.etag),
                ("Location", location),
                *self.cors,
                (request_ids.HEADER, request_id),
            ],
        )
        self.metrics.count_answer(self.route, "PUT", status, len(payload))
        self.metrics.observe_upload(self.route, time.perf_counter() - started)
        return [payload]

    def _key(self, environ: dict[str, Any], path: str) -> Key | None:
        """The key if this request is a plain upload of a declared length, else None."""
        length = environ.get("CONTENT_LENGTH", "")
        if (
            environ.get("REQUEST_METHOD") != "PUT"
            or environ.get("QUERY_STRING")
            or not length.isdigit()
            or int(length) > self.max_bytes
            or any(name in environ for name in DECLINED_HEADERS)
            or any(name in environ for name in DECLINED_UPLOAD_HEADERS)
        ):
            return None
        return _checked_key(path[len(FILES) :])

    def _app_answers(
        self, environ: dict[str, Any], start_response: StartResponse, exc: Exception
    ) -> Iterable[bytes]:
        """The app's answer to exc, raised while this request's body was being stored: its
        error handlers, then its after-request hooks (CORS, request id, metrics)."""
        app = self.flask_app
        environ.setdefault(metrics.STARTED_KEY, time.perf_counter())
        with app.request_context(environ):
            try:
                answer = app.handle_user_exception(exc)
            except Exception as unhandled:  # noqa: BLE001 - a 500, as the app would give
                answer = app.handle_exception(unhandled)
            response = app.process_response(app.make_response(answer))
        return response(environ, start_response)


def _checked_key(raw: str) -> Key | None:
    """raw (a WSGI path, latin-1) as a valid key, or None (the app says why it is not)."""
    try:
        return check_key(raw.encode("latin-1").decode("utf-8"))
    except (UnicodeEncodeError, UnicodeDecodeError, InvalidKey):
        return None


def _may(tokens: access.TokenSource, environ: dict[str, Any], scope: str, key: Key) -> bool:
    """Would the app let this request use scope on key? (When not, it says why itself.)"""
    enabled, known, store_unread = tokens.current()
    if not enabled:
        return True
    if store_unread:
        return False
    presented = auth.credential_from_header(environ.get("HTTP_AUTHORIZATION"))
    if presented is None:
        return False
    token = auth.find_token(known, presented)
    return token is not None and auth.permits(token, scope, key)


def install(
    app: Flask, settings: Settings, storage: Storage, exposed_headers: Iterable[str]
) -> None:
    """Answer plain document GETs and plain uploads in front of the app, when their CORS
    headers are the same for every caller (the default, any origin; with listed origins they
    depend on Origin), uploads only when the server takes writes."""
    if settings.cors_origins != ("*",):
        return
    gets = DocumentGets(app.wsgi_app, app, settings, storage, exposed_headers)
    if not settings.read_only:
        gets.app = FilePuts(gets.app, app, settings, storage, gets.cors)
    app.wsgi_app = gets  # type: ignore[method-assign]
