"""Files API v1 (API.md sections 3 and 4) through Flask's test client."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from filedock import bodies
from filedock import multipart as multipart_module
from filedock.app import create_app
from filedock.config import Settings
from tests.hostile import HOSTILE_FILENAMES, HOSTILE_URL_PATHS, SENTINEL

API = "/api/v1"
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# The WSGI server (gunicorn) tells the app a body without Content-Length is delimited by it.
CHUNKED = {"wsgi.input_terminated": True}


class BufferedClient(FlaskClient):
    """A test client that reads each response whole and closes it (and its file)."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def buffered(app: Flask) -> FlaskClient:
    app.test_client_class = BufferedClient
    return app.test_client()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return buffered(app)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def etag(data: bytes) -> str:
    return f'"{sha(data)}"'


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def put(client: FlaskClient, path: str, data: bytes, **kwargs: Any) -> TestResponse:
    return client.put(f"{API}/files/{path}", data=data, **kwargs)


def staging(store_dir: Path) -> list[str]:
    return os.listdir(store_dir / ".filedock" / "staging")


def objects(store_dir: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(store_dir):
        dirnames[:] = [d for d in dirnames if d != ".filedock"]
        found += [os.path.relpath(os.path.join(dirpath, f), store_dir) for f in filenames]
    return sorted(found)


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "xYzZy") -> bytes:
    """A multipart/form-data body from (field, filename or None, content) in this order."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def post_form(client: FlaskClient, body: bytes, boundary: str = "xYzZy") -> TestResponse:
    return client.post(
        f"{API}/files", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def assert_metadata(body: dict[str, Any], path: str, data: bytes) -> None:
    assert set(body) == {"path", "size", "sha256", "etag", "content_type", "modified"}
    assert body["path"] == path
    assert body["size"] == len(data)
    assert body["sha256"] == sha(data)
    assert body["etag"] == etag(data)
    assert RFC3339_Z.match(body["modified"]), body["modified"]


# -- PUT ---------------------------------------------------------------------------------------


def test_put_creates_then_replaces(client: FlaskClient, store_dir: Path) -> None:
    first = put(client, "docs/a.txt", b"one", content_type="text/plain")
    assert first.status_code == 201
    assert_metadata(first.json, "docs/a.txt", b"one")
    assert first.json["content_type"] == "text/plain"
    assert first.headers["ETag"] == etag(b"one")
    assert first.headers["Location"] == f"{API}/files/docs/a.txt"
    second = put(client, "docs/a.txt", b"two")
    assert second.status_code == 200
    assert_metadata(second.json, "docs/a.txt", b"two")
    assert (store_dir / "docs" / "a.txt").read_bytes() == b"two"
    assert staging(store_dir) == []


def test_location_is_percent_encoded(client: FlaskClient) -> None:
    response = put(client, "sp ace/ü%.bin", b"x")
    assert response.status_code == 201
    assert response.headers["Location"] == f"{API}/files/sp%20ace/%C3%BC%25.bin"
    assert client.get(response.headers["Location"]).data == b"x"


def test_put_streams_a_chunked_body(client: FlaskClient, store_dir: Path) -> None:
    response = client.put(
        f"{API}/files/c.bin",
        input_stream=io.BytesIO(b"z" * 3_000_000),
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides=CHUNKED,
    )
    assert response.status_code == 201
    assert response.json["size"] == 3_000_000
    assert (store_dir / "c.bin").stat().st_size == 3_000_000


def test_put_conflicts_with_the_tree(client: FlaskClient) -> None:
    put(client, "a", b"file")
    response = put(client, "a/b", b"under a file")
    assert response.status_code == 409
    assert response.json["code"] == "conflict"
    put(client, "d/e", b"x")
    assert put(client, "d", b"over a folder").json["code"] == "conflict"


# -- ETag and metadata everywhere ---------------------------------------------------------------


def test_etag_is_the_same_on_every_endpoint(client: FlaskClient, store_dir: Path) -> None:
    data = b"same bytes everywhere"
    tag = put(client, "e/x.bin", data).headers["ETag"]
    posted = post_form(client, multipart(("file", "y.bin", data), ("dir", None, b"e")))
    (store_dir / "e" / "z.bin").write_bytes(data)  # put there by hand
    assert posted.json["saved"][0]["etag"] == tag
    assert client.get(f"{API}/files/e/x.bin").headers["ETag"] == tag
    assert client.head(f"{API}/files/e/x.bin").headers["ETag"] == tag
    assert client.get(f"{API}/meta/e/x.bin").json["etag"] == tag
    assert client.get(f"{API}/meta/e/z.bin").headers["ETag"] == tag
    assert {i["etag"] for i in client.get(f"{API}/files?prefix=e/").json["items"]} == {tag}
    assert tag == etag(data)


def test_meta(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "img").mkdir()
    (store_dir / "img" / "cat.jpg").write_bytes(b"\xff\xd8meow")
    response = client.get(f"{API}/meta/img/cat.jpg")
    assert response.status_code == 200
    assert_metadata(response.json, "img/cat.jpg", b"\xff\xd8meow")
    assert response.json["content_type"] == "image/jpeg"
    assert response.headers["ETag"] == etag(b"\xff\xd8meow")
    missing = client.get(f"{API}/meta/img/dog.jpg")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    assert missing.json["code"] == "not-found"


# -- list ----------------------------------------------------------------------------------------


def test_list_is_recursive_sorted_and_prefixed_as_a_string(
    client: FlaskClient, store_dir: Path
) -> None:
    for path in ["b.txt", "a/2.txt", "a/1.txt", "ab.txt", "a/sub/3.txt", "c/x"]:
        (store_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (store_dir / path).write_bytes(path.encode())
    every = client.get(f"{API}/files").json
    assert [i["path"] for i in every["items"]] == [
        "a/1.txt", "a/2.txt", "a/sub/3.txt", "ab.txt", "b.txt", "c/x",
    ]  # fmt: skip
    assert every["next_cursor"] is None
    assert_metadata(every["items"][0], "a/1.txt", b"a/1.txt")
    assert [i["path"] for i in client.get(f"{API}/files?prefix=a").json["items"]] == [
        "a/1.txt", "a/2.txt", "a/sub/3.txt", "ab.txt",
    ]  # fmt: skip
    assert [i["path"] for i in client.get(f"{API}/files?prefix=a/s").json["items"]] == [
        "a/sub/3.txt"
    ]
    assert client.get(f"{API}/files?prefix=zz").json == {"items": [], "next_cursor": None}


def test_list_pages_with_a_cursor(client: FlaskClient, store_dir: Path) -> None:
    names = [f"f{i:03}" for i in range(105)]
    for name in names:
        (store_dir / name).write_bytes(b"")
    first = client.get(f"{API}/files").json
    assert len(first["items"]) == 100  # the default limit
    seen = []
    cursor = None
    while True:
        query = f"?limit=40&cursor={cursor}" if cursor else "?limit=40"
        page = client.get(f"{API}/files{query}").json
        seen += [i["path"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names
    assert len(client.get(f"{API}/files?limit=1000").json["items"]) == 105


def test_list_leaves_out_files_whose_names_are_not_paths(
    client: FlaskClient, store_dir: Path
) -> None:
    # Files put in the folder by hand under names section 1 refuses cannot be addressed;
    # listed, they were dead entries, and a cursor after a non-UTF-8 one was refused.
    for name in (b"a", b"b\\slash", b"c\x01ctl", b"d\xffname", b"e"):
        with open(os.path.join(os.fsencode(store_dir), name), "wb") as f:
            f.write(b"x")
    assert [i["path"] for i in client.get(f"{API}/files").json["items"]] == ["a", "e"]
    seen, query = [], "?limit=1"
    while query:
        page = client.get(f"{API}/files{query}")
        assert page.status_code == 200, page.json
        seen += [i["path"] for i in page.json["items"]]
        cursor = page.json["next_cursor"]
        query = f"?limit=1&cursor={cursor}" if cursor else ""
    assert seen == ["a", "e"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=x",
        "limit=-1",
        "limit=",
        "limit=%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
        "limit=%D9%A1",  # Arabic-Indic one: a Unicode digit, not a decimal integer
        "cursor=%25%25",
    ],
)
def test_list_rejects_bad_parameters(client: FlaskClient, query: str) -> None:
    response = client.get(f"{API}/files?{query}")
    assert response.status_code == 400
    assert response.json["code"] == "bad-request"


@pytest.mark.parametrize("prefix", ["../", "../../", "a/../", "/etc", "a//", "x\\y/"])
def test_list_rejects_prefixes_no_path_can_have(client: FlaskClient, prefix: str) -> None:
    response = client.get(f"{API}/files", query_string={"prefix": prefix})
    assert response.status_code == 400
    assert response.json["code"] == "invalid-path"
    assert "sentinel" not in response.get_data(as_text=True)


def test_list_prefix_may_end_in_part_of_a_dot_name(client: FlaskClient) -> None:
    for path in ("a/.hidden", "a/..x", ".x", "..y", "a/b"):
        assert put(client, path, b"1").status_code == 201
    for prefix, paths in [
        ("a/.", ["a/..x", "a/.hidden"]),
        ("a/..", ["a/..x"]),
        (".", ["..y", ".x"]),
        ("..", ["..y"]),
    ]:
        response = client.get(f"{API}/files", query_string={"prefix": prefix})
        assert response.status_code == 200, (prefix, response.json)
        assert [i["path"] for i in response.json["items"]] == paths


# -- GET / HEAD ----------------------------------------------------------------------------------


def test_get_and_head(client: FlaskClient) -> None:
    data = os.urandom(100_000)
    put(client, "r.bin", data)
    response = client.get(f"{API}/files/r.bin")
    assert response.status_code == 200
    assert response.data == data
    assert response.headers["ETag"] == etag(data)
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Last-Modified"].endswith(" GMT")
    assert response.headers["Content-Digest"] == f"sha-256=:{b64(hashlib.sha256(data).digest())}:"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox"
    head = client.head(f"{API}/files/r.bin")
    assert head.status_code == 200
    assert head.data == b""
    for name in ("ETag", "Content-Length", "Accept-Ranges", "Last-Modified", "Content-Type"):
        assert head.headers[name] == response.headers[name]


def test_get_missing_is_404(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "folder").mkdir()
    for path in ("nope.bin", "folder", "folder/x"):
        response = client.get(f"{API}/files/{path}")
        assert response.status_code == 404, path
        assert response.json["code"] == "not-found"
    assert client.head(f"{API}/files/nope.bin").status_code == 404


def test_symlink_out_of_the_store_is_404(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "link.json").symlink_to(store_dir.parent / "sentinel.json")
    (store_dir / "dirlink").symlink_to(store_dir.parent)
    for url in ("files/link.json", "meta/link.json", "files/dirlink/sentinel.json"):
        response = client.get(f"{API}/{url}")
        assert response.status_code == 404, url
        assert b"secret" not in response.data
    assert put(client, "dirlink/sentinel.json", b"evil").status_code == 404
    assert client.delete(f"{API}/files/link.json").status_code == 404
    assert client.get(f"{API}/files").json["items"] == []
    assert (store_dir.parent / "sentinel.json").read_text() == SENTINEL


@pytest.fixture
def ten(client: FlaskClient) -> bytes:
    data = b"0123456789"
    put(client, "ten.txt", data)
    return data


@pytest.mark.parametrize(
    ("header", "content_range", "body"),
    [
        ("bytes=2-5", "bytes 2-5/10", b"2345"),
        ("bytes=7-", "bytes 7-9/10", b"789"),
        ("bytes=-3", "bytes 7-9/10", b"789"),
        ("bytes=-30", "bytes 0-9/10", b"0123456789"),
        ("bytes=8-100", "bytes 8-9/10", b"89"),
        ("bytes=0-0", "bytes 0-0/10", b"0"),
    ],
)
def test_single_range_is_206(
    client: FlaskClient, ten: bytes, header: str, content_range: str, body: bytes
) -> None:
    response = client.get(f"{API}/files/ten.txt", headers={"Range": header})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == content_range
    assert response.headers["Content-Length"] == str(len(body))
    assert response.data == body
    assert "Content-Digest" not in response.headers


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=50-60", "bytes=-0"])
def test_unsatisfiable_range_is_416(client: FlaskClient, ten: bytes, header: str) -> None:
    response = client.get(f"{API}/files/ten.txt", headers={"Range": header})
    assert response.status_code == 416
    assert response.json["code"] == "range-not-satisfiable"
    assert response.headers["Content-Range"] == "bytes */10"


@pytest.mark.parametrize("header", ["bytes=0-1,4-5", "bytes=5-2", "items=0-1", "bytes=x-y"])
def test_multiple_or_invalid_ranges_get_the_whole_object(
    client: FlaskClient, ten: bytes, header: str
) -> None:
    response = client.get(f"{API}/files/ten.txt", headers={"Range": header})
    assert response.status_code == 200
    assert response.data == ten


def test_if_range(client: FlaskClient, ten: bytes) -> None:
    url = f"{API}/files/ten.txt"
    modified = client.head(url).headers["Last-Modified"]
    same = client.get(url, headers={"Range": "bytes=0-1", "If-Range": etag(ten)})
    assert (same.status_code, same.data) == (206, b"01")
    changed = client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert (changed.status_code, changed.data) == (200, ten)
    weak = client.get(url, headers={"Range": "bytes=0-1", "If-Range": f"W/{etag(ten)}"})
    assert weak.status_code == 200
    dated = client.get(url, headers={"Range": "bytes=0-1", "If-Range": modified})
    assert dated.status_code == 206
    old = client.get(
        url, headers={"Range": "bytes=0-1", "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert old.status_code == 200


def test_not_modified(client: FlaskClient, ten: bytes) -> None:
    url = f"{API}/files/ten.txt"
    modified = client.head(url).headers["Last-Modified"]
    for headers in (
        {"If-None-Match": etag(ten)},
        {"If-None-Match": f'"nope", W/{etag(ten)}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
        {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"},
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 304, headers
        assert response.data == b""
        assert response.headers["ETag"] == etag(ten)
        assert client.head(url, headers=headers).status_code == 304
    for headers in (
        {"If-None-Match": '"nope"'},
        {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
        {"If-None-Match": '"nope"', "If-Modified-Since": modified},  # If-None-Match wins
        {"If-Modified-Since": "not a date"},
    ):
        assert client.get(url, headers=headers).status_code == 200, headers


def test_get_preconditions(client: FlaskClient, ten: bytes) -> None:
    url = f"{API}/files/ten.txt"
    assert client.get(url, headers={"If-Match": etag(ten)}).status_code == 200
    failed = client.get(url, headers={"If-Match": '"other"'})
    assert failed.status_code == 412
    assert failed.json["code"] == "precondition-failed"
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(url, headers={"If-Unmodified-Since": old}).status_code == 412


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("page.html", "text/html"),
        ("pic.svg", "image/svg+xml"),
        ("data.xml", "application/xml"),
        ("innocent.txt", "text/html; charset=utf-8"),
        ("feed.bin", "application/atom+xml"),
    ],
)
def test_active_content_is_always_an_attachment(
    client: FlaskClient, path: str, content_type: str
) -> None:
    put(client, path, b"<script>alert(1)</script>", content_type=content_type)
    response = client.get(f"{API}/files/{path}")
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize(
    "declared",
    [
        "text/plain, text/html",  # browsers take the last valid type of a list: HTML
        "application/octet-stream,image/svg+xml",
        "text/html\x7f",
        "text/plain\x01",
        "text/" + "x" * 200,
    ],
)
def test_a_content_type_that_is_not_one_media_type_is_not_kept(
    client: FlaskClient, declared: str
) -> None:
    body = b"<script>alert(1)</script>"
    stored = put(client, "note.txt", body, headers={"Content-Type": declared})
    assert stored.json["content_type"] == "text/plain"  # guessed from the name instead
    response = client.get(f"{API}/files/note.txt")
    assert response.headers["Content-Type"] == "text/plain"


def test_plain_content_is_inline_unless_asked(client: FlaskClient) -> None:
    put(client, 'dir/Grüße "x".png', b"\x89PNG")
    url = f'{API}/files/dir/Grüße "x".png'
    assert "Content-Disposition" not in client.get(url).headers
    response = client.get(url + "?download=1")
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"Gr__e _x_.png\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%22x%22.png"
    )


# -- DELETE and conditions -----------------------------------------------------------------------


def test_delete(client: FlaskClient, store_dir: Path) -> None:
    put(client, "deep/er/x.txt", b"x")
    response = client.delete(f"{API}/files/deep/er/x.txt")
    assert response.status_code == 204
    assert response.data == b""
    assert client.get(f"{API}/files/deep/er/x.txt").status_code == 404
    assert objects(store_dir) == []
    again = client.delete(f"{API}/files/deep/er/x.txt")
    assert again.status_code == 404
    assert again.json["code"] == "not-found"


def test_put_conditions(client: FlaskClient, store_dir: Path) -> None:
    url = f"{API}/files/c.txt"
    assert client.put(url, data=b"1", headers={"If-Match": etag(b"1")}).status_code == 412
    assert client.put(url, data=b"1", headers={"If-None-Match": "*"}).status_code == 201
    refused = client.put(url, data=b"2", headers={"If-None-Match": "*"})
    assert (refused.status_code, refused.json["code"]) == (412, "precondition-failed")
    assert client.put(url, data=b"2", headers={"If-Match": '"stale"'}).status_code == 412
    assert client.put(url, data=b"2", headers={"If-None-Match": etag(b"1")}).status_code == 412
    assert (store_dir / "c.txt").read_bytes() == b"1"
    assert client.put(url, data=b"2", headers={"If-Match": etag(b"1")}).status_code == 200
    assert client.put(url, data=b"3", headers={"If-None-Match": '"x"'}).status_code == 200
    assert (store_dir / "c.txt").read_bytes() == b"3"
    assert staging(store_dir) == []


def test_delete_conditions(client: FlaskClient, store_dir: Path) -> None:
    put(client, "d.txt", b"d")
    url = f"{API}/files/d.txt"
    assert client.delete(url, headers={"If-Match": '"stale"'}).status_code == 412
    assert client.delete(url, headers={"If-None-Match": "*"}).status_code == 412
    assert client.delete(url, headers={"If-None-Match": etag(b"d")}).status_code == 412
    assert (store_dir / "d.txt").exists()
    assert client.delete(url, headers={"If-Match": etag(b"d")}).status_code == 204
    assert client.delete(url, headers={"If-Match": etag(b"d")}).status_code == 412
    assert client.delete(url, headers={"If-None-Match": "*"}).status_code == 404


def test_if_match_on_writes_compares_strongly(client: FlaskClient, store_dir: Path) -> None:
    # RFC 9110 13.1.1: a weak tag never matches If-Match, as on GET
    put(client, "s.txt", b"s")
    url = f"{API}/files/s.txt"
    weak = {"If-Match": f"W/{etag(b's')}"}
    assert client.get(url, headers=weak).status_code == 412
    refused = client.put(url, data=b"t", headers=weak)
    assert (refused.status_code, refused.json["code"]) == (412, "precondition-failed")
    assert client.delete(url, headers=weak).status_code == 412
    assert (store_dir / "s.txt").read_bytes() == b"s"
    listed = {"If-Match": f'W/"x", {etag(b"s")}'}
    assert client.put(url, data=b"t", headers=listed).status_code == 200
    assert client.delete(url, headers={"If-Match": f'"x", {etag(b"t")}'}).status_code == 204


# -- Content-Digest ------------------------------------------------------------------------------


def test_content_digest_sha256_and_sha512(client: FlaskClient) -> None:
    data = b"checked bytes"
    good256 = f"sha-256=:{b64(hashlib.sha256(data).digest())}:"
    good512 = f"sha-512=:{b64(hashlib.sha512(data).digest())}:"
    both = f"{good256}, {good512}, md5=:AAAA:"
    for header in (good256, good512, both):
        response = put(client, "d.bin", data, headers={"Content-Digest": header})
        assert response.status_code in (200, 201), header


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_content_digest_mismatch_stores_nothing(
    client: FlaskClient, store_dir: Path, algorithm: str
) -> None:
    put(client, "d.bin", b"original")
    wrong = getattr(hashlib, algorithm)(b"other").digest()
    name = algorithm.replace("sha", "sha-")
    response = put(
        client, "d.bin", b"tampered", headers={"Content-Digest": f"{name}=:{b64(wrong)}:"}
    )
    assert response.status_code == 400
    assert response.json["code"] == "digest-mismatch"
    assert (store_dir / "d.bin").read_bytes() == b"original"
    new = put(client, "new.bin", b"x", headers={"Content-Digest": f"{name}=:{b64(wrong)}:"})
    assert new.status_code == 400
    assert objects(store_dir) == ["d.bin"]
    assert staging(store_dir) == []


@pytest.mark.parametrize("header", ["sha-256=abc", "sha-256=:not base64!:", "garbage", "a=:AA:,"])
def test_malformed_content_digest_is_400(client: FlaskClient, store_dir: Path, header: str) -> None:
    response = put(client, "d.bin", b"x", headers={"Content-Digest": header})
    assert response.status_code == 400
    assert response.json["code"] == "bad-request"
    assert objects(store_dir) == []


# -- size limits and a full disk ------------------------------------------------------------------


class Tracked(io.RawIOBase):
    """A body that counts what the server read of it."""

    def __init__(self, size: int) -> None:
        self.left, self.read_bytes = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.read_bytes

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.read_bytes  # the test client only asks where the stream is

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left, 64 << 10)
        buffer[:n] = b"a" * n
        self.left -= n
        self.read_bytes += n
        return n


@pytest.fixture
def small_client(store_dir: Path) -> FlaskClient:
    return buffered(create_app(Settings(store=str(store_dir), max_upload_bytes=1 << 20)))


def test_declared_size_over_the_limit_is_refused_before_reading(
    small_client: FlaskClient, store_dir: Path
) -> None:
    body = Tracked(5 << 20)
    response = small_client.put(
        f"{API}/files/big.bin",
        input_stream=body,
        environ_overrides={"CONTENT_LENGTH": str(5 << 20)},
    )
    assert response.status_code == 413
    assert response.json["code"] == "too-large"
    assert body.read_bytes == 0
    form = Tracked(5 << 20)
    response = small_client.post(
        f"{API}/files",
        input_stream=form,
        environ_overrides={"CONTENT_LENGTH": str(5 << 20)},
        content_type="multipart/form-data; boundary=b",
    )
    assert (response.status_code, form.read_bytes) == (413, 0)
    assert objects(store_dir) == [] and staging(store_dir) == []


def test_chunked_body_is_stopped_once_past_the_limit(
    small_client: FlaskClient, store_dir: Path
) -> None:
    body = Tracked(50 << 20)
    response = small_client.put(
        f"{API}/files/big.bin",
        input_stream=body,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides=CHUNKED,
    )
    assert response.status_code == 413
    assert response.json["code"] == "too-large"
    assert body.read_bytes <= (1 << 20) + (1 << 20)  # the limit plus one read
    assert objects(store_dir) == [] and staging(store_dir) == []


def test_multipart_over_the_limit_is_413(small_client: FlaskClient, store_dir: Path) -> None:
    response = small_client.post(
        f"{API}/files",
        data=multipart(("file", "big.bin", b"x" * (2 << 20))),
        content_type="multipart/form-data; boundary=xYzZy",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides=CHUNKED,
    )
    assert response.status_code == 413
    assert objects(store_dir) == [] and staging(store_dir) == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB file system, so writes really fail with ENOSPC."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess_run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)])
    try:
        yield mount
    finally:
        subprocess_run(["umount", "-l", str(mount)])


def subprocess_run(args: list[str]) -> None:
    import subprocess

    subprocess.run(args, check=True, capture_output=True, timeout=30)


def test_full_disk_is_507_and_leaves_nothing(tiny_disk: Path) -> None:
    store = tiny_disk / "store"
    client = buffered(create_app(Settings(store=str(store))))
    assert put(client, "small.bin", b"fits").status_code == 201
    response = put(client, "big.bin", b"x" * (6 << 20))
    assert response.status_code == 507
    assert response.json["code"] == "insufficient-storage"
    assert objects(store) == ["small.bin"]
    assert staging(store) == []
    form = multipart(("file", "a.bin", b"y" * (1 << 20)), ("file", "b.bin", b"z" * (5 << 20)))
    response = post_form(client, form)
    assert response.status_code == 507
    assert objects(store) == ["small.bin"] and staging(store) == []
    assert put(client, "after.bin", b"still works").status_code == 201


# -- POST multipart ------------------------------------------------------------------------------


def test_post_saves_every_file(client: FlaskClient, store_dir: Path) -> None:
    response = client.post(
        f"{API}/files",
        data={"file": [(io.BytesIO(b"one"), "1.txt"), (io.BytesIO(b"two"), "2.jpg")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201
    assert response.json["errors"] == []
    assert_metadata(response.json["saved"][0], "1.txt", b"one")
    assert_metadata(response.json["saved"][1], "2.jpg", b"two")
    assert (store_dir / "2.jpg").read_bytes() == b"two"
    assert staging(store_dir) == []


def test_post_with_dir_after_the_files(client: FlaskClient, store_dir: Path) -> None:
    body = multipart(
        ("file", "C:\\\\Users\\\\me\\\\win.txt", b"w"),  # as curl escapes it
        ("file", "/tmp/x/unix.txt", b"u"),
        ("dir", None, b"in/here"),
    )
    response = post_form(client, body)
    assert response.status_code == 201
    assert [i["path"] for i in response.json["saved"]] == ["in/here/win.txt", "in/here/unix.txt"]
    assert (store_dir / "in" / "here" / "win.txt").read_bytes() == b"w"


def test_post_some_fail_is_207(client: FlaskClient, store_dir: Path) -> None:
    put(client, "taken.txt", b"old")
    body = multipart(("file", "new.txt", b"n"), ("file", "taken.txt", b"t"), ("file", "..", b"e"))
    response = post_form(client, body)
    assert response.status_code == 207
    assert [i["path"] for i in response.json["saved"]] == ["new.txt"]
    assert response.json["errors"][0] == {
        "name": "taken.txt",
        "status": 409,
        "code": "exists",
        "detail": "an object exists at taken.txt",
    }
    assert response.json["errors"][1]["name"] == ".."
    assert response.json["errors"][1]["status"] == 400
    assert response.json["errors"][1]["code"] == "invalid-path"
    assert (store_dir / "taken.txt").read_bytes() == b"old"
    assert staging(store_dir) == []


def test_post_none_saved_has_the_first_errors_status(client: FlaskClient, store_dir: Path) -> None:
    put(client, "taken.txt", b"old")
    body = multipart(("file", "dir/taken.txt", b"t"), ("file", "..", b"e"))
    response = post_form(client, body)
    assert response.status_code == 409
    assert response.mimetype == "application/json"
    assert response.json["saved"] == []
    assert [(e["name"], e["status"]) for e in response.json["errors"]] == [
        ("dir/taken.txt", 409),
        ("..", 400),
    ]
    assert (store_dir / "taken.txt").read_bytes() == b"old"
    assert staging(store_dir) == []


def test_post_overwrite_true_replaces(client: FlaskClient, store_dir: Path) -> None:
    put(client, "taken.txt", b"old")
    body = multipart(("overwrite", None, b"true"), ("file", "taken.txt", b"new"))
    response = post_form(client, body)
    assert response.status_code == 201
    assert (store_dir / "taken.txt").read_bytes() == b"new"


@pytest.mark.parametrize("filename", HOSTILE_FILENAMES)
def test_post_hostile_filenames(client: FlaskClient, store_dir: Path, filename: str) -> None:
    response = client.post(
        f"{API}/files",
        data={"file": [(io.BytesIO(b"evil"), filename)]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400, response.json
    assert objects(store_dir) == [] and staging(store_dir) == []
    assert (store_dir.parent / "sentinel.json").read_text() == SENTINEL


@pytest.mark.parametrize("folder", ["..", "../x", "/abs", "a//b", ".filedock", "a\\b", "x\x01"])
def test_post_hostile_dir_is_400(client: FlaskClient, store_dir: Path, folder: str) -> None:
    response = post_form(
        client, multipart(("dir", None, folder.encode()), ("file", "s.json", b"e"))
    )
    assert response.status_code == 400
    assert response.json["code"] == "invalid-path"
    assert objects(store_dir) == [] and staging(store_dir) == []
    assert (store_dir.parent / "sentinel.json").read_text() == SENTINEL


def test_post_problems(client: FlaskClient, store_dir: Path) -> None:
    wrong_type = client.post(f"{API}/files", data=b"x", content_type="application/json")
    assert (wrong_type.status_code, wrong_type.json["code"]) == (415, "unsupported-media-type")
    no_boundary = client.post(f"{API}/files", data=b"x", content_type="multipart/form-data")
    assert no_boundary.status_code == 400
    no_files = post_form(client, multipart(("dir", None, b"x")))
    assert (no_files.status_code, no_files.json["code"]) == (400, "bad-request")
    bad_overwrite = post_form(client, multipart(("overwrite", None, b"yes"), ("file", "a", b"")))
    assert bad_overwrite.status_code == 400
    assert objects(store_dir) == [] and staging(store_dir) == []


@pytest.mark.parametrize(
    "body",
    [
        b'--xYzZy\r\nContent-Disposition: form-data; name="file"; filename="t"\r\n\r\n'
        + b"x" * 200_000,  # truncated: no closing boundary
        b"this is not multipart at all",
        b"--xYzZy\r\n" + b"X-Long: " + b"h" * 2_000_000 + b"\r\n\r\n",  # a huge header line
        b"--xYzZy\r\n\r\n" * 5000 + b"--xYzZy--\r\n",  # thousands of empty parts
        b'--xYzZy\r\nContent-Disposition: form-data; name="file"; filename="t"\r\n\r\n'
        + b"y" * 1000,
    ],
    ids=["truncated", "garbage", "huge-header", "empty-parts", "unterminated"],
)
def test_bad_multipart_is_4xx_and_leaves_nothing(
    client: FlaskClient, store_dir: Path, body: bytes
) -> None:
    response = post_form(client, body)
    assert 400 <= response.status_code < 500, response.json
    assert response.mimetype == "application/problem+json"
    assert objects(store_dir) == [] and staging(store_dir) == []
    assert client.get("/healthz").status_code == 200


def test_post_content_digest(client: FlaskClient, store_dir: Path) -> None:
    body = multipart(("file", "a.txt", b"a"))
    good = f"sha-256=:{b64(hashlib.sha256(body).digest())}:"
    bad = f"sha-256=:{b64(hashlib.sha256(b'other').digest())}:"
    content_type = "multipart/form-data; boundary=xYzZy"
    wrong = client.post(
        f"{API}/files", data=body, content_type=content_type, headers={"Content-Digest": bad}
    )
    assert (wrong.status_code, wrong.json["code"]) == (400, "digest-mismatch")
    assert objects(store_dir) == [] and staging(store_dir) == []
    right = client.post(
        f"{API}/files", data=body, content_type=content_type, headers={"Content-Digest": good}
    )
    assert right.status_code == 201


# A file part's data is read in pieces: the first ends with the body's first read, the next at
# a page boundary of the file, then every body read later. A delimiter, or what only looks
# like the start of one, is placed across each of these ends at every offset.
BOUNDARY = b"xYzZy"
PART_HEAD = b'--xYzZy\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n\r\n'
OVERWRITE = b'Content-Disposition: form-data; name="overwrite"\r\n\r\ntrue'
CLOSE = b"\r\n--xYzZy\r\n" + OVERWRITE + b"\r\n--xYzZy--\r\n"  # fields may follow files


def read_ends(head: int) -> list[int]:
    """Where, in a file part's data that starts head bytes into the body, its pieces end."""
    first = bodies.READ_BYTES - head
    page = -(-first // multipart_module.PAGE_BYTES) * multipart_module.PAGE_BYTES
    return [first, page, page + bodies.READ_BYTES]


def across_read_ends(head: int, span: int) -> list[int]:
    """Lengths of data that put its next span bytes across each end at every offset."""
    return [end - offset for end in read_ends(head) for offset in range(-2, span + 3)]


@pytest.mark.parametrize(
    "tail",
    [
        b"",
        b"\r",
        b"\n",
        b"\r\n",
        b"\r\r\n\n",
        b"-",
        b"\r\n-",
        b"\r\n--",
        b"\r\n--xYz",
        b"\n--xYzZ",
        b"\r--xYzZ",
        b"--xYzZy",
        b"\r\n--xYzZyx",
        b"\r\n--xYzZy-x",
        b"\r\n--xYzZy\tx",
    ],
    ids=repr,
)
def test_post_file_ending_in_what_may_begin_a_delimiter(
    client: FlaskClient, store_dir: Path, tail: bytes
) -> None:
    """The data is kept as sent, up to the delimiter, wherever the body's reads end."""
    for size in across_read_ends(len(PART_HEAD), len(tail) + len(b"\r\n--xYzZy\r\n")):
        data = b"a" * (size - len(tail)) + tail
        response = post_form(client, PART_HEAD + data + CLOSE)
        assert response.status_code == 201, (size, response.json)
        saved = response.json["saved"][0]
        assert (saved["size"], saved["sha256"]) == (len(data), sha(data)), size
    assert (store_dir / "f.bin").read_bytes() == data
    assert staging(store_dir) == []


@pytest.mark.parametrize("padding", [b"", b" ", b" \t \t"], ids=len)
@pytest.mark.parametrize("line_break", [b"\r\n", b"\n"], ids=repr)
def test_post_files_split_by_a_delimiter_across_read_ends(
    client: FlaskClient, store_dir: Path, padding: bytes, line_break: bytes
) -> None:
    """A delimiter between two files, with transport padding after its boundary and a
    line break a client may send bare, is found wherever the body's reads end."""
    delimiter = line_break + b"--xYzZy" + padding + line_break
    second_head = b'Content-Disposition: form-data; name="file"; filename="g.bin"\r\n\r\n'
    for size in across_read_ends(len(PART_HEAD), len(delimiter) + 4):
        first = b"b" * size
        second = b"second\r\n--xYzZ"
        body = PART_HEAD + first + delimiter + second_head + second + CLOSE
        response = post_form(client, body)
        assert response.status_code == 201, (size, response.json)
        saved = [(i["path"], i["size"], i["sha256"]) for i in response.json["saved"]]
        assert saved == [
            ("f.bin", len(first), sha(first)),
            ("g.bin", len(second), sha(second)),
        ], size
    assert staging(store_dir) == []


@pytest.mark.parametrize(
    "end", [b"", b"\r", b"\r\n", b"\r\n--xYz", b"\r\n--xYzZy", b"\r\n--xYzZy ", b"\r\n--xYzZy-"]
)
def test_post_cut_short_past_its_first_read_is_400(
    client: FlaskClient, store_dir: Path, end: bytes
) -> None:
    for size in across_read_ends(len(PART_HEAD), len(end))[-6:]:
        body = PART_HEAD + b"c" * size + end
        response = post_form(client, body)
        assert response.status_code == 400, (size, response.json)
        assert response.json["code"] == "bad-request"
    assert objects(store_dir) == [] and staging(store_dir) == []


def test_post_part_whose_header_ends_at_a_read_end(client: FlaskClient, store_dir: Path) -> None:
    """A delimiter right after a part's header, sharing its line break, ends an empty part
    (as when the body is read at once), wherever the body's first read ends."""
    head = PART_HEAD[len(b"--xYzZy\r\n") :]
    rest = b'--xYzZy\r\nContent-Disposition: form-data; name="file"; filename="g.bin"\r\n\r\ng'
    for offset in range(-len(rest), 4):
        preamble = b"p" * (bodies.READ_BYTES - len(head) - len(b"\r\n--xYzZy\r\n") + offset)
        body = preamble + b"\r\n--xYzZy\r\n" + head + rest + CLOSE
        response = post_form(client, body)
        assert response.status_code == 201, (offset, response.json)
        saved = [(i["path"], i["size"]) for i in response.json["saved"]]
        assert saved == [("f.bin", 0), ("g.bin", 1)], offset
    assert staging(store_dir) == []


def test_post_large_files_and_fields_in_any_order(client: FlaskClient, store_dir: Path) -> None:
    one, two = os.urandom(700_000), os.urandom(300_001)
    body = multipart(
        ("file", "one.bin", one),
        ("dir", None, b"in"),
        ("file", "two.bin", two),
        ("overwrite", None, b"true"),
    )
    response = post_form(client, b"a preamble\r\n" + body + b"an epilogue")
    assert response.status_code == 201, response.json
    assert (store_dir / "in" / "one.bin").read_bytes() == one
    assert (store_dir / "in" / "two.bin").read_bytes() == two


# -- hostile paths on every endpoint -------------------------------------------------------------

ENDPOINTS = [
    ("GET", "files"),
    ("HEAD", "files"),
    ("PUT", "files"),
    ("DELETE", "files"),
    ("GET", "meta"),
]


@pytest.mark.parametrize("path", HOSTILE_URL_PATHS)
@pytest.mark.parametrize(("method", "area"), ENDPOINTS)
def test_hostile_paths_are_400(
    client: FlaskClient, store_dir: Path, method: str, area: str, path: str
) -> None:
    response = client.open(f"{API}/{area}/{path}", method=method, data=b'{"secret": "evil"}')
    assert response.status_code == 400, (response.status_code, response.data)
    if method != "HEAD":
        assert response.json["code"] == "invalid-path"
        assert b"secret" not in response.data
    assert (store_dir.parent / "sentinel.json").read_text() == SENTINEL
    assert objects(store_dir) == []


def test_read_only_refuses_writes(store_dir: Path) -> None:
    client = buffered(create_app(Settings(store=str(store_dir), read_only=True)))
    for response in (
        put(client, "x", b"x"),
        client.delete(f"{API}/files/x"),
        post_form(client, multipart(("file", "a", b"a"))),
    ):
        assert (response.status_code, response.json["code"]) == (403, "read-only")
    assert client.get(f"{API}/files").status_code == 200
