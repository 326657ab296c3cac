"""The JSON document rules, without a request: parsing limits, pointers, patches, the cache."""

from __future__ import annotations

import io
import json
import random
import threading
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from filedock import jsondocs
from filedock.jsondocs import (
    DocumentCache,
    InvalidDocument,
    InvalidJson,
    InvalidPatch,
    InvalidPointer,
    JsonTooComplex,
    LoneSurrogate,
    PatchConflict,
    PatchTestFailed,
    PointerNotFound,
)
from filedock.storage import Key, PreconditionFailed, TooLarge, check_key
from filedock.storage.local import LocalStorage
from filedock.storage.memory import MemoryStorage

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
    return jsondocs.apply_json_patch(document, jsondocs.check_json_patch(patch), 1 << 20)


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
    etag: str = storage.put(key, io.BytesIO(data), "application/json").etag
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


# -- JSON Patch: the size of the document is tracked exactly, operation by operation ----------


def sizes_after_each_operation(document: Any, patch: list[dict[str, Any]]) -> list[int]:
    """The serialised size of the document after each operation, applied without a bound."""
    sizes = []
    for end in range(1, len(patch) + 1):
        result = apply(json.loads(json.dumps(document)), patch[:end])
        sizes.append(len(jsondocs.dump_json(result)))
    return sizes


def assert_tracked_exactly(document: Any, patch: list[dict[str, Any]]) -> None:
    """After each operation the run knows the document's exact size: a limit of the largest
    size so far lets the patch through, and one byte less stops it at an operation that grew
    the document to that size."""
    sizes = sizes_after_each_operation(document, patch)
    before = [len(jsondocs.dump_json(document)), *sizes[:-1]]
    for end in range(1, len(patch) + 1):
        peak = max(sizes[:end])
        checked = jsondocs.check_json_patch(patch[:end])
        jsondocs.apply_json_patch(json.loads(json.dumps(document)), checked, peak)
        grew = [i for i in range(end) if sizes[i] == peak and sizes[i] > before[i]]
        if grew:
            with pytest.raises(TooLarge):
                jsondocs.apply_json_patch(json.loads(json.dumps(document)), checked, peak - 1)


TRACKED: list[tuple[Any, list[dict[str, Any]]]] = [
    (
        # the padding keeps what is copied below max_bytes, the copies' own bound
        {"a": 1, "list": [], "obj": {}, 'k"é\n': "ü", "pad": "p" * 400},
        [
            {"op": "add", "path": "/obj/x", "value": "é"},
            {"op": "add", "path": "/obj/y", "value": [1, 2.5, None, True]},
            {"op": "add", "path": "/obj/x", "value": {"deeper": "ß"}},
            {"op": "add", "path": "/list/-", "value": "a"},
            {"op": "add", "path": "/list/0", "value": "b"},
            {"op": "add", "path": "/list/2", "value": {"c": [1]}},
            {"op": "remove", "path": "/list/1"},
            {"op": "replace", "path": "/a", "value": "a much longer value"},
            {"op": "move", "from": "/obj/y", "path": "/moved"},
            {"op": "move", "from": "/list/0", "path": "/list/-"},
            {"op": "move", "from": "/list/1", "path": '/k"é\n'},
            {"op": "copy", "from": "/obj", "path": "/list/0"},
            {"op": "copy", "from": "/obj", "path": "/again"},
            {"op": "test", "path": "/a", "value": "a much longer value"},
            {"op": "remove", "path": "/obj/x"},
            {"op": "remove", "path": "/obj"},
            {"op": "move", "from": "/again", "path": ""},
            {"op": "replace", "path": "", "value": {"fresh": ["start", "é"]}},
            {"op": "add", "path": "/fresh/1", "value": "mid"},
            {"op": "remove", "path": "/fresh/0"},
            {"op": "remove", "path": "/fresh/0"},
            {"op": "remove", "path": "/fresh/0"},
            {"op": "add", "path": "", "value": []},
            {"op": "add", "path": "/-", "value": {}},
            {"op": "add", "path": "/0/", "value": 0},
        ],
    ),
    ([[1], [2, 3]], [{"op": "move", "from": "/0/0", "path": "/1/1"}]),
    ({"a": {"b": {"c": "x" * 50}}}, [{"op": "move", "from": "/a/b", "path": "/a"}]),
    ({"a": {"b": "x"}, "c": "y" * 20}, [{"op": "move", "from": "/a/b", "path": "/c"}]),
]


