"""JSON documents: stored objects that hold one JSON value. No Flask here.

Parsing is strict (UTF-8, RFC 8259, no NaN/Infinity, no lone UTF-16 surrogate escapes, as
I-JSON (RFC 7493) asks) and bounded: nesting deeper than the parser's recursion limit, integers
past Python's digit limit and floats that overflow to infinity are refused as JsonTooComplex
instead of crashing a request.

Reads go through a small per-process cache keyed by (key, ETag). The ETag is the SHA-256 of
the bytes, so an entry can never be stale: when any process (or a hand edit) changes the
object, the store reports a new ETag and the old entry is simply not found again.

PATCH is a read-modify-write made safe by the store's compare-and-swap: the new document is
written with if_match=<the ETag it was computed from>, and recomputed from a fresh read when
another writer got there first.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

from .storage import (
    ABSENT,
    Key,
    Matches,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Storage,
    TooLarge,
)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE_PATCH, JSON_PATCH)

# -- exceptions ------------------------------------------------------------------------------


class InvalidJson(ValueError):
    """Bytes that are not one valid UTF-8 JSON value."""


class JsonTooComplex(InvalidJson):
    """JSON past the parser's limits: nested too deeply, or a number too long or too large."""


class LoneSurrogate(InvalidJson):
    """A string holding a \\u escape of a lone UTF-16 surrogate: no UTF-8 text can carry it."""


class InvalidDocument(InvalidJson):
    """A stored object that is not valid UTF-8 JSON."""


class InvalidPointer(ValueError):
    """A string that is not an RFC 6901 JSON Pointer."""


class PointerNotFound(LookupError):
    """A JSON Pointer that does not refer to a value of the document."""


class InvalidPatch(ValueError):
    """A patch that is not a well-formed merge patch or JSON Patch."""


class PatchTestFailed(Exception):
    """A JSON Patch `test` operation did not hold."""


class PatchConflict(Exception):
    """A well-formed JSON Patch that cannot be applied to this document (a missing target)."""


class DocumentBusy(Exception):
    """The document kept changing under a PATCH past its retry budget."""


# -- parsing and serialising -----------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JsonTooComplex(f"the number {text[:20]}... is too large")
    return value


# A \\u escape of a UTF-16 surrogate (D800-DFFF). UTF-8 input cannot hold a surrogate any other
# way, so text without one needs no further check; with one, the parsed strings are checked
# (a high surrogate followed by a low one is a character, and json.loads joins them).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(data: bytes) -> Any:
    """Parse strict JSON (no NaN/Infinity, no lone surrogate); nesting and numbers bounded."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("the document is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except RecursionError:
        raise JsonTooComplex("the document is nested too deeply") from None
    except InvalidJson:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"the document is not valid JSON: {exc}") from None
    except ValueError:  # an integer past Python's digit limit
        raise JsonTooComplex("the document has a number with too many digits") from None
    if _SURROGATE_ESCAPE.search(text):
        dump_json(value)  # raises LoneSurrogate for a string no UTF-8 text can hold
    return value


def dump_json(value: Any) -> bytes:
    """Serialise a value compactly as UTF-8 JSON, keeping the order of object members."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except RecursionError:
        raise JsonTooComplex("the document is nested too deeply") from None
    except ValueError as exc:
        raise JsonTooComplex(f"the document cannot be serialised: {exc}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = f"\\u{ord(text[exc.start]):04x}"
        raise LoneSurrogate(f"the document has a string with a lone surrogate ({bad})") from None


# -- pointers --------------------------------------------------------------------------------

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def parse_pointer(text: str) -> list[str]:
    """The reference tokens of an RFC 6901 JSON Pointer ("" is the whole document)."""
    try:
        return list(jsonpointer.JsonPointer(text).parts)
    except jsonpointer.JsonPointerException as exc:
        raise InvalidPointer(f"{text!r} is not a JSON Pointer: {exc}") from None


def resolve_pointer(document: Any, tokens: list[str]) -> Any:
    """The value the tokens refer to; PointerNotFound if there is none.

    Array indices are decimal without leading zeros; '-' (past the end) refers to nothing."""
    value = document
    for depth, token in enumerate(tokens):
        if isinstance(value, dict):
            if token not in value:
                raise PointerNotFound(_missing(tokens, depth))
            value = value[token]
        elif isinstance(value, list):
            index = _array_index(token, len(value))
            if index is None:
                raise PointerNotFound(_missing(tokens, depth))
            value = value[index]
        else:
            raise PointerNotFound(_missing(tokens, depth))
    return value


def _array_index(token: str, length: int) -> int | None:
    """The index an RFC 6901 token names in an array of length items, if it names one.

    The token's length is compared first: int() of thousands of digits is refused by Python
    (and slow), and a token longer than the length's own digits is past the end anyway."""
    if not _ARRAY_INDEX.fullmatch(token) or len(token) > len(str(length)):
        return None
    index = int(token)
    return index if index < length else None


def _missing(tokens: list[str], depth: int) -> str:
    where = "".join("/" + jsonpointer.escape(t) for t in tokens[: depth + 1])
    return f"no value at {where}"


# -- patches ---------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: the result of applying a merge patch. Neither argument is modified."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


# The most operations one JSON Patch may hold (API.md section 5): edits by hand or by a diff
# tool hold far fewer, and the cap bounds what a patch of many cheap operations can cost.
MAX_PATCH_OPERATIONS = 1000

_OP_MEMBERS: dict[str, tuple[str, ...]] = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}


