"""Auth over HTTP: one before_request hook decides every request from auth.py's rules.

By default a route with a `key` URL argument needs `read` (GET, HEAD) or `write` (any other
method) on that key, and any other route needs that scope on the whole store. Endpoints that
differ say so with a decorator:

- `@public`: no credentials needed (health probes, docs).
- `@key_argument("filename")`: the key is in another URL argument.
- `@deferred(scope)`: the hook only checks that the caller holds `scope` somewhere (or, with
  None, just that the caller is known); the handler then calls `require(scope, key)` or
  `allowed(scope, key)` for each key it touches (listings, multipart uploads, tus, presign).

A request carries a token (`Authorization: Bearer` or Basic with the token as password) or
is a signed link (`?expires=...&signature=...`) for exactly one method on one key."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from flask import Flask, Response, current_app, g, request

from . import auth, tokenstore
from .config import ConfigError, Settings, Token, read_toml
from .context import get_settings, get_storage
from .errors import ApiError, problem
from .storage import ABSENT, AlreadyExists, InvalidKey, Records, Storage, check_key

log = logging.getLogger("filedock")

EXTENSION = "filedock.access"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/api/v1/openapi.json"})
OVERRIDE_HEADER = "X-HTTP-Method-Override"
WWW_AUTHENTICATE = 'Bearer realm="filedock", Basic realm="filedock"'
RULE_ATTRIBUTE = "_filedock_access"
FILES_URL = "/api/v1/files/"

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class Rule:
    """How the hook treats one endpoint."""

    public: bool = False
    deferred: bool = False
    scope: str | None = None
    key_argument: str = "key"


DEFAULT_RULE = Rule()


def _mark(view: View, rule: Rule) -> View:
    setattr(view, RULE_ATTRIBUTE, rule)
    return view


def public(view: View) -> View:
    """Mark a view as open to everyone, tokens or not."""
    return _mark(view, Rule(public=True))


def deferred(scope: str | None = None) -> Callable[[View], View]:
    """Mark a view whose handler checks each key itself with require() / allowed()."""
    return lambda view: _mark(view, Rule(deferred=True, scope=scope))


def key_argument(name: str) -> Callable[[View], View]:
    """Mark a view whose key is the URL argument `name` instead of `key`."""
    return lambda view: _mark(view, Rule(key_argument=name))


class AccessDenied(ApiError):
    """A 401 unauthorized (with WWW-Authenticate) or 403 forbidden."""

    @classmethod
    def unauthorized(cls, detail: str) -> AccessDenied:
        """401: no usable credentials."""
        return cls(401, "unauthorized", detail, {"WWW-Authenticate": WWW_AUTHENTICATE})

    @classmethod
    def forbidden(cls, detail: str) -> AccessDenied:
        """403: the credentials do not allow this."""
        return cls(403, "forbidden", detail)


class TokenSource:
    """The configured tokens, re-read from the config file when it changes, so that
    `filedock token revoke` takes effect without a restart, and those kept in the store
    (tokenstore.py), re-read every few seconds. Once a server has had tokens it never turns
    open again: revoking the last token locks it."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        auth.validate_tokens(settings.tokens)
        self._tokens = settings.tokens
        self._path = settings.config_file
        self._signature = self._stat()
        self._store = None
        if isinstance(storage, Records):
            self._store = tokenstore.StoreTokens(storage, settings.store)
        self._enabled = bool(settings.tokens) or bool(self._store and self._store.known())
        self._lock = threading.Lock()
        self.secret: bytes | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        if not self._path:
            return None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> tuple[bool, tuple[Token, ...], bool]:
        """(is auth on, the tokens, whether the store's tokens are missing from them because
        they could not be read lately: then an unknown token may be one of them)."""
        if self._path:
            signature = self._stat()
            if signature != self._signature:
                with self._lock:
                    self._reload(signature)
        if self._store is None:
            return self._enabled, self._tokens, False
        try:
            stored = self._store.current()
        except tokenstore.StoreTokensUnavailable:
            return True, self._tokens, True  # the store may hold tokens now: never open
        self._enabled = self._enabled or bool(stored)
        return self._enabled, self._tokens + stored, False

    def _reload(self, signature: tuple[int, int, int] | None) -> None:
        if signature == self._signature:
            return
        try:
            data = read_toml(self._path) if signature is not None else {}
            tokens = Settings.from_dict({"tokens": data.get("tokens", [])}).tokens
            auth.validate_tokens(tokens)
        except ConfigError as exc:
            log.warning("keeping the previous tokens: %s", exc)
            self._signature = signature
            return
        self._tokens, self._signature = tokens, signature
        self._enabled = self._enabled or bool(tokens)


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token, a signed link, or anyone (no tokens configured)."""

    token: Token | None = None
    grant: auth.Grant | None = None

    def may(self, scope: str, key: str | None) -> bool:
        """May this principal use scope on key (None: the whole store)?"""
        if self.token is not None:
            return auth.permits(self.token, scope, key)
        if self.grant is not None:
            return key == self.grant.key and scope == auth.scope_for_method(self.grant.method)
        return True


ANYONE = Principal()


def init_app(app: Flask, settings: Settings) -> None:
    """Load the tokens and check every request."""
    app.extensions[EXTENSION] = TokenSource(settings, get_storage_of(app))
    app.before_request(check_request)


def get_storage_of(app: Flask) -> Storage:
    """The store attached to app by context.init_app (before any request)."""
    with app.app_context():
        return get_storage()


def _source() -> TokenSource:
    source: TokenSource = current_app.extensions[EXTENSION]
    return source


def effective_methods() -> set[str]:
    """The request's method and, if present, its X-HTTP-Method-Override: a token must be
    allowed both, so an override can never reach a verb the token may not use."""
    methods = {request.method.upper()}
    override = request.headers.get(OVERRIDE_HEADER)
    if override is not None:
        methods.add(override.strip().upper())
    return methods


def _rule() -> Rule:
    view = current_app.view_functions.get(request.endpoint or "")
    rule = getattr(view, RULE_ATTRIBUTE, DEFAULT_RULE)
    if not isinstance(rule, Rule):
        return DEFAULT_RULE
    return rule


def _is_public(rule: Rule) -> bool:
    endpoint = request.endpoint or ""
    return (
        rule.public
        or (request.path.rstrip("/") or "/") in PUBLIC_PATHS
        or endpoint == "static"
        or endpoint.endswith(".static")
    )


def _request_key(rule: Rule) -> str | None:
    value = (request.view_args or {}).get(rule.key_argument)
    if not isinstance(value, str):
        return None
    if rule.key_argument == "key":
        return value  # app.check_key_argument validated it before any before_request hook
    try:
        return check_key(value)
    except InvalidKey:
        return None  # the handler answers 400; only an unprefixed token gets that far


def _token_principal(tokens: tuple[Token, ...], store_unread: bool) -> Principal:
    presented = auth.credential_from_header(request.headers.get("Authorization"))
    unread = ApiError(
        503,
        "store-unavailable",
        "the tokens kept in the store cannot be read; try again",
        {"Retry-After": "5"},
    )
    if presented is None and store_unread and not tokens:
        raise unread  # the store decides whether this server needs a token at all
    if presented is None:
        raise auth.Unauthorized("this server needs a token: Authorization: Bearer <token>")
    token = auth.find_token(tokens, presented)
    if token is None and store_unread:
        raise unread  # it may be a token of the store: neither accept it nor call it unknown
    if token is None:
        raise auth.Unauthorized("unknown token")
    return Principal(token=token)


def _signed_principal(rule: Rule, key: str | None, methods: set[str]) -> Principal:
    if rule.deferred or key is None:
        raise auth.Forbidden("a signed link is not valid for this endpoint")
    if len(methods) != 1:
        raise auth.Forbidden("a signed link cannot be used with a method override")
    grant = auth.verify(
        presign_secret(),
        request.method.upper(),
        key,
        request.args.get(auth.EXPIRES_PARAM, ""),
        request.args.get(auth.SIGNATURE_PARAM, ""),
        time.time(),
    )
    return Principal(grant=grant)


def _decide(rule: Rule) -> None:
    enabled, tokens, store_unread = _source().current()
    if not enabled:
        g.filedock_principal = ANYONE
        return
    methods = effective_methods()
    key = None if rule.deferred else _request_key(rule)
    if "Authorization" not in request.headers and auth.SIGNATURE_PARAM in request.args:
        principal = _signed_principal(rule, key, methods)
    else:
        principal = _token_principal(tokens, store_unread)
    g.filedock_principal = principal
    if rule.deferred:
        token = principal.token
        needed = {rule.scope} if rule.scope is not None else set()
        # The handler checks its paths for the route's own scope; an override to a writing
        # method also needs a token that may write (a listing with `DELETE` is no read).
        overrides = methods - {request.method.upper()}
        needed |= {s for s in map(auth.scope_for_method, overrides) if s == auth.WRITE}
        for scope in sorted(needed):
            if token is None or not auth.has_scope(token, scope):
                raise auth.Forbidden(f"this token does not have the {scope} scope")
        return
    for method in sorted(methods):
        scope = auth.scope_for_method(method)
        if not principal.may(scope, key):
            where = f"on {key}" if key is not None else "on the whole store"
            raise auth.Forbidden(f"{method} needs the {scope} scope {where}")


def check_request() -> Response | tuple[Response, int] | None:
    """The before_request hook: let the request through, or answer 401/403."""
    if request.method == "OPTIONS" and OVERRIDE_HEADER not in request.headers:
        return None  # CORS preflights and Allow answers carry no credentials
    if request.routing_exception is not None:
        return None  # 404 and 405 are answered as they are
    rule = _rule()
    if _is_public(rule):
        return None
    try:
        _decide(rule)
    except auth.Unauthorized as exc:
        return denied(AccessDenied.unauthorized(str(exc)))
    except auth.Forbidden as exc:
        return denied(AccessDenied.forbidden(str(exc)))
    return None


DenialShape = Callable[[int, str], tuple[Response, int]]
_DENIAL_SHAPES: dict[str, DenialShape] = {}


def shape_denials(blueprint: str, shape: DenialShape) -> None:
    """Answer 401/403 on a blueprint's endpoints in its own error shape (the compat
    endpoints keep the original API's), rather than as problem+json."""
    _DENIAL_SHAPES[blueprint] = shape


