"""Broken and hostile request inputs against a real `filedock serve`, over raw sockets: bodies
cut short, numbers of thousands of digits, JSON Patch bombs, lone surrogates, the PATCH that
everyday JSON clients send, and oversized multipart part headers."""

from __future__ import annotations

import base64
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import LiveServer, start_server
from tests.wire import body_of, cut, header_of, raw, status_of

API = "/api/v1"
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
HUGE = "9" * 4400  # past Python's 4300-digit limit for int() of a string


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    """One server for the module; each test works on paths of its own."""
    store = tmp_path_factory.mktemp("inputs") / "store"
    store.mkdir()
    server = start_server("--store", str(store), "--port", "0")
    yield server, store
    server.stop()


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    """A request line and headers, exactly as written."""
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_cut_short(
    url: str, method: str, path: str, headers: dict[str, str], body: bytes, framing: str
) -> bytes:
    """Send body as if it were only the start of the request's body, then stop sending:
    declared 10 bytes longer than it is, or sent as a chunk with no last chunk after it."""
    if framing == "length":
        headers = headers | {"Content-Length": str(len(body) + 10)}
        data = body
    else:
        headers = headers | {"Transfer-Encoding": "chunked"}
        data = b"%x\r\n%s\r\n" % (len(body), body)
    return cut(url, head(method, path, headers) + data)


def problem(response: bytes) -> dict[str, Any]:
    """The problem+json body of a raw answer."""
    assert header_of(response, "Content-Type") == "application/problem+json", response[:400]
    body: dict[str, Any] = json.loads(body_of(response))
    return body


def store_files(store: Path) -> list[str]:
    """The objects in the store (not its own state)."""
    return sorted(
        str(p.relative_to(store))
        for p in store.rglob("*")
        if p.is_file() and ".filedock" not in p.relative_to(store).parts
    )


def wait_for_empty_staging(store: Path) -> None:
    """Staging files are removed before the answer; allow a moment for a busy machine."""
    staging = store / ".filedock" / "staging"
    deadline = time.monotonic() + 30
    while staging.exists() and list(staging.iterdir()):
        assert time.monotonic() < deadline, list(staging.iterdir())
        time.sleep(0.05)


