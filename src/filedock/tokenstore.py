"""API tokens kept in the store itself (API.md section 11), shared by every instance of it.

Each token is one small record, `tokens/<sha256 of the token>`, holding its name, scopes and
prefix as JSON: never the token. One record per token means a creation and a revocation each
touch one record, so two of them at once never undo each other, whatever the store.

Every worker of every instance re-reads the records at most REFRESH_SECONDS after it last
did (on the first request after that), so a token created or revoked is honoured everywhere
within REFRESH_SECONDS plus one request. When a re-read fails, the worker keeps what it read
last for up to STALE_SECONDS after that last good read (a revocation made meanwhile can only
be late, never lost: a revoked token's record is gone, so it cannot come back), and past
that it refuses every token of the store (StoreTokensUnavailable) until a read succeeds."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from . import auth
from .config import ConfigError, Token
from .storage import ABSENT, AlreadyExists, Records, Storage, StoreUnavailable

log = logging.getLogger("filedock")

RECORD_PREFIX = "tokens/"
REFRESH_SECONDS = 5.0
STALE_SECONDS = 10.0


def holds_tokens(storage: Storage) -> bool:
    """Does the store keep any token? (False for a store that cannot keep them.) An object
    store that is down for now may: True, and the workers refuse every request that needs a
    token until they have read them (a server of a store that is down starts, and answers 503
    until the store is back)."""
    try:
        return isinstance(storage, Records) and bool(read_tokens(storage))
    except StoreUnavailable as exc:
        log.warning("cannot read the tokens kept in the store yet: %s", exc)
        return True
    except OSError as exc:
        raise ConfigError(f"cannot read the tokens kept in the store: {exc}") from None


class StoreTokensUnavailable(Exception):
    """The store's token records could not be read for longer than STALE_SECONDS."""


def _records(storage: Storage) -> Records:
    if not isinstance(storage, Records):
        raise ConfigError("this store cannot keep tokens; use --config FILE")
    return storage


def read_tokens(storage: Storage) -> tuple[Token, ...]:
    """Every token recorded in the store, by name; OSError if the records cannot be read.

    A record that does not parse is left out (and logged): it can only refuse a token."""
    records = _records(storage)
    tokens = []
    for name in records.list_records(RECORD_PREFIX):
        found = records.get_record(name)
        if found is None:
            continue  # revoked between the listing and the read
        try:
            token = _decode(found.value)
            auth.validate_tokens([token])
            if token.hash != name.removeprefix(RECORD_PREFIX):
                raise ConfigError("the record's name is not its token's hash")
        except (ConfigError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the token record %s: %s", name, exc)
            continue
        tokens.append(token)
    return tuple(sorted(tokens, key=lambda t: (t.name, t.hash)))


def _decode(data: bytes) -> Token:
    item = json.loads(data)
    return Token(
        hash=str(item["hash"]),
        scopes=auth.parse_scopes(item["scopes"]),
        prefix=str(item.get("prefix", "")),
        name=str(item.get("name", "")),
    )


def _encode(token: Token) -> bytes:
    record = {"name": token.name, "hash": token.hash, "scopes": list(token.scopes)}
    if token.prefix:
        record["prefix"] = token.prefix
    return json.dumps(record).encode("utf-8")


def create_token(
    storage: Storage, scopes: str, prefix: str = "", name: str = ""
) -> tuple[str, Token]:
    """Make a token and record its hash in the store; (the token, its record)."""
    record_scopes = auth.parse_scopes(scopes)
    prefix = auth.normalise_prefix(prefix)
    existing = read_tokens(storage)
    names = {t.name for t in existing}
    if name in names:
        raise ConfigError(f"a token named {name!r} exists already")
    if not name:
        number = len(existing) + 1
        while f"token-{number}" in names:
            number += 1
        name = f"token-{number}"
    token = auth.new_token()
    record = Token(auth.hash_token(token), record_scopes, prefix, name)
    try:
        _records(storage).put_record(RECORD_PREFIX + record.hash, _encode(record), ABSENT)
    except AlreadyExists:
        raise ConfigError("a token with that hash exists already") from None  # 256 bits: never
    return token, record


def revoke_token(storage: Storage, ref: str) -> Token:
    """Remove the one token whose name is ref, or whose hash starts with ref (8+ hex digits)."""
    tokens = read_tokens(storage)
    matches = [t for t in tokens if t.name == ref]
    if not matches and len(ref) >= 8:
        matches = [t for t in tokens if t.hash.startswith(ref.lower())]
    if not matches:
        raise ConfigError(f"no token named {ref!r} or with a hash starting {ref!r} in the store")
    if len(matches) > 1:
        raise ConfigError(f"{ref!r} matches {len(matches)} tokens; give more of the hash")
    _records(storage).delete_record(RECORD_PREFIX + matches[0].hash)
    return matches[0]


# The stores whose tokens this process (or the one it was forked from) has read once.
_OPENED: set[str] = set()


class StoreTokens:
    """The store's tokens as one worker sees them, re-read every REFRESH_SECONDS.

    The first time a process reads a store's tokens (`filedock serve` does before it starts
    its workers), failing to read them is a ConfigError: the server does not start. A worker
    forked after that, say one gunicorn replaces, starts with no tokens read instead, and
    refuses every token of the store until it can read them, rather than failing to boot and
    taking the whole server down with it."""

    def __init__(
        self, storage: Storage, name: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: tuple[Token, ...] = ()
        self._read_at = self._tried_at = float("-inf")
        try:
            self._tokens = read_tokens(storage)
        except StoreUnavailable as exc:  # down for now: refuse the store's tokens until back
            log.warning("cannot read the store's tokens yet, refusing them until then: %s", exc)
        except OSError as exc:
            if name not in _OPENED:
                raise ConfigError(f"cannot read the tokens kept in the store: {exc}") from None
            log.warning("cannot read the store's tokens yet, refusing them until then: %s", exc)
        else:
            self._read_at = self._tried_at = clock()
            _OPENED.add(name)

    def known(self) -> tuple[Token, ...]:
        """The tokens read last, without reading again (none if never read)."""
        return self._tokens

    def current(self) -> tuple[Token, ...]:
        """The tokens; StoreTokensUnavailable if they have not been read for too long."""
        now = self._clock()
        if now - self._tried_at >= REFRESH_SECONDS and self._lock.acquire(blocking=False):
            try:  # one thread reads; the others go on with what was read last
                self._refresh(now)
            finally:
                self._lock.release()
        if self._clock() - self._read_at >= STALE_SECONDS:
            # Not read for a while: after an idle spell that only means that nobody asked.
            # Another thread may be reading right now; its outcome decides (without this
            # wait, the first requests after ten idle seconds were refused while one of them
            # re-read the tokens).
            with self._lock:
                if self._clock() - self._tried_at >= REFRESH_SECONDS:
                    self._refresh(self._clock())
            if self._clock() - self._read_at >= STALE_SECONDS:
                raise StoreTokensUnavailable("the store's tokens cannot be read")
        return self._tokens

    def _refresh(self, now: float) -> None:
        self._tried_at = now
        try:
            tokens = read_tokens(self._storage)
        except (OSError, StoreUnavailable, ConfigError) as exc:
            log.warning("cannot re-read the store's tokens, keeping the last ones read: %s", exc)
            return
        self._tokens, self._read_at = tokens, self._clock()
