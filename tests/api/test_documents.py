"""JSON documents (API.md section 5), through Flask's test client and a live server."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from filedock.api.documents import OPENAPI_PATHS
from filedock.app import create_app
from filedock.config import Settings
from filedock.openapi import build_document
from tests.conftest import start_server
from tests.hostile import HOSTILE_URL_PATHS

URL = "/api/v1/json/"
LABELS = {"ironman": "1", "deadpool": "2", "thor": "3", "thanos": "snapItAll"}
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_NUMBER = b"1" * 1_000_000


def etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def assert_problem(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body is not None
    assert body["status"] == status and body["code"] == code and body["type"] == "about:blank"


def stored(store_dir: Path, path: str) -> Any:
    return json.loads((store_dir / path).read_bytes())


@pytest.fixture
def labels(store_dir: Path) -> bytes:
    data = json.dumps(LABELS, indent=2).encode()
    (store_dir / "labels.json").write_bytes(data)
    return data


@pytest.fixture
def small_app(store_dir: Path) -> Flask:
    return create_app(Settings(store=str(store_dir), max_json_bytes=1000))


# -- GET -------------------------------------------------------------------------------------


def test_get_serves_the_stored_bytes(client: FlaskClient, labels: bytes) -> None:
    response = client.get(URL + "labels.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.data == labels  # verbatim: formatting and member order kept
    assert response.headers["ETag"] == etag(labels)


def test_get_missing_is_404(client: FlaskClient) -> None:
    assert_problem(client.get(URL + "nope.json"), 404, "not-found")


def test_get_a_folder_is_404(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "folder").mkdir()
    assert_problem(client.get(URL + "folder"), 404, "not-found")


def test_conditional_get(client: FlaskClient, labels: bytes) -> None:
    response = client.get(URL + "labels.json", headers={"If-None-Match": etag(labels)})
    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == etag(labels)
    weak = client.get(URL + "labels.json", headers={"If-None-Match": '"x", W/' + etag(labels)})
    assert weak.status_code == 304
    other = client.get(URL + "labels.json", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200 and other.data == labels


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("/a/0/b", "x"),
        ("/a/1", [1, 2]),
        ("/a/1/1", 2),
        ("/m~0n", "tilde"),
        ("/x~1y", "slash"),
        ("/", "empty"),
        ("/obj", {"z": None, "y": False}),
        ("", None),
    ],
)
def test_get_pointer(client: FlaskClient, store_dir: Path, pointer: str, expected: Any) -> None:
    data = b'{"a": [{"b": "x"}, [1, 2]], "m~n": "tilde", "x/y": "slash", "": "empty",'
    data += b' "obj": {"z": null, "y": false}}'
    (store_dir / "doc.json").write_bytes(data)
    response = client.get(URL + "doc.json", query_string={"pointer": pointer})
    assert response.status_code == 200, response.data
    assert response.mimetype == "application/json"
    assert response.headers["ETag"] == etag(data)  # the document's ETag
    if pointer:
        assert response.json == expected
    else:
        assert response.data == data


def test_pointer_with_escapes_in_the_url(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "doc.json").write_text('{"a/b": {"c d": 1}}')
    assert client.get(URL + "doc.json?pointer=%2Fa~1b%2Fc%20d").json == 1


@pytest.mark.parametrize("pointer", ["/nope", "/a/2", "/a/-", "/a/01", "/a/x", "/s/0", "/a/0/q"])
def test_pointer_not_found(client: FlaskClient, store_dir: Path, pointer: str) -> None:
    (store_dir / "doc.json").write_text('{"a": [1, {"b": 2}], "s": "text"}')
    response = client.get(URL + "doc.json", query_string={"pointer": pointer})
    assert_problem(response, 404, "pointer-not-found")


@pytest.mark.parametrize("pointer", ["a", "a/b", "/~2", "/x~"])
def test_malformed_pointer_is_400(client: FlaskClient, store_dir: Path, pointer: str) -> None:
    (store_dir / "doc.json").write_text('{"a": 1}')
    response = client.get(URL + "doc.json", query_string={"pointer": pointer})
    assert_problem(response, 400, "bad-request")


@pytest.mark.parametrize(
    "content", [b"not json", b"\xff\xfe{}", b"{'a': 1}", b"NaN", b"", b"\xef\xbb\xbf{}"]
)
def test_stored_object_not_json_is_422(
    client: FlaskClient, store_dir: Path, content: bytes
) -> None:
    (store_dir / "bad.json").write_bytes(content)
    for _ in range(2):  # also when the verdict comes from the cache
        assert_problem(client.get(URL + "bad.json"), 422, "invalid-json")
    assert_problem(client.get(URL + "bad.json?pointer=/a"), 422, "invalid-json")


@pytest.mark.parametrize("content", [DEEP, HUGE_NUMBER, b"[" * 100_000, b"[1e999]"])
def test_stored_document_past_parser_limits_is_413(
    client: FlaskClient, store_dir: Path, content: bytes
) -> None:
    (store_dir / "hostile.json").write_bytes(content)
    assert_problem(client.get(URL + "hostile.json"), 413, "too-large")
    assert_problem(client.get(URL + "hostile.json?pointer=/0"), 413, "too-large")
    response = client.patch(URL + "hostile.json", data=b"{}", content_type=MERGE)
    assert_problem(response, 413, "too-large")


def test_stored_document_over_max_json_bytes_is_413(small_app: Flask, store_dir: Path) -> None:
    (store_dir / "big.json").write_text(json.dumps(["x" * 1000]))
    client = small_app.test_client()
    assert_problem(client.get(URL + "big.json"), 413, "too-large")
    assert_problem(client.patch(URL + "big.json", data=b"{}", content_type=MERGE), 413, "too-large")


def test_hand_edit_is_seen_at_once(client: FlaskClient, store_dir: Path) -> None:
    path = store_dir / "doc.json"
    path.write_text('{"v": 1}')
    assert client.get(URL + "doc.json?pointer=/v").json == 1
    path.write_text('{"v": 2, "w": 3}')
    assert client.get(URL + "doc.json?pointer=/v").json == 2
    assert client.get(URL + "doc.json").data == b'{"v": 2, "w": 3}'


@pytest.mark.parametrize("path", HOSTILE_URL_PATHS)
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH"])
def test_hostile_paths_are_400(
    client: FlaskClient, store_dir: Path, path: str, method: str
) -> None:
    before = sorted(p.name for p in store_dir.parent.rglob("*"))
    response = client.open(URL + path, method=method, data=b"{}", content_type=MERGE)
    assert_problem(response, 400, "invalid-path")
    assert "secret" not in response.get_data(as_text=True)
    assert sorted(p.name for p in store_dir.parent.rglob("*")) == before
    assert (store_dir.parent / "sentinel.json").read_text() == '{"secret": "sentinel"}'


def test_symlink_out_of_the_store_is_404(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "link.json").symlink_to(store_dir.parent / "sentinel.json")
    response = client.get(URL + "link.json")
    assert_problem(response, 404, "not-found")
    assert "secret" not in response.get_data(as_text=True)


# -- PUT -------------------------------------------------------------------------------------


def test_put_creates_then_replaces(client: FlaskClient, store_dir: Path) -> None:
    body = b'{ "b": 1,  "a": [true] }\n'
    response = client.put(URL + "labels/new.json", data=body, content_type="application/json")
    assert response.status_code == 201
    assert response.headers["ETag"] == etag(body)
    assert response.headers["Location"] == "/api/v1/json/labels/new.json"
    meta = response.json
    assert meta is not None
    assert set(meta) == {"path", "size", "sha256", "etag", "content_type", "modified"}
    assert meta["path"] == "labels/new.json" and meta["size"] == len(body)
    assert meta["sha256"] == hashlib.sha256(body).hexdigest() and meta["etag"] == etag(body)
    assert meta["content_type"] == "application/json"
    assert meta["modified"].endswith("Z") and len(meta["modified"]) == 20
    assert (store_dir / "labels" / "new.json").read_bytes() == body  # stored as sent
    assert client.get(URL + "labels/new.json").data == body

    replaced = client.put(URL + "labels/new.json", data=b"[1]")
    assert replaced.status_code == 200
    assert replaced.headers["ETag"] == etag(b"[1]")
    assert client.get(URL + "labels/new.json").data == b"[1]"


def test_put_location_is_percent_encoded(client: FlaskClient) -> None:
    response = client.put(URL + "dir%20x/é.json", data=b"1")
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/json/dir%20x/%C3%A9.json"
    assert client.get(response.headers["Location"]).data == b"1"


@pytest.mark.parametrize(
    "body", [b"", b"{", b"{'a': 1}", b"NaN", b"[Infinity]", b"\xff", b"1 2", b'{"a":1}}']
)
def test_put_not_json_is_400(client: FlaskClient, store_dir: Path, body: bytes) -> None:
    assert_problem(client.put(URL + "doc.json", data=body), 400, "invalid-json")
    assert not (store_dir / "doc.json").exists()


@pytest.mark.parametrize("body", [DEEP, HUGE_NUMBER, b"[" * 100_000, b"[1e400]"])
def test_put_past_parser_limits_is_413(client: FlaskClient, store_dir: Path, body: bytes) -> None:
    assert_problem(client.put(URL + "doc.json", data=body), 413, "too-large")
    assert not (store_dir / "doc.json").exists()


def test_put_over_max_json_bytes(small_app: Flask, store_dir: Path) -> None:
    client = small_app.test_client()
    body = json.dumps(["x" * 1000]).encode()
    assert_problem(client.put(URL + "doc.json", data=body), 413, "too-large")
    assert client.put(URL + "doc.json", data=b"[" + b" " * 998 + b"]").status_code == 201


def test_put_over_limit_without_content_length(small_app: Flask, store_dir: Path) -> None:
    client = small_app.test_client()

    body = io.BytesIO(b'["' + b"x" * 10_000 + b'"]')
    chunked = {"wsgi.input_terminated": True}  # no Content-Length: gunicorn ends the stream
    response = client.put(
        URL + "doc.json",
        input_stream=body,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides=chunked,
    )
    assert_problem(response, 413, "too-large")
    assert "larger than 1000 bytes" in response.json["detail"]  # stopped while reading
    assert not (store_dir / "doc.json").exists()
    assert list((store_dir / ".filedock" / "staging").iterdir()) == []


def content_digest(data: bytes, algorithm: str = "sha256") -> str:
    name = {"sha256": "sha-256", "sha512": "sha-512"}[algorithm]
    return f"{name}=:{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}:"


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_put_and_patch_check_content_digest(
    client: FlaskClient, labels: bytes, store_dir: Path, algorithm: str
) -> None:
    body = b'{"a": 1}'
    wrong = {"Content-Digest": content_digest(b'{"a": 2}', algorithm)}
    assert_problem(client.put(URL + "doc.json", data=body, headers=wrong), 400, "digest-mismatch")
    assert not (store_dir / "doc.json").exists()
    right = {"Content-Digest": content_digest(body, algorithm)}
    assert client.put(URL + "doc.json", data=body, headers=right).status_code == 201
    response = client.patch(URL + "labels.json", data=body, content_type=MERGE, headers=wrong)
    assert_problem(response, 400, "digest-mismatch")
    assert (store_dir / "labels.json").read_bytes() == labels
    response = client.patch(URL + "labels.json", data=body, content_type=MERGE, headers=right)
    assert response.status_code == 200 and response.json["a"] == 1
    malformed = {"Content-Digest": "sha-256=abc"}
    response = client.put(URL + "doc.json", data=body, headers=malformed)
    assert response.status_code == 400


def test_put_if_none_match_star(client: FlaskClient) -> None:
    headers = {"If-None-Match": "*"}
    assert client.put(URL + "doc.json", data=b"1", headers=headers).status_code == 201
    response = client.put(URL + "doc.json", data=b"2", headers=headers)
    assert_problem(response, 412, "precondition-failed")
    assert client.get(URL + "doc.json").data == b"1"


def test_put_if_match(client: FlaskClient) -> None:
    missing = client.put(URL + "doc.json", data=b"1", headers={"If-Match": etag(b"1")})
    assert_problem(missing, 412, "precondition-failed")
    client.put(URL + "doc.json", data=b"1")
    wrong = client.put(URL + "doc.json", data=b"2", headers={"If-Match": etag(b"0")})
    assert_problem(wrong, 412, "precondition-failed")
    weak = client.put(URL + "doc.json", data=b"2", headers={"If-Match": "W/" + etag(b"1")})
    assert_problem(weak, 412, "precondition-failed")  # If-Match compares strongly
    right = client.put(URL + "doc.json", data=b"2", headers={"If-Match": etag(b"1")})
    assert right.status_code == 200
    assert client.get(URL + "doc.json").data == b"2"


def test_put_conflicts_with_the_tree(client: FlaskClient) -> None:
    client.put(URL + "a", data=b"1")
    assert_problem(client.put(URL + "a/b.json", data=b"1"), 409, "conflict")


def test_put_is_refused_when_read_only(store_dir: Path) -> None:
    client = create_app(Settings(store=str(store_dir), read_only=True)).test_client()
    assert_problem(client.put(URL + "doc.json", data=b"1"), 403, "read-only")
    assert_problem(client.patch(URL + "doc.json", data=b"{}", content_type=MERGE), 403, "read-only")


def test_documents_are_objects_of_the_store(client: FlaskClient, store_dir: Path) -> None:
    client.put(URL + "labelsFile.json", data=json.dumps(LABELS))
    response = client.get("/getJsonFromFile/labelsFile.json")
    assert response.json == {"STATUS": "true", "LABELS_MAPPING": LABELS}
    client.patch(URL + "labelsFile.json", data=b'{"thor": "4"}', content_type=MERGE)
    response = client.get("/getJsonFromFile/labelsFile.json")
    assert response.json == {"STATUS": "true", "LABELS_MAPPING": LABELS | {"thor": "4"}}
    assert stored(store_dir, "labelsFile.json") == LABELS | {"thor": "4"}


# -- PATCH -----------------------------------------------------------------------------------


def test_merge_patch(client: FlaskClient, labels: bytes, store_dir: Path) -> None:
    patch = {"thor": "33", "thanos": None, "new": {"a": [1]}}
    response = client.patch(URL + "labels.json", data=json.dumps(patch), content_type=MERGE)
    assert response.status_code == 200, response.data
    assert response.mimetype == "application/json"
    expected = {"ironman": "1", "deadpool": "2", "thor": "33", "new": {"a": [1]}}
    assert response.json == expected
    assert list(response.json) == list(expected)  # member order kept
    assert response.headers["ETag"] == etag(response.data)
    on_disk = (store_dir / "labels.json").read_bytes()
    assert on_disk == response.data  # the response is exactly what was stored
    assert client.get(URL + "labels.json").headers["ETag"] == response.headers["ETag"]


def test_merge_patch_with_charset(client: FlaskClient, labels: bytes) -> None:
    response = client.patch(
        URL + "labels.json", data=b'{"a": 1}', content_type=MERGE + "; charset=utf-8"
    )
    assert response.status_code == 200 and response.json["a"] == 1


def test_json_patch_all_operations(client: FlaskClient, store_dir: Path) -> None:
    client.put(URL + "doc.json", data=b'{"a": 1, "list": [1, 2, 3], "obj": {"x": 1}}')
    patch = [
        {"op": "test", "path": "/a", "value": 1},
        {"op": "add", "path": "/list/1", "value": "new"},
        {"op": "remove", "path": "/list/0"},
        {"op": "replace", "path": "/a", "value": {"b": True}},
        {"op": "move", "from": "/obj/x", "path": "/moved"},
        {"op": "copy", "from": "/a", "path": "/obj/copy"},
    ]
    response = client.patch(URL + "doc.json", data=json.dumps(patch), content_type=JSON_PATCH)
    assert response.status_code == 200, response.data
    expected = {"a": {"b": True}, "list": ["new", 2, 3], "obj": {"copy": {"b": True}}, "moved": 1}
    assert response.json == expected
    assert stored(store_dir, "doc.json") == expected
    assert response.headers["ETag"] == etag((store_dir / "doc.json").read_bytes())


def test_json_patch_can_replace_the_root(client: FlaskClient) -> None:
    client.put(URL + "doc.json", data=b'{"a": 1}')
    patch = b'[{"op": "replace", "path": "", "value": [42]}]'
    assert client.patch(URL + "doc.json", data=patch, content_type=JSON_PATCH).json == [42]


def test_failed_test_is_409_and_stores_nothing(client: FlaskClient, labels: bytes) -> None:
    patch = [
        {"op": "replace", "path": "/thor", "value": "changed"},
        {"op": "test", "path": "/ironman", "value": 1},  # "1" is a string, not a number
    ]
    response = client.patch(URL + "labels.json", data=json.dumps(patch), content_type=JSON_PATCH)
    assert_problem(response, 409, "patch-test-failed")
    assert client.get(URL + "labels.json").data == labels


def test_patch_target_missing_is_409_conflict(client: FlaskClient, labels: bytes) -> None:
    patch = b'[{"op": "remove", "path": "/nobody"}]'
    response = client.patch(URL + "labels.json", data=patch, content_type=JSON_PATCH)
    assert_problem(response, 409, "conflict")
    assert client.get(URL + "labels.json").data == labels


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", MERGE),
        (b"", MERGE),
        (b"{not json", JSON_PATCH),
        (b'{"op": "add", "path": "/a", "value": 1}', JSON_PATCH),
        (b'[{"op": "jump", "path": "/a"}]', JSON_PATCH),
        (b'[{"op": "add", "path": "/a"}]', JSON_PATCH),
        (b'[{"op": "add", "path": "a", "value": 1}]', JSON_PATCH),
        (b'[{"op": "move", "path": "/a"}]', JSON_PATCH),
        (b'[{"path": "/a"}]', JSON_PATCH),
        (b"[1]", JSON_PATCH),
    ],
)
def test_malformed_patch_is_400(
    client: FlaskClient, labels: bytes, body: bytes, content_type: str
) -> None:
    response = client.patch(URL + "labels.json", data=body, content_type=content_type)
    assert_problem(response, 400, "invalid-patch")
    assert client.get(URL + "labels.json").data == labels


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_other_media_types_are_415(
    client: FlaskClient, labels: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.patch(URL + "labels.json", data=b"{}", headers=headers)
    assert_problem(response, 415, "unsupported-media-type")
    accepted = response.headers["Accept-Patch"]
    assert MERGE in accepted and JSON_PATCH in accepted


@pytest.mark.parametrize("content_type", [MERGE, JSON_PATCH])
def test_patch_missing_document_is_404(
    client: FlaskClient, store_dir: Path, content_type: str
) -> None:
    body = b"{}" if content_type == MERGE else b"[]"
    response = client.patch(URL + "nope.json", data=body, content_type=content_type)
    assert_problem(response, 404, "not-found")
    assert not (store_dir / "nope.json").exists()


def test_patch_result_over_max_json_bytes_is_413(small_app: Flask, store_dir: Path) -> None:
    (store_dir / "doc.json").write_text('{"a": 1}')
    client = small_app.test_client()
    patch = {"big": "x" * 600}
    response = client.patch(URL + "doc.json", data=json.dumps(patch), content_type=MERGE)
    assert response.status_code == 200
    patch = {"bigger": "y" * 600}
    response = client.patch(URL + "doc.json", data=json.dumps(patch), content_type=MERGE)
    assert_problem(response, 413, "too-large")
    assert stored(store_dir, "doc.json") == {"a": 1, "big": "x" * 600}
    body = json.dumps([{"op": "copy", "from": "/big", "path": "/again"}])
    response = client.patch(URL + "doc.json", data=body, content_type=JSON_PATCH)
    assert_problem(response, 413, "too-large")
    assert stored(store_dir, "doc.json") == {"a": 1, "big": "x" * 600}
    assert list((store_dir / ".filedock" / "staging").iterdir()) == []


def test_patch_body_over_max_json_bytes_is_413(small_app: Flask, store_dir: Path) -> None:
    (store_dir / "doc.json").write_text("{}")
    client = small_app.test_client()
    response = client.patch(URL + "doc.json", data=b" " * 2000 + b"{}", content_type=MERGE)
    assert_problem(response, 413, "too-large")


@pytest.mark.parametrize("body", [DEEP, HUGE_NUMBER, b'{"a": 1e400}', b'{"a":' * 100_000])
@pytest.mark.parametrize("content_type", [MERGE, JSON_PATCH])
def test_hostile_patch_is_never_a_500(
    client: FlaskClient, labels: bytes, body: bytes, content_type: str
) -> None:
    response = client.patch(URL + "labels.json", data=body, content_type=content_type)
    assert response.status_code in (400, 413), response.data
    assert client.get(URL + "labels.json").data == labels


def test_patch_building_a_deep_document_is_never_a_500(client: FlaskClient) -> None:
    client.put(URL + "doc.json", data=b"{}")
    depth = 600  # parses (under the parser's limit), but the patched result may not serialise
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    for _ in range(3):
        response = client.patch(URL + "doc.json", data=b'{"n":' + nested + b"}", content_type=MERGE)
        assert response.status_code in (200, 400, 413), response.data
        value = b'[{"op": "copy", "from": "", "path": "/again"}]'
        response = client.patch(URL + "doc.json", data=value, content_type=JSON_PATCH)
        assert response.status_code in (200, 400, 413), response.data


def test_patch_stored_object_not_json_is_422(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "bad.json").write_bytes(b"{nope")
    response = client.patch(URL + "bad.json", data=b"{}", content_type=MERGE)
    assert_problem(response, 422, "invalid-json")
    assert (store_dir / "bad.json").read_bytes() == b"{nope"


def test_patch_if_match(client: FlaskClient, labels: bytes) -> None:
    stale = client.patch(
        URL + "labels.json", data=b'{"a": 1}', content_type=MERGE, headers={"If-Match": '"x"'}
    )
    assert_problem(stale, 412, "precondition-failed")
    assert client.get(URL + "labels.json").data == labels
    headers = {"If-Match": etag(labels)}
    fresh = client.patch(URL + "labels.json", data=b'{"a": 1}', content_type=MERGE, headers=headers)
    assert fresh.status_code == 200
    # The ETag from a pointer read is the document's, so it works as If-Match too.
    read = client.get(URL + "labels.json?pointer=/a")
    again = client.patch(
        URL + "labels.json",
        data=b'[{"op": "replace", "path": "/a", "value": 2}]',
        content_type=JSON_PATCH,
        headers={"If-Match": read.headers["ETag"]},
    )
    assert again.status_code == 200 and again.json["a"] == 2


def test_patch_if_match_on_missing_document_is_412(client: FlaskClient) -> None:
    response = client.patch(
        URL + "nope.json", data=b"{}", content_type=MERGE, headers={"If-Match": etag(b"{}")}
    )
    assert_problem(response, 412, "precondition-failed")


def test_concurrent_patches_in_one_process(client: FlaskClient, app: Flask) -> None:
    client.put(URL + "counter.json", data=b'{"n": 0}')
    errors: list[str] = []

    def add_keys(worker: int) -> None:
        with app.test_client() as own:
            for i in range(10):
                body = json.dumps({f"w{worker}-{i}": i})
                response = own.patch(URL + "counter.json", data=body, content_type=MERGE)
                if response.status_code != 200:
                    errors.append(response.get_data(as_text=True))

    threads = [threading.Thread(target=add_keys, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    document = client.get(URL + "counter.json").json
    assert document is not None
    assert {f"w{w}-{i}" for w in range(6) for i in range(10)} <= set(document)


# -- OpenAPI fragments -----------------------------------------------------------------------


def test_openapi_fragments_cover_every_status() -> None:
    item = OPENAPI_PATHS["/api/v1/json/{path}"]
    assert item["parameters"][0]["name"] == "path"
    assert {"400", "403", "404", "413", "422"} <= set(item["get"]["responses"])
    assert {"200", "201", "400", "409", "412", "413"} <= set(item["put"]["responses"])
    assert {"200", "400", "404", "409", "412", "413", "415", "422"} <= set(
        item["patch"]["responses"]
    )
    assert set(item["patch"]["requestBody"]["content"]) == {MERGE, JSON_PATCH, "application/json"}
    refs = {
        part.split("/")[-1]
        for part in json.dumps(OPENAPI_PATHS).split('"')
        if part.startswith("#/components/schemas/")
    }
    assert refs <= set(build_document()["components"]["schemas"])


# -- end to end: 4 worker processes, many threads --------------------------------------------


def test_no_update_is_lost_across_workers(store_dir: Path) -> None:
    server = start_server("--store", str(store_dir), "--port", "0", "--workers", "4")
    try:
        url = server.url + URL + "shared.json"
        assert requests.put(url, data=b'{"counter": 0}', timeout=30).status_code == 201
        failures: list[str] = []

        def increment() -> None:
            with requests.Session() as session:
                done = 0
                while done < 25:
                    value = session.get(url, params={"pointer": "/counter"}, timeout=30).json()
                    patch = [
                        {"op": "test", "path": "/counter", "value": value},
                        {"op": "replace", "path": "/counter", "value": value + 1},
                    ]
                    response = session.patch(
                        url,
                        data=json.dumps(patch),
                        headers={"Content-Type": JSON_PATCH},
                        timeout=30,
                    )
                    if response.status_code == 200:
                        done += 1
                    elif response.status_code in (409, 412):
                        time.sleep(0.001)
                    else:
                        failures.append(f"{response.status_code} {response.text}")
                        return

        def add_keys(worker: int) -> None:
            with requests.Session() as session:
                for i in range(5):
                    body = json.dumps({f"merge-{worker}-{i}": True})
                    response = session.patch(
                        url, data=body, headers={"Content-Type": MERGE}, timeout=30
                    )
                    if response.status_code != 200:  # the server retries; no client retry
                        failures.append(f"{response.status_code} {response.text}")

        threads = [threading.Thread(target=increment) for _ in range(8)]
        threads += [threading.Thread(target=add_keys, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        document = requests.get(url, timeout=30).json()
        assert document["counter"] == 200
        assert {f"merge-{w}-{i}" for w in range(8) for i in range(5)} <= set(document)
        assert stored(store_dir, "shared.json") == document
        # Hostile JSON in a worker thread of the real server: refused, and the worker lives on.
        (store_dir / "deep.json").write_bytes(DEEP)
        assert requests.get(server.url + URL + "deep.json", timeout=30).status_code == 413
        assert requests.put(server.url + URL + "x.json", data=DEEP, timeout=30).status_code == 413
        response = requests.patch(url, data=DEEP, headers={"Content-Type": MERGE}, timeout=30)
        assert response.status_code == 413
        assert requests.get(url, timeout=30).json() == document
    finally:
        assert server.stop() == 0