def multipart(field: str, filename: str, content: bytes, part_headers: str = "") -> bytes:
    """A multipart/form-data body with one file (boundary XyZ)."""
    return (
        (
            f'--XyZ\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"{part_headers}Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + b"\r\n--XyZ--\r\n"
    )


FORM = {"Content-Type": "multipart/form-data; boundary=XyZ"}
FRAMINGS = ["length", "chunked"]


# -- A: a body that ends before its end is refused, and changes nothing ----------------------


@pytest.mark.parametrize("framing", FRAMINGS)
def test_json_put_cut_short_stores_nothing(served: tuple[LiveServer, Path], framing: str) -> None:
    server, store = served
    name = f"cut-put-{framing}.json"
    assert requests.put(f"{server.url}{API}/json/{name}", data=b'{"v": 1}', timeout=30).ok
    # "123" is a whole JSON document by itself: only the declared framing says it is not all
    response = send_cut_short(server.url, "PUT", f"{API}/json/{name}", {}, b"123", framing)
    assert status_of(response) == 400, response[:400]
    assert problem(response)["code"] == "bad-request"
    assert (store / name).read_bytes() == b'{"v": 1}'
    response = send_cut_short(server.url, "PUT", f"{API}/json/new-{name}", {}, b"123", framing)
    assert status_of(response) == 400, response[:400]
    assert not (store / f"new-{name}").exists()


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize(
    ("content_type", "patch"),
    [(MERGE, b'{"b": 2}'), (JSON_PATCH, b'[{"op": "add", "path": "/b", "value": 2}]')],
)
def test_json_patch_cut_short_applies_nothing(
    served: tuple[LiveServer, Path], framing: str, content_type: str, patch: bytes
) -> None:
    server, store = served
    name = f"cut-patch-{framing}-{content_type.split('/')[1]}.json"
    (store / name).write_bytes(b'{"a": 1}')
    headers = {"Content-Type": content_type}
    response = send_cut_short(server.url, "PATCH", f"{API}/json/{name}", headers, patch, framing)
    assert status_of(response) == 400, response[:400]
    assert problem(response)["code"] == "bad-request"
    assert (store / name).read_bytes() == b'{"a": 1}'


@pytest.mark.parametrize("framing", FRAMINGS)
def test_presign_cut_short_signs_nothing(served: tuple[LiveServer, Path], framing: str) -> None:
    server, _ = served
    body = b'{"path": "a.bin", "method": "GET"}'
    headers = {"Content-Type": "application/json"}
    response = send_cut_short(server.url, "POST", f"{API}/presign", headers, body, framing)
    assert status_of(response) == 400, response[:400]
    assert problem(response)["code"] == "bad-request"


@pytest.mark.parametrize("framing", FRAMINGS)
def test_uploads_cut_short_store_nothing(served: tuple[LiveServer, Path], framing: str) -> None:
    server, store = served
    before = store_files(store)
    cases = [
        ("PUT", f"{API}/files/cut-{framing}.bin", {}, b"0123456789"),
        ("POST", f"{API}/files", FORM, multipart("file", f"form-{framing}.bin", b"hello")),
        ("POST", "/uploadFiles", FORM, multipart("FILES_LIST", f"compat-{framing}.bin", b"hi")),
    ]
    for method, path, headers, body in cases:
        response = send_cut_short(server.url, method, path, headers, body, framing)
        assert status_of(response) == 400, (path, response[:400])
        if path == "/uploadFiles":  # the original app's error shape
            assert json.loads(body_of(response))["STATUS"] == "false"
        else:
            assert problem(response)["code"] == "bad-request"
    assert store_files(store) == before
    wait_for_empty_staging(store)


def tus_offset(url: str) -> int:
    response = requests.head(url, headers=TUS, timeout=30)
    assert response.status_code == 200
    return int(response.headers["Upload-Offset"])


WHOLE = b"abcdefghijklmnopqrst"  # the 20 bytes of the tus uploads, of which "abcd" is sent


def metadata(path: str) -> str:
    return "path " + base64.b64encode(path.encode()).decode()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_tus_creation_cut_short_is_refused(served: tuple[LiveServer, Path], framing: str) -> None:
    server, store = served
    target = f"tus-create-{framing}.bin"
    headers = TUS | {
        "Upload-Length": "20",
        "Upload-Metadata": metadata(target),
        "Content-Type": OCTETS,
    }
    response = send_cut_short(server.url, "POST", f"{API}/uploads", headers, b"abcd", framing)
    assert status_of(response) == 400, response[:400]
    assert problem(response)["code"] == "bad-request"
    location = header_of(response, "Location")
    assert location is not None  # the upload exists: the client can resume it
    upload = server.url + location
    offset = tus_offset(upload)
    if framing == "length":  # what arrived is kept to resume from, as tus asks
        assert offset == 4
    assert not (store / target).exists()
    resumed = requests.patch(
        upload,
        data=WHOLE[offset:],
        headers=TUS | {"Upload-Offset": str(offset), "Content-Type": OCTETS},
        timeout=30,
    )
    assert resumed.status_code == 204
    assert (store / target).read_bytes() == WHOLE


@pytest.mark.parametrize("framing", FRAMINGS)
def test_tus_patch_cut_short_is_refused(served: tuple[LiveServer, Path], framing: str) -> None:
    server, store = served
    target = f"tus-patch-{framing}.bin"
    created = requests.post(
        f"{server.url}{API}/uploads",
        headers=TUS | {"Upload-Length": "20", "Upload-Metadata": metadata(target)},
        timeout=30,
    )
    assert created.status_code == 201
    upload = server.url + created.headers["Location"]
    path = created.headers["Location"]
    headers = TUS | {"Upload-Offset": "0", "Content-Type": OCTETS}
    response = send_cut_short(server.url, "PATCH", path, headers, b"abcd", framing)
    assert status_of(response) == 400, response[:400]
    assert problem(response)["code"] == "bad-request"
    offset = tus_offset(upload)
    if framing == "length":
        assert offset == 4
    assert not (store / target).exists()


# -- B: a JSON Patch cannot multiply a document past max_json_bytes ---------------------------


@pytest.fixture
def capped(store_dir: Path) -> Iterator[LiveServer]:
    """A one-worker server whose address space is capped at 1 GiB: should a patch ever go
    unbounded again, the worker fails with MemoryError instead of exhausting the machine."""
    server = start_server("--store", str(store_dir), "--port", "0", "--workers", "1")
    try:
        for pid in (server.process.pid, server.first_worker()):
            resource.prlimit(pid, resource.RLIMIT_AS, (1 << 30, 1 << 30))
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_doubling_json_patch_is_stopped_at_the_limit(capped: LiveServer, store_dir: Path) -> None:
    server, store = capped, store_dir
    (store / "bomb.json").write_bytes(b'{"a": [1]}')
    # 40 doublings would be 2**40 elements: without a bound this never finishes
    patch = [{"op": "copy", "from": "/a", "path": "/a/-"}] * 40
    response = requests.patch(
        f"{server.url}{API}/json/bomb.json",
        data=json.dumps(patch),
        headers={"Content-Type": JSON_PATCH},
        timeout=50,
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too-large"
    assert (store / "bomb.json").read_bytes() == b'{"a": [1]}'


def test_json_patch_of_too_many_operations_is_413(served: tuple[LiveServer, Path]) -> None:
    server, store = served
    (store / "ops.json").write_bytes(b"{}")
    url = f"{server.url}{API}/json/ops.json"
    noop = {"op": "test", "path": "", "value": {}}
    response = requests.patch(
        url, data=json.dumps([noop] * 1001), headers={"Content-Type": JSON_PATCH}, timeout=30
    )
    assert response.status_code == 413 and response.json()["code"] == "too-large"
    assert "1000" in response.json()["detail"]
    response = requests.patch(
        url, data=json.dumps([noop] * 1000), headers={"Content-Type": JSON_PATCH}, timeout=30
    )
    assert response.status_code == 200, response.text


# -- C: lone surrogates are refused on the way in, never a 500 on the way out ----------------


LONE = [b'{"name": "\\ud800"}', b'{"name": "x\\udc00y"}', b'{"\\udbff": 1}', b'["\\ud800\\ud800"]']


def test_document_with_a_lone_surrogate_is_refused(served: tuple[LiveServer, Path]) -> None:
    server, store = served
    url = f"{server.url}{API}/json/surrogate.json"
    for body in LONE:
        response = requests.put(url, data=body, timeout=30)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["code"] == "invalid-json"
        assert not (store / "surrogate.json").exists()
    # a pair is one character, and fine
    assert requests.put(url, data=b'{"name": "\\ud83d\\ude00"}', timeout=30).status_code == 201
    response = requests.get(url, params={"pointer": "/name"}, timeout=30)
    assert response.status_code == 200 and response.json() == "\U0001f600"


@pytest.mark.parametrize(
    ("content_type", "patch"),
    [
        (MERGE, b'{"name": "\\udc00"}'),
        ("application/json", b'{"\\ud800": 1}'),
        (JSON_PATCH, b'[{"op": "add", "path": "/name", "value": "\\udc00"}]'),
        (JSON_PATCH, b'[{"op": "add", "path": "/\\ud800", "value": 1}]'),
    ],
)
def test_patch_with_a_lone_surrogate_is_refused(
    served: tuple[LiveServer, Path], content_type: str, patch: bytes
) -> None:
    server, store = served
    (store / "clean.json").write_bytes(b'{"name": "ok"}')
    response = requests.patch(
        f"{server.url}{API}/json/clean.json",
        data=patch,
        headers={"Content-Type": content_type},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid-json"
    assert (store / "clean.json").read_bytes() == b'{"name": "ok"}'


def test_stored_lone_surrogate_is_a_clear_422(served: tuple[LiveServer, Path]) -> None:
    server, store = served
    (store / "by-hand.json").write_bytes(b'{"name": "\\ud800", "n": 1}')  # on the disk
    uploaded = requests.put(
        f"{server.url}{API}/files/uploaded.json", data=b'["\\udfff"]', timeout=30
    )  # through the files API, which stores any bytes
    assert uploaded.status_code == 201
    for name, pointer in [("by-hand.json", "/name"), ("uploaded.json", "/0")]:
        url = f"{server.url}{API}/json/{name}"
        for params in [{"pointer": pointer}, {}]:
            response = requests.get(url, params=params, timeout=30)
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "invalid-json"
        for content_type, patch in [(MERGE, b'{"n": 2}'), (JSON_PATCH, b"[]")]:
            response = requests.patch(
                url, data=patch, headers={"Content-Type": content_type}, timeout=30
            )
            assert response.status_code == 422, response.text
        response = requests.get(f"{server.url}/getJsonFromFile/{name}", timeout=30)
        assert response.status_code == 422
        assert response.json() == {"STATUS": "false", "error": "file is not valid JSON"}
    assert (store / "by-hand.json").read_bytes() == b'{"name": "\\ud800", "n": 1}'


# -- D: numbers of thousands of digits --------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_range_positions_of_thousands_of_digits(
    served: tuple[LiveServer, Path], method: str
) -> None:
    server, store = served
    (store / "ten.bin").write_bytes(b"0123456789")
    path = f"{API}/files/ten.bin"

    def ranged(spec: str) -> bytes:
        return raw(server.url, head(method, path, {"Range": f"bytes={spec}"}))

    # RFC 9110 14.1.2: a last-byte-pos past the end means the end; a suffix longer than the
    # representation means all of it; a first-byte-pos past the end is unsatisfiable
    for spec in [f"0-{HUGE}", f"-{HUGE}", f"0-{'0' * 4400}9"]:
        response = ranged(spec)
        assert status_of(response) == 206, (spec[:20], response[:300])
        assert header_of(response, "Content-Range") == "bytes 0-9/10"
        if method == "GET":
            assert body_of(response) == b"0123456789"
    response = ranged(f"2-{'0' * 4400}4")
    assert status_of(response) == 206 and header_of(response, "Content-Range") == "bytes 2-4/10"
    response = ranged(f"{HUGE}-")
    assert status_of(response) == 416
    assert header_of(response, "Content-Range") == "bytes */10"
    response = ranged(f"5-{HUGE}")
    assert status_of(response) == 206 and header_of(response, "Content-Range") == "bytes 5-9/10"
    # last before first: the header is ignored (two such numbers pass gunicorn's 8190-byte
    # header line limit, so the last one is shorter)
    response = ranged(f"{'9' * 4301}-{'9' * 3800}")
    assert status_of(response) == 200


def test_listing_limit_of_thousands_of_digits_is_400(served: tuple[LiveServer, Path]) -> None:
    server, _ = served
    for limit in ["0" * 4400 + "5", HUGE]:
        response = raw(server.url, head("GET", f"{API}/files?limit={limit}", {}))
        assert status_of(response) == 400, response[:300]
        assert problem(response)["code"] == "bad-request"


def test_pointer_index_of_thousands_of_digits(served: tuple[LiveServer, Path]) -> None:
    server, store = served
    (store / "list.json").write_bytes(b'{"list": [1, 2], "' + HUGE.encode() + b'": "key"}')
    url = f"{server.url}{API}/json/list.json"
    response = requests.get(url, params={"pointer": f"/list/{HUGE}"}, timeout=30)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "pointer-not-found"
    response = requests.get(url, params={"pointer": f"/{HUGE}"}, timeout=30)
    assert response.status_code == 200 and response.json() == "key"  # a member name
    for op in [
        {"op": "add", "path": f"/list/{HUGE}", "value": 3},
        {"op": "remove", "path": f"/list/{HUGE}"},
        {"op": "copy", "from": f"/list/{HUGE}", "path": "/x"},
    ]:
        response = requests.patch(
            url, data=json.dumps([op]), headers={"Content-Type": JSON_PATCH}, timeout=30
        )
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "conflict"


def test_other_numbers_of_thousands_of_digits_are_4xx(served: tuple[LiveServer, Path]) -> None:
    server, _ = served
    requests_ = [
        head("POST", f"{API}/uploads", TUS | {"Upload-Length": HUGE}),
        head("PATCH", f"{API}/uploads/abc", TUS | {"Upload-Offset": HUGE, "Content-Type": OCTETS}),
        head("PUT", f"{API}/files/n.bin", {"Content-Length": HUGE}),
        head("GET", f"{API}/files?cursor={HUGE}", {}),
    ]
    for request in requests_:
        response = raw(server.url, request)
        assert 400 <= status_of(response) < 500, (request[:60], response[:300])


# -- E: PATCH as everyday JSON clients send it -------------------------------------------------


def test_requests_patch_json_is_a_merge_patch(served: tuple[LiveServer, Path]) -> None:
    server, store = served
    (store / "fish.json").write_bytes(b'{"fish": 1, "cat": "x"}')
    url = f"{server.url}{API}/json/fish.json"
    response = requests.patch(url, json={"fish": 3, "cat": None}, timeout=30)
    assert response.request.headers["Content-Type"] == "application/json"
    assert response.status_code == 200, response.text
    assert response.json() == {"fish": 3}
    assert json.loads((store / "fish.json").read_bytes()) == {"fish": 3}
    for body in [[{"op": "remove", "path": "/fish"}], "fish", 3, None]:
        response = requests.patch(url, json=body, timeout=30)
        assert response.status_code == 415, (body, response.text)
        assert response.json()["code"] == "unsupported-media-type"
        assert JSON_PATCH in response.json()["detail"]
        assert JSON_PATCH in response.headers["Accept-Patch"]
    assert json.loads((store / "fish.json").read_bytes()) == {"fish": 3}


# -- F: multipart part headers are bounded ------------------------------------------------------


@pytest.mark.parametrize("endpoint", [f"{API}/files", "/uploadFiles"])
def test_long_multipart_part_header_is_400(served: tuple[LiveServer, Path], endpoint: str) -> None:
    server, store = served
    field = "file" if endpoint.endswith("files") else "FILES_LIST"
    before = store_files(store)
    for size in [1 << 20, (16 << 10) + 1]:
        body = multipart(field, "long-header.bin", b"x", f"X-Long: {'a' * size}\r\n")
        response = requests.post(server.url + endpoint, data=body, headers=FORM, timeout=30)
        assert response.status_code == 400, response.text
        if endpoint == "/uploadFiles":
            assert response.json()["STATUS"] == "false"
            assert "header" in response.json()["error"]
        else:
            assert response.headers["Content-Type"] == "application/problem+json"
            assert response.json()["code"] == "bad-request"
            assert "header" in response.json()["detail"]
    assert store_files(store) == before
    wait_for_empty_staging(store)
    # a header section within the limit is fine
    body = multipart(field, f"short-{field}.bin", b"x", f"X-Long: {'a' * (15 << 10)}\r\n")
    response = requests.post(server.url + endpoint, data=body, headers=FORM, timeout=30)
    assert response.status_code in (200, 201), response.text
    assert (store / f"short-{field}.bin").read_bytes() == b"x"
