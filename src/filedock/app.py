"""create_app(): assembles the Flask app and does nothing else."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from . import access, context, errors, hotpath, metrics, request_ids, web
from .api import compat, docs, documents, files, health, presign, tus, whoami
from .config import Settings
from .routing import AnyPathConverter, came_from_utf8
from .storage import InvalidKey, check_key, open_storage

EXPOSED_HEADERS = [
    "ETag",
    "Location",
    "Content-Range",
    "Content-Digest",
    "Content-Disposition",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Expires",
    "Upload-Metadata",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "X-Request-ID",
]


def create_app(settings: Settings | None = None) -> Flask:
    """The filedock WSGI application for these settings (from the environment by default)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.url_map.converters["anypath"] = AnyPathConverter
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # Bounds for any handler that parses a form with Werkzeug (uploads use multipart.py's
    # streaming reader, which has its own bounds).
    app.config["MAX_FORM_MEMORY_SIZE"] = 64 << 10
    app.config["MAX_FORM_PARTS"] = 1000
    storage = open_storage(settings)
    context.init_app(app, settings, storage)
    errors.init_app(app)
    request_ids.init_app(app)
    metrics.init_app(app)
    if settings.cors_origins != ("*",):
        app.after_request(vary_on_origin)  # registered first, so it runs after Flask-CORS
    CORS(
        app,
        origins=list(settings.cors_origins),
        send_wildcard=settings.cors_origins == ("*",),
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    app.after_request(no_type_without_content)
    app.url_value_preprocessor(check_key_argument)
    access.init_app(app, settings)
    app.before_request(refuse_writes_when_read_only)
    blueprints = (health.bp, compat.bp, files.bp, documents.bp, tus.bp, presign.bp, docs.bp)
    for blueprint in (*blueprints, whoami.bp, web.bp):
        app.register_blueprint(blueprint)
    hotpath.install(app, settings, storage, EXPOSED_HEADERS)
    trust_proxies(app, settings.trusted_proxies)
    return app


def trust_proxies(app: Flask, hops: int) -> None:
    """Behind `hops` proxies, take the client's address, scheme, host, port and path prefix
    from the X-Forwarded-* headers they add (the last `hops` values of each, so a client
    cannot forge its way past the proxies). ProxyFix rewrites the WSGI environ in place, so
    the access log shows the real client too."""
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )


def vary_on_origin(response: Response) -> Response:
    """With a list of origins the CORS headers depend on Origin (present for one, absent for
    another), so every answer says so to caches, once; Flask-CORS only does it for some."""
    listed = ",".join(response.headers.getlist("Vary")).split(",")
    if "origin" not in {item.strip().lower() for item in listed}:
        response.headers.add("Vary", "Origin")
    return response


def no_type_without_content(response: Response) -> Response:
    """A 204 has no content, so it names no media type (Flask gives every answer one)."""
    if response.status_code == 204:
        response.headers.pop("Content-Type", None)
    return response


def check_key_argument(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Validate the `key` URL argument of every native route, once, before any handler runs."""
    if values is None or "key" not in values:
        return
    key = values["key"]
    if not came_from_utf8(key):
        raise InvalidKey("the path is not valid UTF-8")
    values["key"] = check_key(key)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST endpoints that write nothing themselves (presign refuses PUT links when read-only).
READ_ONLY_EXEMPT = frozenset({"presign.post_presign"})


def refuse_writes_when_read_only() -> Response | tuple[Response, int] | None:
    """With read_only set, every write is 403 read-only (an X-HTTP-Method-Override too)."""
    if not context.get_settings().read_only or request.endpoint in READ_ONLY_EXEMPT:
        return None
    if access.effective_methods() <= SAFE_METHODS:
        return None
    if request.blueprint == "compat":
        return compat.compat_error(403, "the server is read-only")
    return errors.problem(403, "read-only", "the server is read-only")