@dataclass(frozen=True)
class PatchOperation:
    """One checked operation of a JSON Patch."""

    op: str
    path: jsonpointer.JsonPointer
    source: jsonpointer.JsonPointer | None = None  # the `from` of move and copy
    value: Any = None
    test: jsonpatch.TestOperation | None = None  # RFC 6902 equality (true is not 1)


@dataclass(frozen=True)
class JsonPatch:
    """An RFC 6902 patch, checked for shape before it touches any document."""

    operations: tuple[PatchOperation, ...]


def check_json_patch(patch: Any) -> JsonPatch:
    """A parsed RFC 6902 patch, checked for shape before it touches any document."""
    if not isinstance(patch, list):
        raise InvalidPatch("a JSON Patch is an array of operations")
    if len(patch) > MAX_PATCH_OPERATIONS:
        raise TooLarge(
            f"the JSON Patch has {len(patch)} operations; the limit is {MAX_PATCH_OPERATIONS}"
        )
    operations = []
    for index, operation in enumerate(patch):
        where = f"operation {index}"
        if not isinstance(operation, dict):
            raise InvalidPatch(f"{where} is not an object")
        op = operation.get("op")
        if not isinstance(op, str) or op not in _OP_MEMBERS:
            raise InvalidPatch(f"{where} has no valid 'op' (one of {', '.join(_OP_MEMBERS)})")
        pointers: dict[str, jsonpointer.JsonPointer] = {}
        for member in _OP_MEMBERS[op]:
            if member not in operation:
                raise InvalidPatch(f"{where} ({op}) has no '{member}' member")
            if member in ("path", "from"):
                if not isinstance(operation[member], str):
                    raise InvalidPatch(f"{where}: '{member}' must be a string")
                try:
                    pointers[member] = jsonpointer.JsonPointer(operation[member])
                except jsonpointer.JsonPointerException as exc:
                    text = operation[member]
                    raise InvalidPatch(f"{where}: {text!r} is not a JSON Pointer: {exc}") from None
        test = jsonpatch.TestOperation(operation) if op == "test" else None
        operations.append(
            PatchOperation(op, pointers["path"], pointers.get("from"), operation.get("value"), test)
        )
    return JsonPatch(tuple(operations))


def apply_json_patch(document: Any, patch: JsonPatch, max_bytes: int) -> Any:
    """RFC 6902: apply the patch to document, which is modified (pass a fresh copy).

    The size of the document is tracked as each operation runs, so a patch that would build
    one past max_bytes (say, by copying a member into itself again and again) stops there with
    TooLarge, before the bytes exist; and the bytes it copies in all are bounded by max_bytes."""
    run = _PatchRun(document, max_bytes)
    for index, operation in enumerate(patch.operations):
        try:
            run.apply(operation)
        except jsonpatch.JsonPatchTestFailed:
            raise PatchTestFailed(f"a test operation failed at {operation.path.path}") from None
        except (jsonpointer.JsonPointerException, PatchConflict) as exc:
            raise PatchConflict(
                f"operation {index} does not apply to the document: {exc}"
            ) from None
        except TooLarge as exc:
            raise TooLarge(f"operation {index}: {exc}") from None
        except RecursionError:
            raise JsonTooComplex("the document is nested too deeply") from None
    return run.root


