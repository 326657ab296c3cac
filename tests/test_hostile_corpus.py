"""The hostile corpus (tests/hostile.py) against every endpoint that takes a path or a name.

Each case gets a 4xx, or, for a name that is legal once decoded exactly once, a success that
stays inside the store. In every case the sentinel beside the store is neither read nor
changed, and nothing appears outside the store. Flask's test client runs the whole corpus, with
PATH_INFO set as the WSGI server would set it (the URL path percent-decoded once, as latin-1),
so no client normalises or re-decodes a path; a real `filedock serve` then gets a
representative subset as raw request lines."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import LiveServer, start_server
from tests.hostile import (
    HOSTILE_FILENAMES,
    HOSTILE_URL_PATHS,
    INVALID_UTF8_URL_PATHS,
    LITERAL_URL_PATHS,
    MORE_HOSTILE_URL_PATHS,
    NFC_NAME,
    NFD_NAME,
    REDUCED_FILENAMES,
    SENTINEL,
)
from tests.wire import raw, status_of

EVIL = b'{"secret": "evil"}'
MERGE = "application/merge-patch+json"
OCTETS = "application/offset+octet-stream"
TUS = {"Tus-Resumable": "1.0.0"}
URL_PATHS = HOSTILE_URL_PATHS + MORE_HOSTILE_URL_PATHS
# The same paths as a client puts them in a form field, a header or JSON (decoded once).
DECODED_PATHS = [unquote(path) for path in URL_PATHS]
# Every endpoint whose URL path ends in an object's path: (method, prefix, request options).
URL_ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/v1/files/", {}),
    ("HEAD", "/api/v1/files/", {}),
    ("PUT", "/api/v1/files/", {"data": EVIL}),
    ("DELETE", "/api/v1/files/", {}),
    ("GET", "/api/v1/meta/", {}),
    ("GET", "/api/v1/json/", {}),
    ("PUT", "/api/v1/json/", {"data": EVIL, "content_type": "application/json"}),
    ("PATCH", "/api/v1/json/", {"data": EVIL, "content_type": MERGE}),
    ("GET", "/getJsonFromFile/", {}),
]


def endpoint_id(endpoint: tuple[str, str, dict[str, Any]]) -> str:
    return endpoint[0] + " " + endpoint[1]


def send(client: FlaskClient, method: str, url: str, **options: Any) -> TestResponse:
    """One request whose PATH_INFO is url's path decoded exactly once, as a WSGI server has it."""
    path, _, query = url.partition("?")
    return client.open(
        "/",
        method=method,
        query_string=query,
        environ_overrides={"PATH_INFO": unquote_to_bytes(path).decode("latin-1")},
        buffered=True,
        **options,
    )


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def tus_create(client: FlaskClient, metadata: str, data: bytes = b"tus") -> TestResponse:
    headers = TUS | {"Upload-Length": str(len(data)), "Upload-Metadata": metadata}
    return client.post("/api/v1/uploads", data=data, headers=headers, content_type=OCTETS)


def escaped(filename: str) -> str:
    """A filename as clients put it in a multipart header (curl escapes a backslash: the
    parser reads `\\x` as `x`, a quoted-pair); Werkzeug's test client writes it as it is."""
    return filename.replace("\\", "\\\\")


def multipart(client: FlaskClient, filename: str, **fields: str) -> TestResponse:
    data: dict[str, Any] = {"file": (io.BytesIO(EVIL), escaped(filename)), **fields}
    return client.post("/api/v1/files", data=data, content_type="multipart/form-data")


def upload_files(client: FlaskClient, filename: str, prefix: str = "") -> TestResponse:
    data = {"FILES_LIST": (io.BytesIO(EVIL), escaped(filename)), "FILE_NAME": prefix}
    return client.post("/uploadFiles", data=data, content_type="multipart/form-data")


def outside(tmp_path: Path, store: Path) -> dict[str, bytes | str]:
    """Everything under tmp_path but not in the store: files with their bytes, links."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        if Path(dirpath) == store:
            dirnames[:] = filenames[:] = []
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(tmp_path))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                found[rel] = path.read_bytes()
            else:
                found[rel] = "dir"
    return found


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def guard(tmp_path: Path, store_dir: Path) -> Iterator[None]:
    """Nothing outside the store is created, changed or removed by the test."""
    before = outside(tmp_path, store_dir)
    assert (tmp_path / "sentinel.json").read_text() == SENTINEL
    yield
    assert outside(tmp_path, store_dir) == before
    assert (tmp_path / "sentinel.json").read_text() == SENTINEL


def objects(store: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(store):
        dirnames[:] = [d for d in dirnames if d != ".filedock"]
        found += [os.path.relpath(os.path.join(dirpath, f), store) for f in filenames]
    return sorted(found)


def assert_unread(response: TestResponse) -> None:
    """Neither the sentinel's content nor the body that was sent comes back."""
    assert b"secret" not in response.data


