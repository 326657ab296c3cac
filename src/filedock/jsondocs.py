"""JSON documents: stored objects that hold one JSON value. No Flask here."""

from __future__ import annotations

import json
from typing import Any

from .storage import Key, ObjectInfo, Storage, TooLarge


class InvalidJson(ValueError):
    """Bytes that are not one valid UTF-8 JSON value."""


def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not valid JSON")


def parse_json(data: bytes) -> Any:
    """Parse strict JSON (no NaN/Infinity); nesting and number sizes are bounded."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("the document is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidJson("the document is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise InvalidJson(f"the document is not valid JSON: {exc}") from None


def read_bytes(storage: Storage, key: Key, max_bytes: int) -> tuple[bytes, ObjectInfo]:
    """The raw bytes of a document, refusing one over max_bytes before reading it."""
    info = storage.stat(key)
    if info.size > max_bytes:
        raise TooLarge(f"the document is {info.size} bytes; the limit is {max_bytes}")
    with storage.open(key) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(f"the document is larger than {max_bytes} bytes")
    return data, info


def load_document(storage: Storage, key: Key, max_bytes: int) -> tuple[Any, ObjectInfo]:
    """The parsed document at key and its metadata."""
    data, info = read_bytes(storage, key, max_bytes)
    return parse_json(data), info