def _size(value: Any) -> int:
    """The bytes of a value serialised as the store keeps a patched document."""
    return len(dump_json(value))


def _member_bytes(parent: dict[str, Any] | list[Any], name: str | int, size_after: int) -> int:
    """The bytes a member takes in its parent besides its value's own: `"name":` in an object,
    and a comma when the parent holds more than one member (size_after members with it)."""
    comma = 1 if size_after > 1 else 0
    return comma + (_size(name) + 1 if isinstance(parent, dict) else 0)


class _PatchRun:
    """A JSON Patch being applied, with the exact serialised size of the document kept
    current operation by operation: a value's size is measured when it arrives (from the
    patch, or copied) and when it leaves (removed or replaced), so each byte is measured a
    bounded number of times however the operations are combined.

    Values are copied by serialising and parsing them: the serialisation is needed for the
    size anyway, it comes before the copy is made (so a copy past the limit never exists), and
    the C parser copies many times faster than copy.deepcopy."""

    def __init__(self, document: Any, max_bytes: int) -> None:
        self.root = document
        self.max_bytes = max_bytes
        self.size = _size(document)
        self.copied = 0

    def grow(self, delta: int) -> None:
        """Account for delta more bytes; TooLarge if the document would pass the limit."""
        if delta > 0 and self.size + delta > self.max_bytes:
            raise TooLarge(f"the patched document would pass {self.max_bytes} bytes")
        self.size += delta

    def charge_copy(self, size: int) -> None:
        """Account for a copied value; TooLarge past max_bytes copied in all."""
        self.copied += size
        if self.copied > self.max_bytes:
            raise TooLarge(f"the patch copies more than {self.max_bytes} bytes in all")

    def apply(self, operation: PatchOperation) -> None:
        """Apply one operation to the document."""
        if operation.op == "test":
            assert operation.test is not None
            operation.test.apply(self.root)
        elif operation.op == "add":
            data = dump_json(operation.value)
            self.add(operation.path, len(data), lambda: json.loads(data))
        elif operation.op == "remove":
            self.remove(operation.path)
        elif operation.op == "replace":
            self.replace(operation.path, dump_json(operation.value))
        elif operation.op == "copy":
            assert operation.source is not None
            data = dump_json(self.existing(operation.source))
            self.charge_copy(len(data))
            self.add(operation.path, len(data), lambda: json.loads(data))
        else:
            assert operation.source is not None
            self.move(operation.source, operation.path)

    def add(self, pointer: jsonpointer.JsonPointer, size: int, make: Callable[[], Any]) -> None:
        """Insert the value make() returns (size bytes) at pointer, or set the member it names;
        make() is called once the document is known to have room for it."""
        parent, part = pointer.to_last(self.root)
        if part is None:
            self.grow(size - self.size)
            self.root = make()
            return
        if isinstance(parent, list):
            index = len(parent) if part == "-" else part
            if not isinstance(index, int) or not 0 <= index <= len(parent):
                raise PatchConflict(f"{pointer.path} is outside the array")
            self.grow(size + _member_bytes(parent, index, len(parent) + 1))
            parent.insert(index, make())
        elif isinstance(parent, dict):
            if part in parent:
                self.grow(size - _size(parent[part]))
            else:
                self.grow(size + _member_bytes(parent, part, len(parent) + 1))
            parent[part] = make()
        else:
            raise PatchConflict(f"{pointer.path} is not inside an object or array")

    def locate(self, pointer: jsonpointer.JsonPointer) -> tuple[Any, Any]:
        """The parent and name of an existing value other than the whole document."""
        parent, part = pointer.to_last(self.root)
        present = part is not None and (
            (isinstance(parent, dict) and part in parent)
            or (isinstance(parent, list) and isinstance(part, int) and 0 <= part < len(parent))
        )
        if not present:
            raise PatchConflict(f"no value at {pointer.path!r} to change")
        return parent, part

    def existing(self, pointer: jsonpointer.JsonPointer) -> Any:
        """The value at pointer, which must exist."""
        if not pointer.parts:
            return self.root
        parent, part = self.locate(pointer)
        return parent[part]

    def remove(self, pointer: jsonpointer.JsonPointer) -> None:
        """Remove the value at pointer."""
        parent, part = self.locate(pointer)
        self.size -= _size(parent[part]) + _member_bytes(parent, part, len(parent))
        del parent[part]

    def replace(self, pointer: jsonpointer.JsonPointer, data: bytes) -> None:
        """Replace the value at pointer with the value serialised as data."""
        if not pointer.parts:
            self.grow(len(data) - self.size)
            self.root = json.loads(data)
            return
        parent, part = self.locate(pointer)
        self.grow(len(data) - _size(parent[part]))
        parent[part] = json.loads(data)

    def move(self, source: jsonpointer.JsonPointer, target: jsonpointer.JsonPointer) -> None:
        """Move the value at source to target (RFC 6902 4.4: remove, then add)."""
        if target != source and target.contains(source):
            raise PatchConflict(f"{source.path!r} cannot be moved into itself")
        value = self.existing(source)
        if target == source:
            return
        # The value's own bytes move with it: only the bytes around it change, so a value is
        # not measured however often it moves.
        parent, part = self.locate(source)
        self.size -= _member_bytes(parent, part, len(parent))
        del parent[part]
        if not target.parts:  # the value becomes the whole document
            size = _size(value)
            self.charge_copy(size)
            self.size, self.root = size, value
            return
        self.add(target, 0, lambda: value)  # its own bytes are still counted


