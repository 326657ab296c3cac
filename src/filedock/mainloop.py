"""Plain JSON document GETs answered in the worker's main loop, without a thread.

The most frequent request, a kept-alive client asking for the same document again, cost
little in the app (hotpath.DocumentGets) but much around it: the main loop handed the
connection to a thread, the thread took the GIL back after each system call while the
others wanted it too, and handed the connection back to the main loop through a pipe. The
main loop already receives every request head; when the head is a plain HTTP/1.1 GET of a
document whose current version is cached, the main loop answers it itself: one stat(2), one
sendmsg(2), the access line, and the connection back in the poller.

Only heads that gunicorn would read the same way are taken (checked here, conservatively);
anything else, and any document that would need reading or parsing, goes to a thread as
before, where gunicorn and the app decide. An answer the socket does not take at once (a
large document, a client that does not read) is finished by a thread, so the main loop
never waits on a client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from gunicorn import SERVER

from .hotpath import COMPAT, NATIVE

PREFIXES = (NATIVE.encode(), COMPAT.encode())
# A request target of visible ASCII; "?" and "#" are excluded below.
TARGET = re.compile(rb"/[\x21-\x7e]*")
# A field name: an RFC 9110 token without "_" (gunicorn drops or refuses names with one).
NAME = re.compile(rb"[!#$%&'*+.^`|~0-9A-Za-z-]+")
# A field value with no control character but HTAB.
VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# Fields after which a request is not a plain GET, or that gunicorn acts on itself.
DECLINED = frozenset(
    {"CONTENT-LENGTH", "TRANSFER-ENCODING", "EXPECT", "UPGRADE", "HTTP2-SETTINGS", "TE"}
)


@dataclass(slots=True)
class PlainGet:
    """A request head that is a plain HTTP/1.1 GET, as gunicorn would read it."""

    target: str
    headers: list[tuple[str, str]]  # names in upper case, as gunicorn gives them


def plain_get(
    head: bytes, max_line: int, max_field: int, max_fields: int, declined: frozenset[str]
) -> PlainGet | None:
    """The GET in head, if head is exactly one plain HTTP/1.1 GET of a document (nothing
    after it, keep-alive, every field well formed and named once, none of `declined`)."""
    end = head.find(b"\r\n\r\n")
    if end < 0 or end + 4 != len(head):
        return None
    lines = head[:end].split(b"\r\n")
    if len(lines[0]) > max_line or len(lines) - 1 > max_fields:
        return None
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
        return None
    target = parts[1]
    if not target.startswith(PREFIXES) or b"?" in target or b"#" in target:
        return None
    if not TARGET.fullmatch(target):
        return None
    headers: list[tuple[str, str]] = []
    names: set[str] = set()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or len(line) > max_field or not NAME.fullmatch(name):
            return None
        if not VALUE.fullmatch(value):
            return None
        upper = name.decode("ascii").upper()
        if upper in names or upper in DECLINED or upper in declined:
            return None
        names.add(upper)
        headers.append((upper, value.strip(b" \t").decode("latin-1")))
        if upper == "CONNECTION" and headers[-1][1].lower() != "keep-alive":
            return None
    return PlainGet(target.decode("ascii"), headers)


def environ_of(get: PlainGet, client: Any, server: Any) -> dict[str, Any]:
    """The WSGI environ gunicorn would make for this GET (what the app's fast path and the
    access log read of it)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(get.target).decode("latin-1"),
        "QUERY_STRING": "",
        "RAW_URI": get.target,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    for name, value in get.headers:
        if name == "CONTENT-TYPE":
            environ["CONTENT_TYPE"] = value
        else:
            environ["HTTP_" + name.replace("-", "_")] = value
    if isinstance(client, tuple):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    else:
        environ["REMOTE_ADDR"] = client.decode() if isinstance(client, bytes) else str(client)
    if isinstance(server, tuple):
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1])
    return environ


def response_head(headers: list[tuple[str, str]], date: str) -> bytes:
    """The head of a 200 kept alive, as filedock's gunicorn response writes it."""
    lines = [
        "HTTP/1.1 200 OK\r\n",
        f"Server: {SERVER}\r\n",
        f"Date: {date}\r\n",
        "Connection: keep-alive\r\n",
    ]
    lines.extend([f"{name}: {value}\r\n" for name, value in headers])
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


@dataclass(slots=True)
class Logged:
    """A request answered here, or its answer, as the access log reads it (gunicorn's request
    and response objects have these attributes)."""

    headers: list[tuple[str, str]]
    status: str = "200 OK"
    sent: int = 0  # body bytes sent
