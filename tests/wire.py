"""Requests sent byte for byte over a socket: no HTTP client normalises what is tested."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def raw(url: str, request: bytes, timeout: float = 30) -> bytes:
    """Send request exactly as written to the server at url; the whole answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def raw_get(url: str, path: str) -> bytes:
    """GET path with the request line exactly as written."""
    return raw(url, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())


def status_of(response: bytes) -> int:
    """The status code of a raw answer."""
    return int(response.split(b" ", 2)[1])