# -- the document cache ----------------------------------------------------------------------


# What a cached version costs beyond its bytes (the entry, its key and ETag strings, its lock):
# measured at about 1 KiB; counted generously so that many small versions are bounded too.
ENTRY_OVERHEAD_BYTES = 2048
# A parsed document takes many times its text (up to ~25x for `[{},{},...]`): the parsed value
# is kept only for documents up to this size, and counted at its measured size; larger ones
# are parsed again by each request that needs the value (a pointer, a merge patch).
KEEP_PARSED_BYTES = 256 << 10


class Document:
    """One version of a stored document: its exact bytes, and its parsed value on demand."""

    def __init__(self, data: bytes, etag: str) -> None:
        self.data = data
        self.etag = etag
        self._value: Any = None
        self._error: InvalidJson | None = None
        self._checked = False
        self._parsed = False
        self._lock = threading.Lock()
        self._derived: dict[str, bytes] = {}
        self._extra = 0  # bytes held beside data: the parsed value, derived bodies
        self._grew: Callable[[Document, int], None] | None = None  # told of _extra's growth
        self._charged = 0  # what the cache holding it counts for it (kept by the cache)

    @property
    def cost(self) -> int:
        """About how much memory this version holds (what the cache counts)."""
        return ENTRY_OVERHEAD_BYTES + len(self.data) + self._extra

    def _add(self, size: int) -> None:
        self._extra += size
        if self._grew is not None:
            self._grew(self, size)

    def derived(self, name: str, make: Callable[[Document], bytes]) -> bytes:
        """Bytes computed from this version once (say, a response body), then reused."""
        found = self._derived.get(name)
        if found is None:
            found = make(self)
            with self._lock:
                if name not in self._derived:
                    self._derived[name] = found
                    self._add(len(found))
        return found

    def made(self, name: str) -> bytes | None:
        """The derived bytes called name, if they have been made."""
        return self._derived.get(name)

    @property
    def checked(self) -> bool:
        """Has check() decided about this version already (either way)?"""
        return self._checked

    def check(self) -> None:
        """Raise InvalidDocument (or JsonTooComplex) unless the bytes are JSON; decided once
        per version, without keeping the parsed value of a large document."""
        if not self._checked:
            if len(self.data) <= KEEP_PARSED_BYTES:
                self._parse()
            else:
                with self._lock:
                    if not self._checked:
                        self._error = _document_error(self.data)
                        self._checked = True
        if self._error is not None:
            raise self._error

    def value(self) -> Any:
        """The parsed document (shared: never modify it). InvalidDocument if not JSON."""
        self.check()
        if len(self.data) > KEEP_PARSED_BYTES:
            return parse_json(self.data)
        return self._value

    def _parse(self) -> None:
        with self._lock:
            if self._parsed:
                return
            try:
                self._value = parse_json(self.data)
            except JsonTooComplex as exc:
                self._error = exc
            except InvalidJson as exc:
                self._error = InvalidDocument(f"the stored object is not JSON: {exc}")
            self._parsed = self._checked = True
        if self._error is None:
            self._add(deep_size(self._value))

    def fresh_value(self) -> Any:
        """A private parsed copy of the document, safe to modify."""
        self.check()  # raise the document's error if it has one
        return parse_json(self.data)


