"""Listing pages (API.md sections 4 and 8): which objects a caller sees, one page at a time.
No Flask here.

A listing never describes more than it returns: describing an object a store has not seen
before means hashing it (files put into a local store by hand), so the walk is first narrowed
to the part of the store the caller may read (a token's prefix), keys are filtered before any
object is described, and only the objects of the page are described. Whether another page
follows is decided from the next key alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

from .storage import InvalidKey, ObjectInfo, ObjectNotFound, Storage, check_key
from .storage.base import KeyListing

Candidate: TypeAlias = tuple[str, ObjectInfo | None]


@dataclass(frozen=True)
class Page:
    """One page of a listing."""

    items: list[ObjectInfo]
    more: bool  # another object follows the last one


@dataclass(frozen=True)
class Span:
    """Keys to walk: those starting with prefix, or (exact) the key prefix alone."""

    prefix: str
    exact: bool = False


def spans(prefix: str, readable: str | None) -> list[Span]:
    """The walks that find every key starting with prefix that a caller may read, where
    readable is "" for the whole store, a token's prefix P for P and P/..., None for nothing."""
    if readable is None:
        return []
    if not readable or prefix.startswith(readable + "/"):
        return [Span(prefix)]
    if readable.startswith(prefix):  # P, and the folder P/, both begin with prefix
        return [Span(readable, exact=True), Span(readable + "/")]
    return []  # "team-ab" or "team-b" under a token for team-a: nothing readable


def candidate_keys(storage: Storage, span: Span, after: str) -> Iterator[Candidate]:
    """Keys of one span after `after`, in order, each with its description when the store's
    listing had it anyway (None: describe it only if it is returned)."""
    if span.exact:
        # The key P of a token's prefix comes first in any page that reaches it, so it is
        # described only when it is returned; and no walk goes through P's neighbours (P.txt,
        # Pb/), which the caller may not read.
        if span.prefix > after:
            try:
                yield span.prefix, storage.stat(check_key(span.prefix))
            except (ObjectNotFound, InvalidKey):
                pass
        return
    if isinstance(storage, KeyListing):
        found: Iterator[Candidate] = ((key, None) for key in storage.list_keys(span.prefix, after))
    else:
        found = ((info.key, info) for info in storage.list(span.prefix, after))
    yield from found


def list_page(
    storage: Storage,
    prefix: str,
    after: str,
    limit: int,
    readable: str | None,
    may_read: Callable[[str], bool],
) -> Page:
    """Up to limit objects whose key starts with prefix and sorts after `after`, that the
    caller may read (may_read decides each key; readable narrows the walk beforehand)."""
    items: list[ObjectInfo] = []
    for span in spans(prefix, readable):
        for key, info in candidate_keys(storage, span, after):
            if not _addressable(key) or not may_read(key):
                continue
            if len(items) == limit:
                return Page(items, more=True)
            if info is None:
                try:
                    info = storage.stat(check_key(key))
                except ObjectNotFound:  # removed since it was listed
                    continue
            items.append(info)
    return Page(items, more=False)


def _addressable(key: str) -> bool:
    """Files put into a local store by hand may have names no request can address."""
    try:
        check_key(key)
    except InvalidKey:
        return False
    return True
