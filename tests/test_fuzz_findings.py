"""Regression tests, through HTTP, for what fuzzing and the hostile corpus found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from tests.conftest import LiveServer, start_server
from tests.wire import raw


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    root = tmp_path_factory.mktemp("findings")
    store = root / "store"
    store.mkdir()
    live = start_server("--store", str(store), "--port", "0", "--workers", "1")
    yield live, store
    assert live.stop() == 0


def test_a_long_listing_request_line_is_served(server: tuple[LiveServer, Path]) -> None:
    """A 1024-byte prefix, percent-encoded, plus the cursor after a 1024-byte path made a
    request line over gunicorn's default limit (4094 bytes): its HTML 414 instead of a page."""
    live, store = server
    folder = "/".join(["\u00e9" * 127] * 4)  # 4 segments of 254 bytes
    for name in ("a", "b"):
        response = requests.put(f"{live.url}/api/v1/files/{folder}/{name}", data=b"x", timeout=30)
        assert response.status_code == 201, response.text
    params = {"prefix": folder + "/", "limit": "1"}
    first = requests.get(f"{live.url}/api/v1/files", params=params, timeout=30)
    assert first.status_code == 200
    cursor = first.json()["next_cursor"]
    second = requests.get(
        f"{live.url}/api/v1/files", params=params | {"cursor": cursor}, timeout=30
    )
    assert len(second.request.path_url) > 4094
    assert second.status_code == 200, second.text[:300]
    assert [item["path"] for item in second.json()["items"]] == [f"{folder}/b"]


def test_compat_refuses_a_path_that_is_not_utf8(server: tuple[LiveServer, Path]) -> None:
    """The original endpoint let U+FFFD stand in for invalid UTF-8, so `bad%FF` reached an
    object named `bad\ufffd`; the native routes already refused it."""
    live, store = server
    (store / "bad\ufffdname.json").write_text('{"reached": true}')
    request = (
        b"GET /getJsonFromFile/bad%FFname.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    response = raw(live.url, request)
    assert response.startswith(b"HTTP/1.1 400"), response[:300]
    assert b'"STATUS":"false"' in response and b"not valid UTF-8" in response
    assert b"reached" not in response
    ok = raw(live.url, request.replace(b"%FF", b"%EF%BF%BD"))  # U+FFFD itself is a fine name
    assert ok.startswith(b"HTTP/1.1 200") and b'"reached":true' in ok


def test_a_range_of_a_json_object_is_not_described_as_json(client: FlaskClient) -> None:
    """Downloads are raw bytes: the document gave them a schema, so a 206 with the first
    byte of a JSON object was held to be a JSON body."""
    client.put("/api/v1/files/list.json", data=b"[1, 2]", content_type="application/json")
    response = client.get("/api/v1/files/list.json", headers={"Range": "bytes=0-0"}, buffered=True)
    assert (response.status_code, response.data) == (206, b"[")
    document = client.get("/api/v1/openapi.json").json
    download = document["paths"]["/api/v1/files/{path}"]["get"]["responses"]
    assert download["200"]["content"] == {"*/*": {}}
    assert download["206"]["content"] == {"*/*": {}}