def _document_error(data: bytes) -> InvalidJson | None:
    """What is wrong with stored bytes as JSON (None: nothing), found without building the
    document: objects are dropped as they are read, so a large one is never held whole."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidDocument("the stored object is not JSON: it is not valid UTF-8")
    try:
        json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            object_pairs_hook=_drop,
        )
    except RecursionError:
        return JsonTooComplex("the document is nested too deeply")
    except JsonTooComplex as exc:
        return exc
    except InvalidJson as exc:
        return InvalidDocument(f"the stored object is not JSON: {exc}")
    except json.JSONDecodeError as exc:
        return InvalidDocument(f"the stored object is not JSON: {exc}")
    except ValueError:  # an integer past Python's digit limit
        return JsonTooComplex("the document has a number with too many digits")
    return None


def _drop(pairs: list[tuple[str, Any]]) -> None:
    return None


def deep_size(value: Any) -> int:
    """The memory a parsed JSON value holds, every object counted (shared ones each time)."""
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        size += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return size


class DocumentCache:
    """Recently used documents of this process: the current version of each key (an older
    one is never served again once stat() shows a newer ETag), bounded by what the versions
    really hold (Document.cost: bytes, parsed values, derived bodies and the entry itself)."""

    def __init__(self, max_bytes: int = 32 << 20, max_entries: int = 4096) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Document] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """What the cached versions hold, as counted."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, etag: str) -> Document | None:
        """The cached version of key with this ETag, if any."""
        with self._lock:
            doc = self._entries.get(key)
            if doc is None or doc.etag != etag:
                return None
            self._entries.move_to_end(key)
            return doc

    def put(self, key: str, doc: Document) -> None:
        """Remember a version (in place of the key's older one); the least recently used go
        when over budget."""
        if doc.cost > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._forget(old)
            self._entries[key] = doc
            doc._grew = self._grew
            doc._charged = doc.cost
            self._size += doc._charged
            self._evict()

    def _grew(self, doc: Document, size: int) -> None:
        """A cached version now holds size bytes more (its parsed value, a derived body)."""
        with self._lock:
            if doc._grew is not None:  # still cached
                doc._charged += size
                self._size += size
                self._evict()

    def _forget(self, doc: Document) -> None:
        doc._grew = None
        self._size -= doc._charged

    def _evict(self) -> None:
        while self._entries and (
            self._size > self.max_bytes or len(self._entries) > self.max_entries
        ):
            _, evicted = self._entries.popitem(last=False)
            self._forget(evicted)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            for doc in self._entries.values():
                doc._grew = None
            self._entries.clear()
            self._size = 0


CACHE = DocumentCache()


def etag_of(data: bytes) -> str:
    """The ETag of these bytes: their quoted SHA-256."""
    return f'"{hashlib.sha256(data).hexdigest()}"'


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


def cached_document(
    storage: Storage, key: Key, max_bytes: int, cache: DocumentCache = CACHE
) -> Document | None:
    """The current version of the document at key if the cache holds it, else None (nothing
    is read but the stat)."""
    info = storage.stat(key)
    if info.size > max_bytes:
        return None
    return cache.get(key, info.etag)


def get_document(
    storage: Storage, key: Key, max_bytes: int, cache: DocumentCache = CACHE
) -> Document:
    """The current version of the document at key, from the cache when it is still current.

    stat() is asked every time (cheap: the local store keeps the hash in a sidecar), so a
    change by any worker, instance or hand edit is seen at once."""
    info = storage.stat(key)
    if info.size > max_bytes:
        raise TooLarge(f"the document is {info.size} bytes; the limit is {max_bytes}")
    doc = cache.get(key, info.etag)
    if doc is not None:
        return doc
    data, _ = read_bytes(storage, key, max_bytes)
    # The object may have changed between stat() and the read: label the bytes by what they
    # are, so the ETag served always belongs to the body served.
    doc = Document(data, etag_of(data))
    cache.put(key, doc)
    return doc


# -- writing ---------------------------------------------------------------------------------


def etag_matches(header: str, etag: str, weak: bool = False) -> bool:
    """Does an If-Match / If-None-Match value (ETags separated by commas, or *) match etag?

    If-Match compares strongly (a W/ tag never matches); If-None-Match weakly (RFC 9110)."""
    for tag in (t.strip() for t in header.split(",")):
        if tag == "*" or tag == etag or (weak and tag == "W/" + etag):
            return True
    return False


