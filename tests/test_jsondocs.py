"""The JSON document rules, without a request: parsing limits, pointers, patches, the cache."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from filedock import jsondocs
from filedock.jsondocs import (
    DocumentCache,
    InvalidDocument,
    InvalidJson,
    InvalidPatch,
    InvalidPointer,
    JsonTooComplex,
    PatchConflict,
    PatchTestFailed,
    PointerNotFound,
)
from filedock.storage import Key, LocalStorage, MemoryStorage, PreconditionFailed, check_key

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "data",
    [DEEP, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b"1" * 1_000_000, b"[1e400]",
     b"-" + b"9" * 1_000_000 + b".5", b"[" * 100_000],
)  # fmt: skip
def test_parser_limits_are_too_complex(data: bytes) -> None:
    with pytest.raises(JsonTooComplex):
        jsondocs.parse_json(data)


@pytest.mark.parametrize("data", [b"", b"nope", b"NaN", b"[Infinity]", b"\xff{}", b"{} {}"])
def test_not_json(data: bytes) -> None:
    with pytest.raises(InvalidJson) as info:
        jsondocs.parse_json(data)
    assert not isinstance(info.value, JsonTooComplex)


def test_parse_keeps_member_order_and_big_but_allowed_numbers() -> None:
    value = jsondocs.parse_json(b'{"z": 1, "a": [' + b"7" * 4000 + b", 1.5e300]}")
    assert list(value) == ["z", "a"]
    assert value["a"][0] == int("7" * 4000)


def test_dump_is_compact_utf8() -> None:
    assert jsondocs.dump_json({"é": [1, "x"]}) == '{"é":[1,"x"]}'.encode()


DOC: dict[str, Any] = {
    "foo": ["bar", "baz"],
    "": 0,
    "a/b": 1,
    "c%d": 2,
    "e^f": 3,
    "g|h": 4,
    "i\\j": 5,
    'k"l': 6,
    " ": 7,
    "m~n": 8,
    "s": "text",
}


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [  # RFC 6901 section 5, plus a string that must not be indexed like an array
        ("", DOC),
        ("/foo", ["bar", "baz"]),
        ("/foo/0", "bar"),
        ("/", 0),
        ("/a~1b", 1),
        ("/c%d", 2),
        ("/e^f", 3),
        ("/g|h", 4),
        ("/i\\j", 5),
        ('/k"l', 6),
        ("/ ", 7),
        ("/m~0n", 8),
    ],
)
def test_rfc6901_examples(pointer: str, expected: Any) -> None:
    assert jsondocs.resolve_pointer(DOC, jsondocs.parse_pointer(pointer)) == expected


@pytest.mark.parametrize(
    "pointer", ["/foo/2", "/foo/-", "/foo/01", "/foo/x", "/s/0", "/nope", "/foo/0/x"]
)
def test_pointer_not_found(pointer: str) -> None:
    with pytest.raises(PointerNotFound):
        jsondocs.resolve_pointer(DOC, jsondocs.parse_pointer(pointer))


@pytest.mark.parametrize("pointer", ["foo", "/~2", "/a~", "#/foo"])
def test_malformed_pointer(pointer: str) -> None:
    with pytest.raises(InvalidPointer):
        jsondocs.parse_pointer(pointer)


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7396 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_rfc7396_examples(target: Any, patch: Any, result: Any) -> None:
    before = json.dumps(target)
    assert jsondocs.merge_patch(target, patch) == result
    assert json.dumps(target) == before  # the (cached, shared) target is never modified


@pytest.mark.parametrize(
    "patch",
    [
        {"op": "add", "path": "/a", "value": 1},
        [{"path": "/a"}],
        [{"op": "frobnicate", "path": "/a"}],
        [{"op": "add", "path": "/a"}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "move", "path": "/a"}],
        [{"op": "copy", "from": 1, "path": "/a"}],
        [{"op": "remove", "path": 5}],
        ["add"],
    ],
)
def test_malformed_json_patch(patch: Any) -> None:
    with pytest.raises(InvalidPatch):
        jsondocs.check_json_patch(patch)


def apply(document: Any, patch: list[dict[str, Any]]) -> Any:
    return jsondocs.apply_json_patch(document, jsondocs.check_json_patch(patch))


def test_all_six_operations() -> None:
    document = {"a": 1, "list": [1, 2, 3], "obj": {"x": 1}}
    result = apply(
        document,
        [
            {"op": "test", "path": "/a", "value": 1.0},
            {"op": "add", "path": "/list/1", "value": "new"},
            {"op": "add", "path": "/list/-", "value": "end"},
            {"op": "remove", "path": "/list/0"},
            {"op": "replace", "path": "/a", "value": {"b": True}},
            {"op": "move", "from": "/obj/x", "path": "/moved"},
            {"op": "copy", "from": "/a", "path": "/obj/copy"},
        ],
    )
    assert result == {
        "a": {"b": True},
        "list": ["new", 2, 3, "end"],
        "obj": {"copy": {"b": True}},
        "moved": 1,
    }


@pytest.mark.parametrize(
    ("path", "value"), [("/a", True), ("/a", 2), ("/s/0", "t"), ("/nope", None), ("/o", {"k": 1})]
)
def test_test_operation_compares_as_json(path: str, value: Any) -> None:
    with pytest.raises(PatchTestFailed):
        apply(
            {"a": 1, "s": "text", "o": {"k": True}},
            [{"op": "test", "path": path, "value": value}],
        )


@pytest.mark.parametrize(
    "op",
    [
        {"op": "remove", "path": "/nope"},
        {"op": "replace", "path": "/nope", "value": 1},
        {"op": "add", "path": "/nope/deeper", "value": 1},
        {"op": "add", "path": "/list/9", "value": 1},
        {"op": "move", "from": "/nope", "path": "/b"},
        {"op": "move", "from": "/o", "path": "/o/inside"},
        {"op": "add", "path": "/s/0", "value": 1},
    ],
)
def test_patch_that_does_not_apply_is_a_conflict(op: dict[str, Any]) -> None:
    with pytest.raises(PatchConflict):
        apply({"list": [], "s": "text", "o": {}}, [op])


def write(storage: Any, key: Key, data: bytes) -> str:
    etag: str = storage.write(key, io.BytesIO(data), "application/json").etag
    return etag


def test_cache_follows_hand_edits(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path))
    cache = DocumentCache()
    key = check_key("doc.json")
    (tmp_path / "doc.json").write_bytes(b'{"v": 1}')
    first = jsondocs.get_document(storage, key, 1000, cache)
    assert first.value() == {"v": 1}
    assert jsondocs.get_document(storage, key, 1000, cache) is first  # served from the cache
    (tmp_path / "doc.json").write_bytes(b'{"v": 22}')  # by hand, behind the server's back
    second = jsondocs.get_document(storage, key, 1000, cache)
    assert second.value() == {"v": 22}
    assert second.etag == jsondocs.etag_of(b'{"v": 22}') != first.etag


def test_cache_is_bounded() -> None:
    entry = jsondocs.ENTRY_OVERHEAD_BYTES + 40
    storage, cache = MemoryStorage(), DocumentCache(max_bytes=3 * entry)
    keys = [check_key(f"d{i}.json") for i in range(5)]
    for key in keys:
        write(storage, key, b'"' + b"x" * 38 + b'"')
        jsondocs.get_document(storage, key, 1000, cache)
    assert cache.get(keys[1], storage.stat(keys[1]).etag) is None
    assert cache.get(keys[4], storage.stat(keys[4]).etag) is not None
    assert len(cache) == 3 and cache.size == 3 * entry


def test_cache_holds_one_version_per_document() -> None:
    storage, cache = MemoryStorage(), DocumentCache()
    key = check_key("counter.json")
    write(storage, key, b'{"n": 0}')
    for n in range(1, 200):
        jsondocs.patch_document(storage, key, jsondocs.merge_patcher({"n": n}), 1000, cache=cache)
    assert len(cache) == 1
    doc = jsondocs.get_document(storage, key, 1000, cache)
    assert doc.value() == {"n": 199}
    assert cache.size == doc.cost < 2 * jsondocs.ENTRY_OVERHEAD_BYTES


def test_cache_counts_parsed_values_and_derived_bodies() -> None:
    storage, cache = MemoryStorage(), DocumentCache()
    key = check_key("many.json")
    data = b"[" + b",".join([b"{}"] * 10_000) + b"]"
    write(storage, key, data)
    doc = jsondocs.get_document(storage, key, 1 << 20, cache)
    before = cache.size
    assert len(doc.value()) == 10_000
    assert cache.size > before + 20 * len(data)  # the parsed value is many times the text
    grown = cache.size
    assert doc.derived("body", lambda d: b"x" * 5000) == b"x" * 5000
    assert cache.size == grown + 5000 == doc.cost


def test_cache_evicts_what_it_grew_past() -> None:
    storage = MemoryStorage()
    keys = [check_key(f"d{i}.json") for i in range(2)]
    for key in keys:
        write(storage, key, b"[" + b",".join([b"{}"] * 2000) + b"]")
    cache = DocumentCache(max_bytes=250_000)
    docs = [jsondocs.get_document(storage, key, 1 << 20, cache) for key in keys]
    assert len(cache) == 2
    for doc in docs:
        doc.value()  # ~150 KB each once parsed: the first must go
    assert cache.get(keys[0], docs[0].etag) is None and cache.size <= cache.max_bytes
    assert cache.get(keys[1], docs[1].etag) is docs[1]


def test_a_large_documents_parsed_value_is_not_kept() -> None:
    storage, cache = MemoryStorage(), DocumentCache()
    key = check_key("large.json")
    data = b"[" + b",".join([b"{}"] * (jsondocs.KEEP_PARSED_BYTES // 2)) + b"]"
    write(storage, key, data)
    doc = jsondocs.get_document(storage, key, 1 << 20, cache)
    doc.check()
    assert doc.value() is not doc.value()  # parsed for each use
    assert cache.size == doc.cost == jsondocs.ENTRY_OVERHEAD_BYTES + len(data)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"[" + b"{}," * 200_000 + b"oops]", InvalidDocument),
        (b"[" + b"1," * 200_000 + b"1e999]", JsonTooComplex),
        (b"[" + b"1," * 200_000 + b"1" * 5000 + b"]", JsonTooComplex),
        (b"[" + b"1," * 200_000 + b"NaN]", InvalidDocument),
        (b'["\xff' + b"1," * 200_000 + b'"]', InvalidDocument),
        (b"[" * 200_000 + b"]" * 200_000, JsonTooComplex),
    ],
)
def test_a_large_document_is_checked_as_a_small_one_is(data: bytes, error: type) -> None:
    storage = MemoryStorage()
    key = check_key("large.json")
    write(storage, key, data)
    doc = jsondocs.get_document(storage, key, 1 << 20, DocumentCache())
    assert len(data) > jsondocs.KEEP_PARSED_BYTES
    for _ in range(2):
        with pytest.raises(error):
            doc.check()
    with pytest.raises(error):
        doc.value()


def test_invalid_stored_document() -> None:
    storage = MemoryStorage()
    key = check_key("bad.json")
    write(storage, key, b"{oops")
    doc = jsondocs.get_document(storage, key, 1000, DocumentCache())
    for _ in range(2):  # the error is remembered, and raised again
        with pytest.raises(InvalidDocument):
            doc.value()


def test_patch_retries_when_it_loses_the_race() -> None:
    storage = MemoryStorage()
    key = check_key("n.json")
    write(storage, key, b'{"n": 0}')
    raced = threading.Event()

    def increment(doc: jsondocs.Document) -> Any:
        value = doc.fresh_value()
        if not raced.is_set():  # another writer commits between our read and our write
            raced.set()
            write(storage, key, b'{"n": 10}')
        value["n"] += 1
        return value

    written = jsondocs.patch_document(storage, key, increment, 1000, cache=DocumentCache())
    assert json.loads(written.data) == {"n": 11}


def test_patch_with_if_match_does_not_retry() -> None:
    storage = MemoryStorage()
    key = check_key("n.json")
    etag = write(storage, key, b'{"n": 0}')

    def racing(doc: jsondocs.Document) -> Any:
        write(storage, key, b'{"n": 10}')
        return {"n": 1}

    with pytest.raises(PreconditionFailed):
        jsondocs.patch_document(storage, key, racing, 1000, if_match=etag, cache=DocumentCache())
    assert storage.open(key).read() == b'{"n": 10}'
