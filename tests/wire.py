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


def cut(url: str, request: bytes, timeout: float = 30) -> bytes:
    """Send request, then end the sending side, as a client that stopped partway through its
    body does (socket.shutdown(SHUT_WR)); the whole answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def body_of(response: bytes) -> bytes:
    """The body of a raw answer (sent with Content-Length, as filedock's answers are)."""
    return response.split(b"\r\n\r\n", 1)[1]


def header_of(response: bytes, name: str) -> str | None:
    """A header of a raw answer, or None."""
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        field, _, value = line.partition(":")
        if field.strip().lower() == name.lower():
            return value.strip()
    return None