@dataclass(frozen=True)
class Written:
    """The outcome of a write: the stored bytes, their metadata, and whether it was new."""

    data: bytes
    info: ObjectInfo
    created: bool


def put_document(
    storage: Storage,
    key: Key,
    data: bytes,
    if_match: str | None = None,
    if_none_match: str | None = None,
    cache: DocumentCache = CACHE,
) -> Written:
    """Store data (already checked to be JSON) at key as sent, honouring the conditions.

    Created-or-replaced is decided by the same compare-and-swap that writes, so 201 and 200
    are exact even under concurrent writers."""
    for attempt in range(32):
        try:
            current: ObjectInfo | None = storage.stat(key)
        except ObjectNotFound:
            current = None
        if if_match is not None and (current is None or not etag_matches(if_match, current.etag)):
            raise PreconditionFailed(f"the document at {key} does not match If-Match")
        if if_none_match is not None and current is not None:
            if etag_matches(if_none_match, current.etag, weak=True):
                raise PreconditionFailed(f"the document at {key} matches If-None-Match")
        try:
            if current is None:
                info = storage.put(key, io.BytesIO(data), JSON, ABSENT)
            else:
                info = storage.put(key, io.BytesIO(data), JSON, Matches(current.sha256))
        except PreconditionFailed:  # (AlreadyExists too) someone else wrote first: look again
            if if_match is not None or if_none_match == "*":
                raise
            _backoff(attempt)
            continue
        cache.put(key, Document(data, info.etag))
        return Written(data, info, created=current is None)
    raise DocumentBusy(f"the document at {key} kept changing; try again")


Patcher = Callable[[Document], Any]


def patch_document(
    storage: Storage,
    key: Key,
    apply: Patcher,
    max_bytes: int,
    if_match: str | None = None,
    if_none_match: str | None = None,
    deadline_seconds: float = 10.0,
    max_attempts: int = 64,
    cache: DocumentCache = CACHE,
) -> Written:
    """Read, apply, and compare-and-swap the result; on a lost race read again and retry.

    With If-Match the client pinned a version, so a lost race is its 412, not a retry."""
    deadline = time.monotonic() + deadline_seconds
    for attempt in range(max_attempts):
        try:
            doc = get_document(storage, key, max_bytes, cache)
        except ObjectNotFound:
            if if_match is not None:
                raise PreconditionFailed(f"no document at {key} to match If-Match") from None
            raise
        if if_match is not None and not etag_matches(if_match, doc.etag):
            raise PreconditionFailed(f"the document at {key} does not match If-Match")
        if if_none_match is not None and etag_matches(if_none_match, doc.etag, weak=True):
            raise PreconditionFailed(f"the document at {key} matches If-None-Match")
        data = dump_json(apply(doc))
        if len(data) > max_bytes:
            raise TooLarge(f"the patched document would be {len(data)} bytes; limit {max_bytes}")
        try:
            info = storage.put(key, io.BytesIO(data), JSON, Matches(doc.etag.strip('"')))
        except PreconditionFailed:
            if if_match is not None:
                raise
            if time.monotonic() > deadline:
                break
            _backoff(attempt)
            continue
        cache.put(key, Document(data, info.etag))
        return Written(data, info, created=False)
    raise DocumentBusy(f"the document at {key} kept changing; try again")


def merge_patcher(patch: Any) -> Patcher:
    """A Patcher applying an RFC 7396 merge patch (the cached value is not modified)."""

    def apply(doc: Document) -> Any:
        try:
            return merge_patch(doc.value(), patch)
        except RecursionError:
            raise JsonTooComplex("the patch is nested too deeply") from None

    return apply


def json_patcher(patch: JsonPatch, max_bytes: int) -> Patcher:
    """A Patcher applying an RFC 6902 patch to a private copy of the document."""

    def apply(doc: Document) -> Any:
        return apply_json_patch(doc.fresh_value(), patch, max_bytes)

    return apply


def _backoff(attempt: int) -> None:
    """Sleep a little, with full jitter, so racing writers spread out."""
    time.sleep(random.uniform(0, min(0.05, 0.001 * (2**attempt))))


def decode_patch(data: bytes) -> Any:
    """Parse a patch body: JSON, else InvalidPatch (limits still JsonTooComplex)."""
    try:
        return parse_json(data)
    except (JsonTooComplex, LoneSurrogate):
        raise
    except InvalidJson as exc:
        raise InvalidPatch(f"the patch is not JSON: {exc}") from None