# -- paths in the URL ----------------------------------------------------------------------------


@pytest.mark.usefixtures("guard")
@pytest.mark.parametrize("endpoint", URL_ENDPOINTS, ids=endpoint_id)
def test_hostile_url_paths_are_400(
    client: FlaskClient, store_dir: Path, endpoint: tuple[str, str, dict[str, Any]]
) -> None:
    method, prefix, options = endpoint
    wrong = []
    for path in URL_PATHS + INVALID_UTF8_URL_PATHS:
        response = send(client, method, prefix + path, **options)
        if response.status_code != 400:
            wrong.append((path, response.status_code, response.data[:200]))
        assert_unread(response)
    assert wrong == []
    assert objects(store_dir) == []


@pytest.mark.usefixtures("guard")
@pytest.mark.parametrize(("url", "key"), LITERAL_URL_PATHS.items())
def test_a_percent_left_after_one_decoding_is_stored_literally(
    client: FlaskClient, store_dir: Path, url: str, key: str
) -> None:
    response = send(client, "PUT", "/api/v1/files/" + url, data=b'{"v": 1}')
    assert response.status_code == 201, response.data
    assert response.json["path"] == key
    assert (store_dir / key).read_bytes() == b'{"v": 1}'
    assert objects(store_dir) == [key]
    assert send(client, "GET", "/api/v1/files/" + url).data == b'{"v": 1}'
    assert send(client, "GET", "/api/v1/meta/" + url).json["path"] == key
    assert send(client, "GET", "/api/v1/json/" + url).json == {"v": 1}
    response = send(client, "PATCH", "/api/v1/json/" + url, data=b'{"w": 2}', content_type=MERGE)
    assert response.json == {"v": 1, "w": 2}
    assert send(client, "GET", "/getJsonFromFile/" + url).json["LABELS_MAPPING"] == {"v": 1, "w": 2}
    listing = client.get("/api/v1/files", query_string={"prefix": key}).json["items"]
    assert [item["path"] for item in listing] == [key]
    assert send(client, "DELETE", "/api/v1/files/" + url).status_code == 204
    assert objects(store_dir) == []


# -- names in bodies, fields and headers ---------------------------------------------------------


@pytest.mark.usefixtures("guard")
def test_hostile_multipart_filenames_and_dirs(client: FlaskClient, store_dir: Path) -> None:
    for filename in HOSTILE_FILENAMES:
        response = multipart(client, filename)
        assert response.status_code == 400, (filename, response.json)
        if "errors" in response.json:  # else the header broke (a raw newline): no file part
            assert [e["code"] for e in response.json["errors"]] == ["invalid-path"]
    for folder in DECODED_PATHS:
        response = multipart(client, "a.txt", dir=folder)
        assert response.status_code == 400, (folder, response.json)
    assert objects(store_dir) == []


@pytest.mark.usefixtures("guard")
@pytest.mark.parametrize(("filename", "stored"), REDUCED_FILENAMES.items())
def test_a_filename_is_reduced_to_its_last_segment_inside_the_store(
    client: FlaskClient, store_dir: Path, filename: str, stored: str
) -> None:
    response = multipart(client, filename)
    assert response.status_code == 201, response.json
    assert [item["path"] for item in response.json["saved"]] == [stored]
    assert (store_dir / stored).read_bytes() == EVIL
    response = upload_files(client, filename, "c_")
    assert response.json == {
        "STATUS": "true",
        "ERROR_FILES_LIST": "",
        "SAVED_FILES": ["c_" + stored],
    }
    assert (store_dir / ("c_" + stored)).read_bytes() == EVIL
    response = tus_create(client, f"filename {b64(filename)},overwrite {b64('true')}")
    assert response.status_code == 201
    assert (store_dir / stored).read_bytes() == b"tus"
    assert objects(store_dir) == sorted([stored, "c_" + stored])


@pytest.mark.usefixtures("guard")
def test_hostile_upload_files_names_and_prefixes(client: FlaskClient, store_dir: Path) -> None:
    for filename in HOSTILE_FILENAMES:
        response = upload_files(client, filename)
        if response.status_code == 400:  # a raw newline broke the part's header
            assert response.json == {"STATUS": "false", "error": "no files in FILES_LIST"}
            continue
        assert response.status_code == 200
        assert response.json["SAVED_FILES"] == [], filename
        assert response.json["ERROR_FILES_LIST"] == "," + filename
    for prefix in DECODED_PATHS + ["a/", "a\\", ".filedock"]:
        response = upload_files(client, "x.txt", prefix)
        assert response.status_code == 400, prefix
        assert response.json["STATUS"] == "false"
        assert response.json["error"].startswith("invalid FILE_NAME")
    assert objects(store_dir) == []