def denied(exc: AccessDenied) -> Response | tuple[Response, int]:
    """The 401/403 response: problem+json, or the blueprint's own shape if it has one."""
    shape = _DENIAL_SHAPES.get(request.blueprint or "")
    if shape is not None:
        response, status = shape(exc.status, exc.detail)
    else:
        response, status = problem(exc.status, exc.code, exc.detail), exc.status
    if exc.headers:
        response.headers.update(exc.headers)
    return response, status


def _principal() -> Principal:
    principal = g.get("filedock_principal")
    if isinstance(principal, Principal):
        return principal
    enabled, tokens, store_unread = _source().current()
    if not enabled:
        return ANYONE
    try:
        return _token_principal(tokens, store_unread)
    except auth.Unauthorized as exc:
        raise AccessDenied.unauthorized(str(exc)) from None


def current_token() -> Token | None:
    """The token the current request presented; None when the server has no tokens."""
    return _principal().token


def allowed(scope: str, key: str | None) -> bool:
    """May the current request use scope on key? (For filtering listings.)"""
    return _principal().may(scope, key)


def readable_prefix() -> str | None:
    """The part of the store the request may read: "" all of it, a token's prefix P (P and
    P/...), None nothing. Listings narrow their walk to it before describing any object."""
    principal = _principal()
    if principal.token is not None:
        return principal.token.prefix if auth.has_scope(principal.token, auth.READ) else None
    if principal.grant is not None:
        return None  # a signed link is for one method on one path, never a listing
    return ""


