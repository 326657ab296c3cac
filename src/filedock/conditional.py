"""Conditional requests and byte ranges for stored objects (RFC 9110 sections 13 and 14).

Plain Python: handlers pass the header values in and get a decision back."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .storage import ABSENT, ANYTHING, Expect, Matches, ObjectInfo, PreconditionFailed

_RANGE = re.compile(r"^\s*([0-9]*)\s*-\s*([0-9]*)\s*$")


class RangeNotSatisfiable(Exception):
    """The Range header selects no byte of the object."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the range selects no byte of an object of {size} bytes")
        self.size = size


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of an object of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.end - self.start

    @property
    def content_range(self) -> str:
        """The Content-Range value of a 206 answer."""
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


@dataclass(frozen=True)
class ReadPlan:
    """What to send for a GET or HEAD: 200 all, 206 a range, or 304 nothing."""

    status: int
    range: ByteRange

    @property
    def start(self) -> int:
        """First byte to send."""
        return self.range.start

    @property
    def end(self) -> int:
        """One past the last byte to send."""
        return self.range.end


def parse_etags(header: str) -> list[str]:
    """The entity tags of an If-Match / If-None-Match value ("*" stays "*")."""
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def matches_strong(header: str, etag: str) -> bool:
    """Strong comparison, as If-Match and If-Range use it: weak tags never match."""
    tags = parse_etags(header)
    return "*" in tags or etag in tags


def matches_weak(header: str, etag: str) -> bool:
    """Weak comparison, as If-None-Match uses it."""
    tags = parse_etags(header)
    return "*" in tags or _opaque(etag) in {_opaque(t) for t in tags}


def parse_http_date(value: str) -> datetime | None:
    """An HTTP date, or None if it is not one (then the header is ignored, RFC 9110 13.1.3)."""
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def plan_read(
    info: ObjectInfo,
    *,
    if_match: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    if_unmodified_since: str | None = None,
    range_header: str | None = None,
    if_range: str | None = None,
) -> ReadPlan:
    """Evaluate the preconditions in RFC 9110 13.2.2's order, then the Range.

    Raises PreconditionFailed (412) or RangeNotSatisfiable (416)."""
    full = ByteRange(0, info.size, info.size)
    if if_match is not None:
        if not matches_strong(if_match, info.etag):
            raise PreconditionFailed(f"the object at {info.key} does not match If-Match")
    elif if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        if since is not None and info.modified > since:
            raise PreconditionFailed(f"the object at {info.key} was modified since then")
    if if_none_match is not None:
        if matches_weak(if_none_match, info.etag):
            return ReadPlan(304, full)
    elif if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        if since is not None and info.modified <= since:
            return ReadPlan(304, full)
    if range_header is None or not _if_range_holds(if_range, info):
        return ReadPlan(200, full)
    selected = select_range(range_header, info.size)
    return ReadPlan(206, selected) if selected is not None else ReadPlan(200, full)


def _if_range_holds(if_range: str | None, info: ObjectInfo) -> bool:
    """If-Range: serve the range only while the object is still the one the client has."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == info.etag  # strong comparison; a weak tag never matches
    date = parse_http_date(value)
    return date is not None and date == info.modified


def select_range(header: str, size: int) -> ByteRange | None:
    """The one byte range a Range header asks for.

    None means "send the whole object": a unit other than bytes, a header that does not
    parse, or several ranges (filedock answers those with 200 and the full body rather
    than multipart/byteranges, which RFC 9110 14.2 allows)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    parts = spec.split(",")
    if len(parts) != 1:
        return None
    match = _RANGE.match(parts[0])
    if match is None or match.group(1) == match.group(2) == "":
        return None
    # Positions past the object are clamped to its size + 1, which keeps their meaning (RFC
    # 9110 14.1.2: a last-byte-pos past the end means the end, a suffix longer than the object
    # means all of it) without int() of a number of any length.
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix range: the last N bytes
        suffix = _position(last, size + 1)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - suffix), size, size)
    if last != "" and _number_key(last) < _number_key(first):
        return None  # invalid range-spec (last before first): ignore the header
    start = _position(first, size + 1)
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = size if last == "" else min(_position(last, size + 1) + 1, size)
    return ByteRange(start, end, size)


def _number_key(digits: str) -> tuple[int, str]:
    """Orders decimal numbers of any length as their values, without converting them."""
    digits = digits.lstrip("0") or "0"
    return len(digits), digits


def _position(digits: str, ceiling: int) -> int:
    """A decimal number, or ceiling if it is larger (so any count of digits is cheap)."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(ceiling)):
        return ceiling
    return min(int(digits), ceiling)


def write_conditions(
    current: ObjectInfo | None, if_match: str | None, if_none_match: str | None
) -> Expect:
    """Turn If-Match / If-None-Match into the store's typed precondition.

    `current` is the object as it was just seen (None if absent); it is needed when either
    header lists tags: the write then proceeds only while the object is still the one seen
    (Matches its SHA-256), so the check and the write are one atomic step."""
    if if_match is not None:
        # If-Match compares strongly (RFC 9110 13.1.1): a W/ tag never matches.
        strong = [tag for tag in parse_etags(if_match) if not tag.startswith("W/")]
        if not strong:
            raise PreconditionFailed("If-Match lists no strong ETag, so nothing can match it")
        if current is None:
            raise PreconditionFailed("there is no object to match If-Match")
        if "*" not in strong and current.etag not in strong:
            raise PreconditionFailed(f"the object at {current.key} does not match If-Match")
    if if_none_match is None:
        return ANYTHING if current is None or if_match is None else Matches(current.sha256)
    if current is not None and matches_weak(if_none_match, current.etag):
        raise PreconditionFailed(f"the object at {current.key} matches If-None-Match")
    if "*" in parse_etags(if_none_match):
        if if_match is not None:  # If-Match needs an object, If-None-Match: * needs none
            raise PreconditionFailed("If-Match and If-None-Match: * cannot both hold")
        return ABSENT
    return ABSENT if current is None else Matches(current.sha256)
