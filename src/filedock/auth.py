"""Who may do what: tokens, scopes, path prefixes and signed links (API.md section 8), and
the [[tokens]] of a config file.

Plain Python, no Flask: the HTTP layer (access.py) hands in header values and keys and turns
the answers into 401/403 responses."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import tomli_w

from .config import ConfigError, Token, read_toml
from .storage import InvalidKey, check_key

READ, WRITE, ADMIN = "read", "write", "admin"
SCOPES = (READ, WRITE, ADMIN)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_CREDENTIAL_BYTES = 4096
HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")

PRESIGN_METHODS = ("GET", "PUT")
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
PRESIGN_KEY_STATE = "presign-key"
EXPIRES_PARAM, SIGNATURE_PARAM = "expires", "signature"


class Unauthorized(Exception):
    """No credentials, unknown credentials, or credentials that cannot be parsed."""


class Forbidden(Exception):
    """Valid credentials that do not allow this scope on this path."""


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe base64."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The lower-case hex SHA-256 of a token: all the config ever keeps of it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def scope_for_method(method: str) -> str:
    """GET, HEAD and OPTIONS read; every other method writes."""
    return READ if method.upper() in SAFE_METHODS else WRITE


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes from "read,write" or a list; ConfigError for an unknown or missing one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = tuple(dict.fromkeys(s.strip().lower() for s in items if s.strip()))
    if not scopes:
        raise ConfigError("a token needs at least one scope: read, write or admin")
    for scope in scopes:
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}: use read, write or admin")
    return scopes


def normalise_prefix(prefix: str) -> str:
    """A token's path prefix: "" (everything) or a valid path; a trailing '/' is dropped."""
    prefix = prefix.rstrip("/")
    if not prefix:
        return ""
    try:
        return check_key(prefix)
    except InvalidKey as exc:
        raise ConfigError(f"bad token prefix {prefix!r}: {exc}") from None


def validate_tokens(tokens: Iterable[Token]) -> None:
    """Refuse a config whose tokens have bad hashes, scopes or prefixes."""
    for token in tokens:
        label = token.name or token.hash[:12]
        if not HASH_PATTERN.match(token.hash.lower()):
            raise ConfigError(f"token {label!r}: hash must be 64 hex digits (a SHA-256)")
        if parse_scopes(token.scopes) != token.scopes:
            raise ConfigError(f"token {label!r}: scopes must be read, write or admin, each once")
        if token.prefix and normalise_prefix(token.prefix) != token.prefix:
            raise ConfigError(f"token {label!r}: prefix {token.prefix!r} is not a valid path")


def credential_from_header(header: str | None) -> str | None:
    """The token presented in an Authorization header, None if there is no header.

    Bearer <token>, or Basic with the token as password (or as user name with an empty
    password). Anything else, or a header that does not parse, is Unauthorized."""
    if header is None:
        return None
    if len(header) > MAX_CREDENTIAL_BYTES:
        raise Unauthorized("the Authorization header is too long")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        if not value:
            raise Unauthorized("the Bearer credentials are empty")
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise Unauthorized("the Basic credentials are not valid base64 UTF-8") from None
        user, colon, password = decoded.partition(":")
        if not colon:
            raise Unauthorized("the Basic credentials have no ':'")
        token = password or user
        if not token:
            raise Unauthorized("the Basic credentials are empty")
        return token
    raise Unauthorized("use Authorization: Bearer <token> or Basic with the token as password")


def find_token(tokens: Iterable[Token], presented: str) -> Token | None:
    """The configured token whose hash matches, comparing every hash in constant time."""
    digest = hash_token(presented).encode("ascii")
    found = None
    for token in tokens:
        if hmac.compare_digest(token.hash.lower().encode("ascii", "replace"), digest):
            found = token
    return found


def covers(prefix: str, key: str) -> bool:
    """Does a token's prefix cover key? "team-a" covers team-a and team-a/..., not team-ab."""
    return not prefix or key == prefix or key.startswith(prefix + "/")


def has_scope(token: Token, scope: str) -> bool:
    """Does the token hold scope (admin holds every scope)?"""
    return scope in token.scopes or ADMIN in token.scopes