@pytest.mark.parametrize(("document", "patch"), TRACKED)
def test_patch_size_is_tracked_exactly(document: Any, patch: list[dict[str, Any]]) -> None:
    assert_tracked_exactly(document, patch)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -7, 12345678901234567890, 1.5, -2.25e-8])
    if kind in (2, 3):
        return "".join(rng.choice('ab"\\é\n€😀') for _ in range(rng.randrange(4)))
    if kind in (4, 5):
        return {rng.choice("abcdé\"'"): random_value(rng, depth + 1) for _ in range(4)}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_patch_size_is_tracked_exactly_for_diffs_of_random_documents() -> None:
    rng = random.Random(6902)
    for _ in range(60):
        source, target = random_value(rng, 1), random_value(rng, 1)
        patch = jsonpatch.make_patch(source, target).patch  # add, remove, replace and move
        assert apply(json.loads(json.dumps(source)), patch) == target
        if patch:
            assert_tracked_exactly(source, patch)


def test_doubling_patch_stops_at_the_limit_and_copies_are_bounded() -> None:
    doubling = jsondocs.check_json_patch([{"op": "copy", "from": "/a", "path": "/a/-"}] * 40)
    with pytest.raises(TooLarge, match="operation 7: the patched document would pass 10000"):
        jsondocs.apply_json_patch({"a": [1], "pad": "p" * 9000}, doubling, 10_000)
    # copying and removing again and again keeps the document small, but the copies add up
    churn = [
        {"op": "copy", "from": "/a", "path": "/b"},
        {"op": "remove", "path": "/b"},
    ] * 3
    with pytest.raises(TooLarge, match="copies more than 1000 bytes"):
        apply_bounded({"a": "x" * 400}, churn, 1000)
    assert apply_bounded({"a": "x" * 400}, churn[:4], 1000) == {"a": "x" * 400}
    # moving to the root is measured like a copy; moving elsewhere is not measured at all
    inward = [{"op": "move", "from": "/a", "path": ""}]
    nested: Any = {"a": "x" * 300}
    for _ in range(4):
        nested = {"a": nested, "b": 1}
    with pytest.raises(TooLarge, match="copies more than 1000 bytes"):
        apply_bounded(nested, inward * 4, 1000)
    swaps = [{"op": "move", "from": "/a", "path": "/b"}, {"op": "move", "from": "/b", "path": "/a"}]
    assert apply_bounded({"a": "x" * 900}, swaps * 500, 1000) == {"a": "x" * 900}


def apply_bounded(document: Any, patch: list[dict[str, Any]], max_bytes: int) -> Any:
    return jsondocs.apply_json_patch(document, jsondocs.check_json_patch(patch), max_bytes)


def test_json_patch_operations_are_capped() -> None:
    noop = {"op": "test", "path": "", "value": {}}
    assert jsondocs.MAX_PATCH_OPERATIONS == 1000
    with pytest.raises(TooLarge, match="1001 operations; the limit is 1000"):
        jsondocs.check_json_patch([noop] * 1001)
    assert apply_bounded({}, [noop] * 1000, 100) == {}


# -- lone surrogates and long array indices -----------------------------------------------------


@pytest.mark.parametrize(
    "data", [b'"\\ud800"', b'{"a": "x\\uDC00"}', b'{"\\udbff": 1}', b'["\\ud800\\ud800"]']
)
def test_lone_surrogate_is_not_json(data: bytes) -> None:
    with pytest.raises(LoneSurrogate):
        jsondocs.parse_json(data)


def test_surrogate_pairs_and_escaped_backslashes_are_json() -> None:
    assert jsondocs.parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"
    assert jsondocs.parse_json(b'"\\\\ud800"') == "\\ud800"  # a backslash, then text


def test_serialising_a_lone_surrogate_is_an_invalid_json_error() -> None:
    with pytest.raises(LoneSurrogate):
        jsondocs.dump_json({"a": "\ud800"})


def test_pointer_index_of_thousands_of_digits_is_not_found() -> None:
    with pytest.raises(PointerNotFound):
        jsondocs.resolve_pointer([1, 2], ["9" * 5000])
    assert jsondocs.resolve_pointer({"9" * 5000: 1}, ["9" * 5000]) == 1