def requester() -> str:
    """Who is asking, for limits per client: a token (by its hash), else the address the
    request came from (an anonymous client, or a signed link)."""
    principal = _principal()
    if principal.token is not None:
        return f"token {principal.token.hash}"
    return f"address {request.remote_addr or ''}"


def require(scope: str, key: str | None) -> None:
    """Raise AccessDenied (403, or 401 without credentials) unless the request may use
    scope on key; key None means the whole store."""
    if not _principal().may(scope, key):
        where = f"on {key}" if key is not None else "on the whole store"
        raise AccessDenied.forbidden(f"this needs the {scope} scope {where}")


# -- signed links --------------------------------------------------------------------------


def presign_secret() -> bytes:
    """The key that signs links: secret_key if set, else one random key kept in the store,
    created by whichever worker or instance gets there first."""
    source = _source()
    if source.secret is not None:
        return source.secret
    settings = get_settings()
    if settings.secret_key:
        secret = settings.secret_key.encode("utf-8")
    else:
        storage = get_storage()
        if not isinstance(storage, Records):
            raise ApiError(500, "internal", "signed links need secret_key for this store")
        try:
            storage.put_record(auth.PRESIGN_KEY_STATE, secrets.token_bytes(32), ABSENT)
        except AlreadyExists:
            pass  # another worker or instance made it first: use theirs
        stored = storage.get_record(auth.PRESIGN_KEY_STATE)
        if stored is None or not stored.value:
            raise ApiError(500, "internal", "the signing key could not be stored")
        secret = stored.value
    source.secret = secret
    return secret


def presign_url(method: str, key: str, expires: int) -> str:
    """The signed link (path and query, relative to the server's root) for method on key."""
    signature = auth.sign(presign_secret(), method, key, expires)
    query = urlencode({auth.EXPIRES_PARAM: str(expires), auth.SIGNATURE_PARAM: signature})
    return f"{request.script_root}{FILES_URL}{quote(key, safe='/')}?{query}"
