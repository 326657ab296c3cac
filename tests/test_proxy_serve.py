"""Behind a proxy (`trusted_proxies`): the client's address in the access log, and the URLs the
server hands out, come from the X-Forwarded-* headers of the trusted hops only."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import LiveServer, start_server, wait_for

# The proxy's own headers: the client it saw, the scheme and host it was asked on, and the
# path under which it publishes the server.
FORWARDED = {
    "X-Forwarded-For": "198.51.100.9, 203.0.113.7",  # a client-sent value, then the proxy's
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "files.example.test",
    "X-Forwarded-Prefix": "/store",
}


def access_line(server: LiveServer, request_id: str) -> str:
    """The access log line of the request with this id, once it is written."""
    wait_for(lambda: any(f"request_id={request_id} " in line for line in list(server.output)))
    return next(line for line in list(server.output) if f"request_id={request_id} " in line)


@pytest.fixture
def proxied(store_dir: Path) -> Iterator[LiveServer]:
    server = start_server("--store", str(store_dir), "--port", "0", "--trusted-proxies", "1")
    yield server
    server.stop()


def test_client_address_and_request_id_come_from_the_proxy(proxied: LiveServer) -> None:
    headers = FORWARDED | {"X-Request-ID": "nginx-4f2a"}
    response = requests.get(proxied.url + "/healthz", headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "nginx-4f2a"
    line = access_line(proxied, "nginx-4f2a")
    # Only the last hop is trusted: the address the proxy saw, not what the client claimed.
    assert line.startswith("203.0.113.7 "), line


def test_urls_carry_the_proxy_prefix(proxied: LiveServer) -> None:
    put = requests.put(
        proxied.url + "/api/v1/files/a/b.txt", data=b"hi", headers=FORWARDED, timeout=10
    )
    assert put.status_code == 201
    assert put.headers["Location"] == "/store/api/v1/files/a/b.txt"
    metadata = "path " + base64.b64encode(b"up/c.bin").decode()
    tus = requests.post(
        proxied.url + "/api/v1/uploads",
        headers=FORWARDED
        | {"Tus-Resumable": "1.0.0", "Upload-Length": "3", "Upload-Metadata": metadata},
        timeout=10,
    )
    assert tus.status_code == 201
    assert re.fullmatch(r"/store/api/v1/uploads/[0-9a-f]+", tus.headers["Location"])
    presign = requests.post(
        proxied.url + "/api/v1/presign",
        json={"path": "a/b.txt", "method": "GET"},
        headers=FORWARDED,
        timeout=10,
    )
    assert presign.status_code == 200
    url = presign.json()["url"]
    assert url.startswith("/store/api/v1/files/a/b.txt?"), url
    # The proxy strips its prefix on the way in; the signed link works through it.
    fetched = requests.get(proxied.url + url.removeprefix("/store"), timeout=10)
    assert fetched.status_code == 200 and fetched.content == b"hi"


def test_without_trusted_proxies_the_headers_are_ignored(live_server: LiveServer) -> None:
    headers = FORWARDED | {"X-Request-ID": "direct-77"}
    put = requests.put(
        live_server.url + "/api/v1/files/a.txt", data=b"hi", headers=headers, timeout=10
    )
    assert put.status_code == 201
    assert put.headers["Location"] == "/api/v1/files/a.txt"
    line = access_line(live_server, "direct-77")
    assert line.startswith("127.0.0.1 "), line


def test_trusted_proxies_is_checked(store_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="trusted_proxies must be 0 or more"):
        start_server("--store", str(store_dir), "--port", "0", "--trusted-proxies", "-1")