def permits(token: Token, scope: str, key: str | None) -> bool:
    """May token use scope on key? A key of None means the whole store."""
    if not has_scope(token, scope):
        return False
    if not token.prefix:
        return True
    return key is not None and covers(token.prefix, key)


# -- signed links --------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What a valid signed link allows: one method on one path."""

    method: str
    key: str
    expires: int


def _message(method: str, key: str, expires: int) -> bytes:
    return f"filedock-presign-v1\n{method}\n{expires}\n{key}".encode()


def sign(secret: bytes, method: str, key: str, expires: int) -> str:
    """The HMAC-SHA256 of method, path and expiry, URL-safe base64 without padding."""
    mac = hmac.new(secret, _message(method, key, expires), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def verify(
    secret: bytes, method: str, key: str, expires_text: str, signature: str, now: float
) -> Grant:
    """The grant of a signed link for this request, or Forbidden (tampered or expired)."""
    if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
        raise Forbidden("the signed link's expiry is malformed")
    expires = int(expires_text)
    expected = sign(secret, method, key, expires)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise Forbidden("the signed link does not match this method and path")
    if now >= expires:
        raise Forbidden("the signed link has expired")
    return Grant(method, key, expires)


def check_expires_in(value: object) -> int:
    """The lifetime of a signed link in seconds: an integer from 1 to 7 days."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expires_in must be an integer number of seconds")
    if not 1 <= value <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"expires_in must be from 1 to {MAX_PRESIGN_SECONDS} seconds")
    return value


def rfc3339(timestamp: int) -> str:
    """A Unix time as RFC 3339 UTC with a Z."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the [[tokens]] of a config file --------------------------------------------------------


def _read_config(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    return read_toml(path)


def _write_config(path: str, data: dict[str, Any]) -> None:
    """Replace the file atomically, keeping its mode (0600 for a new file: it lists hashes)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o600
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".filedock-config-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def config_tokens(path: str) -> list[Token]:
    """The tokens listed in a config file (none if it does not exist)."""
    data = _read_config(path)
    tokens = [_token_from_table(item) for item in data.get("tokens", [])]
    validate_tokens(tokens)
    return tokens


def _token_from_table(item: Any) -> Token:
    if not isinstance(item, dict) or "hash" not in item or "scopes" not in item:
        raise ConfigError("each [[tokens]] table needs hash and scopes")
    return Token(
        hash=str(item["hash"]),
        scopes=parse_scopes(item["scopes"]),
        prefix=str(item.get("prefix", "")),
        name=str(item.get("name", "")),
    )


def create_token(path: str, scopes: str, prefix: str = "", name: str = "") -> tuple[str, Token]:
    """Make a token, append its hash to the config file's [[tokens]], return (token, record).

    The file is created if missing; its other keys are kept (comments are not)."""
    record_scopes = parse_scopes(scopes)
    prefix = normalise_prefix(prefix)
    data = _read_config(path)
    existing = config_tokens(path)
    token = new_token()
    record = Token(hash_token(token), record_scopes, prefix, name or f"token-{len(existing) + 1}")
    if any(t.name == record.name for t in existing):
        raise ConfigError(f"a token named {record.name!r} exists already")
    table: dict[str, Any] = {"name": record.name, "hash": record.hash}
    table["scopes"] = list(record.scopes)
    if prefix:
        table["prefix"] = prefix
    data["tokens"] = [*data.get("tokens", []), table]
    _write_config(path, data)
    return token, record


def revoke_token(path: str, ref: str) -> Token:
    """Remove the one token whose name is ref, or whose hash starts with ref (8+ hex digits)."""
    data = _read_config(path)
    tokens = config_tokens(path)
    by_name = [i for i, t in enumerate(tokens) if t.name == ref]
    ref_hex = ref.lower()
    by_hash = [
        i for i, t in enumerate(tokens) if len(ref_hex) >= 8 and t.hash.lower().startswith(ref_hex)
    ]
    matches = by_name or by_hash
    if not matches:
        raise ConfigError(f"no token named {ref!r} or with a hash starting {ref!r} in {path}")
    if len(matches) > 1:
        raise ConfigError(f"{ref!r} matches {len(matches)} tokens; give more of the hash")
    index = matches[0]
    data["tokens"] = [t for i, t in enumerate(data.get("tokens", [])) if i != index]
    _write_config(path, data)
    return tokens[index]