@pytest.mark.usefixtures("guard")
def test_hostile_tus_metadata(client: FlaskClient, store_dir: Path) -> None:
    for path in DECODED_PATHS:
        response = tus_create(client, f"path {b64(path)}")
        assert response.status_code == 400, path
        assert response.json["code"] == "invalid-path"
    for filename in HOSTILE_FILENAMES:
        response = tus_create(client, f"filename {b64(filename)}")
        assert response.status_code == 400, filename
    assert objects(store_dir) == []
    assert list((store_dir / ".filedock").glob("uploads/*")) == []


@pytest.mark.usefixtures("guard")
def test_hostile_presign_paths(client: FlaskClient) -> None:
    for path in DECODED_PATHS:
        for method in ("GET", "PUT"):
            response = client.post("/api/v1/presign", json={"path": path, "method": method})
            assert response.status_code == 400, (path, method)
            assert response.json["code"] == "invalid-path"


@pytest.mark.usefixtures("guard")
def test_hostile_listing_prefixes(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "a.json").write_text("{}")
    for prefix in DECODED_PATHS:
        response = client.get("/api/v1/files", query_string={"prefix": prefix})
        assert response.status_code == 400, (prefix, response.json)
        assert response.json["code"] == "invalid-path"


# -- NFC and NFD ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("guard")
def test_nfc_and_nfd_are_two_paths(client: FlaskClient, store_dir: Path) -> None:
    """Each spelling is stored as given, by every way in; neither becomes the other."""
    names = {NFC_NAME: b'{"form": "NFC"}', NFD_NAME: b'{"form": "NFD"}'}
    for name, data in names.items():
        assert client.put("/api/v1/files/" + quote(name), data=data).status_code == 201
    assert sorted(os.listdir(store_dir)) == sorted([".filedock", NFC_NAME, NFD_NAME])
    for name, data in names.items():
        assert (store_dir / name).read_bytes() == data
        assert send(client, "GET", "/api/v1/files/" + quote(name)).data == data
        assert send(client, "GET", "/api/v1/json/" + quote(name)).data == data
        assert send(client, "GET", "/getJsonFromFile/" + quote(name)).json["LABELS_MAPPING"] == (
            json.loads(data)
        )
    listing = [i["path"] for i in client.get("/api/v1/files").json["items"]]
    assert sorted(listing) == sorted(names)
    for name in names:
        assert (
            client.get("/api/v1/files", query_string={"prefix": name}).json["items"][0]["path"]
            == name
        )
    # every other way in keeps the spelling too
    for name in names:
        assert multipart(client, name, dir="m").json["saved"][0]["path"] == "m/" + name
        assert upload_files(client, name, "u").json["SAVED_FILES"] == ["u" + name]
        assert tus_create(client, f"path {b64('t/' + name)}").status_code == 201
        response = client.put("/api/v1/json/j/" + quote(name), data=b"[]")
        assert response.json["path"] == "j/" + name
    for folder in ("m", "t", "j"):
        assert sorted(os.listdir(store_dir / folder)) == sorted(names)
    assert {n for n in os.listdir(store_dir) if n.startswith("u")} == {"u" + n for n in names}


# -- symlinks planted in the store ---------------------------------------------------------------


