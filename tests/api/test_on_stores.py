"""The HTTP API on every store: a representative set of scenarios of sections 3-7 (files,
JSON documents, compatibility endpoints, tus), run on the local disk, in memory and on a real
SeaweedFS through the S3 store. The local store's own corners are in the other modules."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from filedock.app import create_app
from filedock.config import Settings
from tests.seaweed import BUCKET, Seaweed

pytestmark = pytest.mark.timeout(240)

MIB = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(params=["local", "memory", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_settings(kind: str, request: pytest.FixtureRequest) -> Settings:
    """Settings for a fresh store of that kind."""
    if kind == "s3":
        settings: Settings = request.getfixturevalue("s3_settings")
        return settings
    if kind == "memory":
        return Settings(store="memory://")
    return Settings(store=str(request.getfixturevalue("store_dir")))


class BufferedClient(FlaskClient):
    """A test client that reads each response whole and closes it (and its file)."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def make_app(settings: Settings) -> Flask:
    app = create_app(settings)
    app.test_client_class = BufferedClient
    return app


@pytest.fixture
def app(store_settings: Settings) -> Flask:
    return make_app(store_settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(client: FlaskClient, path: str, data: bytes, **headers: str) -> TestResponse:
    return client.put(f"/api/v1/files/{path}", data=data, headers=headers)


def assert_problem(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == code


# -- files ---------------------------------------------------------------------------------------


def test_put_get_head_range_meta_delete(client: FlaskClient) -> None:
    data = b"0123456789" * 1000
    created = put(client, "docs/a.txt", data, **{"Content-Type": "text/plain"})
    assert created.status_code == 201
    assert created.headers["ETag"] == f'"{sha(data)}"'
    assert created.get_json()["sha256"] == sha(data)
    assert put(client, "docs/a.txt", data).status_code == 200
    got = client.get("/api/v1/files/docs/a.txt")
    assert got.status_code == 200 and got.data == data
    assert got.headers["ETag"] == f'"{sha(data)}"'
    assert got.headers["Content-Type"].startswith("text/plain")
    head = client.head("/api/v1/files/docs/a.txt")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    ranged = client.get("/api/v1/files/docs/a.txt", headers={"Range": "bytes=5-14"})
    assert ranged.status_code == 206 and ranged.data == data[5:15]
    assert ranged.headers["Content-Range"] == f"bytes 5-14/{len(data)}"
    suffix = client.get("/api/v1/files/docs/a.txt", headers={"Range": "bytes=-3"})
    assert suffix.data == data[-3:]
    cached = client.get("/api/v1/files/docs/a.txt", headers={"If-None-Match": f'"{sha(data)}"'})
    assert cached.status_code == 304
    meta = client.get("/api/v1/meta/docs/a.txt").get_json()
    assert meta["size"] == len(data) and meta["path"] == "docs/a.txt"
    assert client.delete("/api/v1/files/docs/a.txt").status_code == 204
    assert_problem(client.get("/api/v1/files/docs/a.txt"), 404, "not-found")
    assert_problem(client.delete("/api/v1/files/docs/a.txt"), 404, "not-found")


def test_conditional_writes(client: FlaskClient) -> None:
    first = put(client, "c.bin", b"one", **{"If-None-Match": "*"})
    assert first.status_code == 201
    assert_problem(
        put(client, "c.bin", b"two", **{"If-None-Match": "*"}), 412, "precondition-failed"
    )
    old = first.headers["ETag"]
    second = put(client, "c.bin", b"two", **{"If-Match": old})
    assert second.status_code == 200
    assert_problem(put(client, "c.bin", b"three", **{"If-Match": old}), 412, "precondition-failed")
    assert_problem(put(client, "new.bin", b"x", **{"If-Match": old}), 412, "precondition-failed")
    assert_problem(
        client.delete("/api/v1/files/c.bin", headers={"If-Match": old}), 412, "precondition-failed"
    )
    assert client.get("/api/v1/files/c.bin").data == b"two"
    assert client.get("/api/v1/files/new.bin").status_code == 404
    deleted = client.delete("/api/v1/files/c.bin", headers={"If-Match": second.headers["ETag"]})
    assert deleted.status_code == 204


def test_large_upload_streams_and_reads_back(client: FlaskClient) -> None:
    data = bytes(range(256)) * (20 * MIB // 256) + b"end"  # several S3 parts
    response = client.put("/api/v1/files/big/blob.bin", data=io.BytesIO(data))
    assert response.status_code == 201
    assert response.get_json()["sha256"] == sha(data)
    meta = client.get("/api/v1/meta/big/blob.bin").get_json()
    assert meta["sha256"] == sha(data) and meta["size"] == len(data)
    middle = client.get("/api/v1/files/big/blob.bin", headers={"Range": "bytes=9000000-9000099"})
    assert middle.status_code == 206 and middle.data == data[9_000_000:9_000_100]
    whole = client.get("/api/v1/files/big/blob.bin")
    assert hashlib.sha256(whole.data).hexdigest() == sha(data)


def test_refused_bodies_store_nothing(store_settings: Settings) -> None:
    from dataclasses import replace

    client = make_app(replace(store_settings, max_upload_bytes=10 * MIB)).test_client()
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    assert_problem(
        put(client, "d.bin", b"data", **{"Content-Digest": f"sha-256=:{wrong}:"}),
        400,
        "digest-mismatch",
    )
    too_big = client.put("/api/v1/files/big.bin", data=io.BytesIO(b"x" * (10 * MIB + 1)))
    assert_problem(too_big, 413, "too-large")
    assert client.get("/api/v1/files").get_json()["items"] == []


def test_listing_pages_in_path_order(client: FlaskClient) -> None:
    names = ["b/2", "a-c", "a/b", "b/1", "c", "ab", "a/x/y"]
    for name in names:
        assert put(client, name, name.encode()).status_code == 201
    seen: list[str] = []
    cursor = ""
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/files", query_string=query).get_json()
        seen += [item["path"] for item in page["items"]]
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert seen == sorted(names)
    prefixed = client.get("/api/v1/files", query_string={"prefix": "a"}).get_json()
    assert [i["path"] for i in prefixed["items"]] == ["a-c", "a/b", "a/x/y", "ab"]
    first = prefixed["items"][1]
    assert first["sha256"] == sha(b"a/b") and first["etag"] == f'"{sha(b"a/b")}"'


def test_file_folder_conflicts_and_bad_paths(client: FlaskClient) -> None:
    assert put(client, "f", b"file").status_code == 201
    assert_problem(put(client, "f/under", b"x"), 409, "conflict")
    assert put(client, "dir/inner", b"x").status_code == 201
    assert_problem(put(client, "dir", b"x"), 409, "conflict")
    assert_problem(put(client, "a/../../escape", b"x"), 400, "invalid-path")
    assert_problem(put(client, ".filedock/records/presign-key", b"x"), 400, "invalid-path")


def test_multipart_form_upload(client: FlaskClient) -> None:
    def form() -> dict[str, Any]:
        return {
            "dir": "up",
            "file": [(io.BytesIO(b"alpha"), "a.txt"), (io.BytesIO(b"beta" * 4096), "b.bin")],
        }

    first = client.post("/api/v1/files", data=form(), content_type="multipart/form-data")
    assert first.status_code == 201, first.get_data(as_text=True)
    assert [i["path"] for i in first.get_json()["saved"]] == ["up/a.txt", "up/b.bin"]
    again = client.post("/api/v1/files", data=form(), content_type="multipart/form-data")
    assert again.status_code == 409
    assert [e["code"] for e in again.get_json()["errors"]] == ["exists", "exists"]
    assert client.get("/api/v1/files/up/b.bin").data == b"beta" * 4096


# -- JSON documents ------------------------------------------------------------------------------


def test_json_put_get_patch(client: FlaskClient) -> None:
    created = client.put("/api/v1/json/docs/d.json", json={"a": 1, "list": [1]})
    assert created.status_code == 201
    old = created.headers["ETag"]
    got = client.get("/api/v1/json/docs/d.json")
    assert got.get_json() == {"a": 1, "list": [1]} and got.headers["ETag"] == old
    merged = client.patch(
        "/api/v1/json/docs/d.json",
        data=json.dumps({"b": 2}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert merged.status_code == 200 and merged.get_json() == {"a": 1, "list": [1], "b": 2}
    stale = client.patch(
        "/api/v1/json/docs/d.json",
        data=json.dumps([{"op": "add", "path": "/list/-", "value": 2}]),
        headers={"Content-Type": "application/json-patch+json", "If-Match": old},
    )
    assert_problem(stale, 412, "precondition-failed")
    assert client.get("/api/v1/files/docs/d.json").get_json() == {"a": 1, "list": [1], "b": 2}


def test_concurrent_json_patches_lose_no_update(app: Flask) -> None:
    client = app.test_client()
    assert client.put("/api/v1/json/n.json", json={"items": []}).status_code == 201
    errors: list[str] = []

    def add(worker: int) -> None:
        local = app.test_client()
        for i in range(4):
            response = local.patch(
                "/api/v1/json/n.json",
                data=json.dumps([{"op": "add", "path": "/items/-", "value": f"{worker}-{i}"}]),
                headers={"Content-Type": "application/json-patch+json"},
            )
            if response.status_code != 200:
                errors.append(response.get_data(as_text=True))

    threads = [threading.Thread(target=add, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    items = client.get("/api/v1/json/n.json").get_json()["items"]
    assert sorted(items) == sorted(f"{w}-{i}" for w in range(4) for i in range(4))


# -- the compatibility endpoints -----------------------------------------------------------------


def test_compat_upload_then_get_json(client: FlaskClient) -> None:
    body = {"FILE_NAME": "p_", "FILES_LIST": [(io.BytesIO(b'{"x": [1, 2]}'), "lab els.json")]}
    uploaded = client.post("/uploadFiles", data=body, content_type="multipart/form-data")
    assert uploaded.status_code == 200
    assert uploaded.get_json()["SAVED_FILES"] == ["p_labels.json"]
    got = client.get("/getJsonFromFile/p_labels.json")
    assert got.get_json() == {"STATUS": "true", "LABELS_MAPPING": {"x": [1, 2]}}
    missing = client.get("/getJsonFromFile/none.json")
    assert missing.status_code == 404 and missing.get_json()["STATUS"] == "false"


# -- tus -----------------------------------------------------------------------------------------


def tus_create(client: FlaskClient, length: int, path: str) -> str:
    meta = "path " + base64.b64encode(path.encode()).decode()
    response = client.post(
        "/api/v1/uploads", headers=TUS | {"Upload-Length": str(length), "Upload-Metadata": meta}
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return str(response.headers["Location"])


def tus_patch(client: FlaskClient, url: str, offset: int, chunk: bytes) -> TestResponse:
    return client.patch(
        url,
        data=chunk,
        headers=TUS
        | {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
    )


def test_tus_upload_continues_on_another_instance(
    store_settings: Settings, kind: str, app: Flask
) -> None:
    data = bytes(range(256)) * ((11 * MIB + 777) // 256)
    first = app.test_client()
    # another instance of the same store (memory:// is one process's own store)
    second = first if kind == "memory" else make_app(store_settings).test_client()
    url = tus_create(first, len(data), "tus/big.bin")
    offset = 0
    for client, size in ((first, 3 * MIB), (second, 6 * MIB), (first, MIB + 5), (second, MIB)):
        chunk = data[offset : offset + size]
        response = tus_patch(client, url, offset, chunk)
        assert response.status_code == 204, response.get_data(as_text=True)
        offset += len(chunk)
        assert response.headers["Upload-Offset"] == str(offset)
        head = second.head(url, headers=TUS)
        assert head.headers["Upload-Offset"] == str(offset)
        if offset < len(data):
            assert second.get("/api/v1/files/tus/big.bin").status_code == 404
    rest = data[offset:]
    assert tus_patch(second, url, offset, rest).status_code == 204
    meta = first.get("/api/v1/meta/tus/big.bin").get_json()
    assert meta["sha256"] == sha(data) and meta["size"] == len(data)
    assert hashlib.sha256(first.get("/api/v1/files/tus/big.bin").data).hexdigest() == sha(data)


def test_tus_offset_mismatch_target_taken_and_termination(client: FlaskClient) -> None:
    url = tus_create(client, 6, "t/x.bin")
    assert tus_patch(client, url, 0, b"abc").status_code == 204
    assert_problem(tus_patch(client, url, 0, b"abc"), 409, "conflict")
    assert put(client, "t/x.bin", b"someone else").status_code == 201
    assert_problem(tus_patch(client, url, 3, b"def"), 412, "exists")
    assert client.get("/api/v1/files/t/x.bin").data == b"someone else"
    assert client.delete(url, headers=TUS).status_code == 204
    assert client.head(url, headers=TUS).status_code == 404


# -- what only the S3 store shows ---------------------------------------------------------------


@pytest.fixture
def s3_client(seaweed: Seaweed) -> Any:
    """A boto3 client of the session's SeaweedFS."""
    return seaweed.client()


@pytest.fixture
def on_s3(s3_settings: Settings) -> FlaskClient:
    """A client of an app on a fresh S3 store."""
    return make_app(s3_settings).test_client()


def bucket_keys(s3: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def test_s3_objects_are_plain_objects_under_the_prefix(
    on_s3: FlaskClient, s3_client: Any, s3_prefix: str
) -> None:
    client, prefix = on_s3, s3_prefix
    data = b"x" * (9 * MIB)
    assert (
        put(client, "plain/one.txt", b"hello", **{"Content-Type": "text/plain"}).status_code == 201
    )
    assert client.put("/api/v1/files/plain/big.bin", data=io.BytesIO(data)).status_code == 201
    got = s3_client.get_object(Bucket=BUCKET, Key=f"{prefix}/plain/one.txt")
    assert got["Body"].read() == b"hello" and got["ContentType"] == "text/plain"
    assert got["Metadata"]["sha256"] == sha(b"hello")
    big = s3_client.head_object(Bucket=BUCKET, Key=f"{prefix}/plain/big.bin")
    assert big["Metadata"]["sha256"] == sha(data)  # labelled after its multipart upload
    for hostile in ("../x", "..%2Fx", "%2E%2E/x", "a/../../x"):
        assert client.put(f"/api/v1/files/{hostile}", data=b"x").status_code in (400, 404)
    parent = prefix.rsplit("/", 1)[0]
    assert bucket_keys(s3_client, "x") == bucket_keys(s3_client, f"{parent}/x") == []
    mine = bucket_keys(s3_client, prefix)
    assert all(k.startswith(prefix + "/") for k in mine), mine
    assert sorted(k for k in mine if ".filedock" not in k) == [
        f"{prefix}/plain/big.bin",
        f"{prefix}/plain/one.txt",
    ]


def test_s3_objects_of_other_tools_are_served(
    on_s3: FlaskClient, s3_client: Any, s3_prefix: str
) -> None:
    client, prefix = on_s3, s3_prefix
    s3_client.put_object(Bucket=BUCKET, Key=f"{prefix}/theirs/t.json", Body=b'{"by": "aws cli"}')
    meta = client.get("/api/v1/meta/theirs/t.json").get_json()
    assert meta["sha256"] == sha(b'{"by": "aws cli"}')
    assert client.get("/api/v1/json/theirs/t.json").get_json() == {"by": "aws cli"}
    kept = s3_client.head_object(Bucket=BUCKET, Key=f"{prefix}/theirs/t.json")
    assert kept["Metadata"]["sha256"] == sha(b'{"by": "aws cli"}')  # computed once, kept
    # a folder marker (as consoles make) is no object
    s3_client.put_object(Bucket=BUCKET, Key=f"{prefix}/theirs/marker/", Body=b"")
    listed = client.get("/api/v1/files", query_string={"prefix": "theirs/"}).get_json()
    assert [i["path"] for i in listed["items"]] == ["theirs/t.json"]


# -- signed links: the signing key is a record of the store, shared by its instances ------------


def test_presigned_link_signed_on_one_instance_works_on_another(
    store_settings: Settings, kind: str
) -> None:
    from dataclasses import replace
    from urllib.parse import urlsplit

    from filedock import auth
    from filedock.config import Token

    tokens = (Token(auth.hash_token("admin-secret"), ("admin",), name="admin"),)
    settings = replace(store_settings, tokens=tokens)
    first = make_app(settings)
    admin = {"Authorization": "Bearer admin-secret"}
    one = first.test_client()
    assert put(one, "signed/doc.txt", b"signed", **admin).status_code == 201
    signed = one.post(
        "/api/v1/presign", json={"path": "signed/doc.txt", "method": "GET"}, headers=admin
    )
    assert signed.status_code == 200, signed.get_data(as_text=True)
    parts = urlsplit(signed.get_json()["url"])
    link = f"{parts.path}?{parts.query}"
    other = first if kind == "memory" else make_app(settings)
    assert other.test_client().get(link).data == b"signed"
    assert other.test_client().get("/api/v1/files/signed/doc.txt").status_code == 401
    tampered = link.replace("signature=", "signature=0")
    assert other.test_client().get(tampered).status_code in (401, 403)