@pytest.fixture
def planted(tmp_path: Path, store_dir: Path) -> Path:
    """store/link.json -> the sentinel; store/outdir -> a folder outside with secret.json."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "hidden.json").write_text('{"secret": "outside"}')
    (store_dir / "link.json").symlink_to(tmp_path / "sentinel.json")
    (store_dir / "outdir").symlink_to(tmp_path / "outside", target_is_directory=True)
    return tmp_path / "outside"


@pytest.mark.usefixtures("planted", "guard")
@pytest.mark.parametrize("endpoint", URL_ENDPOINTS, ids=endpoint_id)
@pytest.mark.parametrize("path", ["link.json", "outdir/hidden.json", "outdir/new.json"])
def test_symlinks_out_of_the_store_are_not_followed(
    client: FlaskClient, store_dir: Path, endpoint: tuple[str, str, dict[str, Any]], path: str
) -> None:
    method, prefix, options = endpoint
    response = send(client, method, prefix + path, **options)
    assert response.status_code == 404, response.data
    assert_unread(response)
    assert (store_dir / "link.json").is_symlink() and (store_dir / "outdir").is_symlink()


@pytest.mark.usefixtures("planted", "guard")
def test_symlinks_out_of_the_store_by_every_other_way_in(
    client: FlaskClient, store_dir: Path
) -> None:
    response = multipart(client, "x.json", dir="outdir")
    assert (response.status_code, response.json["errors"][0]["code"]) == (404, "not-found")
    response = multipart(client, "link.json", overwrite="true")
    assert (response.status_code, response.json["errors"][0]["code"]) == (404, "not-found")
    response = upload_files(client, "link.json")
    assert response.json == {"STATUS": "true", "ERROR_FILES_LIST": ",link.json", "SAVED_FILES": []}
    for path in ("link.json", "outdir/x.json"):
        response = tus_create(client, f"path {b64(path)},overwrite {b64('true')}")
        assert (response.status_code, response.json["code"]) == (409, "conflict"), path
        assert "out of the store" in response.json["detail"]
    for path in ("link.json", "outdir/hidden.json"):
        response = client.post("/api/v1/presign", json={"path": path, "method": "GET"})
        assert send(client, "GET", response.json["url"]).status_code == 404
        response = client.post("/api/v1/presign", json={"path": path, "method": "PUT"})
        assert send(client, "PUT", response.json["url"], data=EVIL).status_code == 404
    for prefix in ("", "link", "outdir", "outdir/", "outdir/hidden"):
        assert client.get("/api/v1/files", query_string={"prefix": prefix}).json["items"] == []


# -- over the wire ---------------------------------------------------------------------------


def wire(url: str, method: str, target: str, body: bytes = b"", content_type: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return raw(url, (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    root = tmp_path_factory.mktemp("corpus")
    (root / "sentinel.json").write_text(SENTINEL)
    (root / "outside").mkdir()
    (root / "outside" / "hidden.json").write_text('{"secret": "outside"}')
    store = root / "store"
    store.mkdir()
    (store / "link.json").symlink_to(root / "sentinel.json")
    (store / "outdir").symlink_to(root / "outside", target_is_directory=True)
    server = start_server("--store", str(store), "--port", "0", "--workers", "1")
    yield server, store
    server.stop()


WIRE_SUBSET = [
    "..%2fsentinel.json",
    "%2e%2e/sentinel.json",
    "..%5csentinel.json",
    "a/%2e%2e/%2e%2e/sentinel.json",
    "a%7fb.json",
    "a%c2%85b.json",
    ".filedock/state/presign-key",
    "%c3%a9" * 128,
    "z/" * 512 + "z",
    *INVALID_UTF8_URL_PATHS,
]


@pytest.mark.parametrize("endpoint", URL_ENDPOINTS, ids=endpoint_id)
def test_hostile_paths_against_a_real_server(
    served: tuple[LiveServer, Path], endpoint: tuple[str, str, dict[str, Any]]
) -> None:
    server, store = served
    root = store.parent
    before = outside(root, store)
    method, prefix, options = endpoint
    content_type = options.get(
        "content_type", "application/octet-stream" if "data" in options else ""
    )
    body = options.get("data", b"")
    for path in WIRE_SUBSET:
        response = wire(server.url, method, prefix + path, body, content_type)
        assert status_of(response) == 400, (path, response[:300])
        assert b"secret" not in response.split(b"\r\n\r\n", 1)[1]
    for path in ("link.json", "outdir/hidden.json", "outdir/new.json"):
        response = wire(server.url, method, prefix + path, body, content_type)
        assert status_of(response) == 404, (path, response[:300])
        assert b"secret" not in response.split(b"\r\n\r\n", 1)[1]
    assert outside(root, store) == before
    assert objects(store) == ["link.json"]  # os.walk lists the link to the folder as a folder


def test_literal_percent_paths_against_a_real_server(served: tuple[LiveServer, Path]) -> None:
    server, store = served
    root = store.parent
    before = outside(root, store)
    for url, key in LITERAL_URL_PATHS.items():
        response = wire(server.url, "PUT", "/api/v1/files/" + url, b'{"v": 1}', "application/json")
        assert status_of(response) == 201, (url, response[:300])
        assert (store / key).read_bytes() == b'{"v": 1}'
        response = wire(server.url, "GET", "/getJsonFromFile/" + url)
        assert status_of(response) == 200 and b'"LABELS_MAPPING":{"v":1}' in response
        assert status_of(wire(server.url, "DELETE", "/api/v1/files/" + url)) == 204
        assert not (store / key).exists()
    assert outside(root, store) == before
