"""Known attacks on HTTP servers and multipart parsers, against a real `filedock serve`.

Each must get a prompt 4xx (or a correct 200) and leave the server healthy."""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from filedock.auth import hash_token
from tests.conftest import LiveServer, start_server
from tests.wire import raw

pytestmark = pytest.mark.timeout(120)

TOKEN = "attack-test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ_TOKEN = "attack-test-read-token"
READ_AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}
MAX_UPLOAD_BYTES = 16 << 20
BOUNDARY = "XyZzYboundary"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("attacks")
    (root / "sentinel.json").write_text('{"secret": "sentinel"}')
    (root / "store").mkdir()
    (root / "filedock.toml").write_text(
        f"max_upload_bytes = {MAX_UPLOAD_BYTES}\nworkers = 1\nthreads = 4\n"
        f'[[tokens]]\nname = "admin"\nhash = "{hash_token(TOKEN)}"\nscopes = ["admin"]\n'
        f'[[tokens]]\nname = "reader"\nhash = "{hash_token(READ_TOKEN)}"\nscopes = ["read"]\n'
    )
    return root


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[LiveServer]:
    live = start_server(
        "--config", str(store / "filedock.toml"), "--store", str(store / "store"), "--port", "0"
    )
    yield live
    assert live.stop() == 0


@pytest.fixture(autouse=True)
def healthy_after(server: LiveServer) -> Iterator[None]:
    yield
    assert requests.get(server.url + "/healthz", timeout=30).json() == {"status": "ok"}
    response = requests.get(server.url + "/getJsonFromFile/missing.json", headers=AUTH, timeout=30)
    assert response.status_code == 404


def post_upload(server: LiveServer, body: bytes | Iterator[bytes]) -> requests.Response:
    return requests.post(
        server.url + "/uploadFiles",
        data=body,
        headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        timeout=90,
    )


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def close() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


def test_many_tiny_parts(server: LiveServer) -> None:
    """CVE-2023-25577: 200,000 parts must not exhaust the worker."""
    one = part("x", b"1")
    response = post_upload(server, one * 200_000 + part("FILES_LIST", b"a", "a.txt") + close())
    assert response.status_code == 400
    assert response.json() == {
        "STATUS": "false",
        "error": "the multipart body has more than 1000 parts",
    }


def test_file_part_starting_with_crlf_then_no_newline(server: LiveServer, store: Path) -> None:
    """CVE-2023-46136: CR/LF then megabytes without a newline parse in linear time."""
    content = b"\r\n" + b"a" * (8 << 20)
    response = post_upload(server, part("FILES_LIST", content, "crlf.bin") + close())
    assert response.status_code == 200
    assert response.json()["SAVED_FILES"] == ["crlf.bin"]
    assert (store / "store" / "crlf.bin").read_bytes() == content


def test_one_huge_field(server: LiveServer) -> None:
    """CVE-2024-49767: a non-file field is bounded, not buffered whole."""
    body = part("FILE_NAME", b"n" * (4 << 20)) + part("FILES_LIST", b"a", "a.txt") + close()
    response = post_upload(server, body)
    assert response.status_code == 413
    assert response.json()["STATUS"] == "false"


@pytest.mark.parametrize("where", ["preamble", "between", "inside"])
def test_crlf_floods_around_boundaries(server: LiveServer, store: Path, where: str) -> None:
    """CVE-2024-53981: floods of CR/LF around boundaries parse in linear time."""
    flood = b"\r\n" * (2 << 20)
    if where == "preamble":
        body = flood + part("FILES_LIST", b"data", "flood1.txt") + close()
    elif where == "between":
        body = part("FILES_LIST", b"data", "flood2.txt") + flood + close()
    else:
        body = part("FILES_LIST", flood, "flood3.txt") + close()
    response = post_upload(server, body)
    assert response.status_code in (200, 400, 413), response.text
    if response.status_code == 200:
        name = response.json()["SAVED_FILES"][0]
        stored = (store / "store" / name).read_bytes()
        # RFC 2046: the CR/LF before a delimiter belongs to it, the rest of a flood to the data
        assert stored == {"preamble": b"data", "between": b"data" + flood, "inside": flood}[where]


def test_empty_names(server: LiveServer) -> None:
    response = post_upload(server, part("", b"data", "a.txt") + part("", b"value") + close())
    assert response.status_code == 400
    assert response.json() == {"STATUS": "false", "error": "no files in FILES_LIST"}
    response = post_upload(server, part("FILES_LIST", b"data", "") + close())
    assert response.status_code == 200
    assert response.json() == {"STATUS": "true", "ERROR_FILES_LIST": ",", "SAVED_FILES": []}


def test_chunked_upload_without_content_length(server: LiveServer, store: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield part("FILE_NAME", b"chunked_")[:7]
        yield part("FILE_NAME", b"chunked_")[7:]
        yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="FILES_LIST"; '.encode()
        yield b'filename="c.bin"\r\n\r\n'
        for _ in range(64):
            yield b"z" * 65536
        yield b"\r\n" + close()

    response = post_upload(server, chunks())
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["SAVED_FILES"] == ["chunked_c.bin"]
    assert (store / "store" / "chunked_c.bin").read_bytes() == b"z" * (64 * 65536)


def test_chunked_upload_over_the_limit(server: LiveServer, store: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="FILES_LIST"; '.encode()
        yield b'filename="huge.bin"\r\n\r\n'
        for _ in range((MAX_UPLOAD_BYTES >> 20) + 2):
            yield b"h" * (1 << 20)
        yield b"\r\n" + close()

    try:
        response = post_upload(server, chunks())
    except requests.ConnectionError:
        pass  # the server may answer 413 and close before the client has sent everything
    else:
        assert response.status_code == 413
        assert response.json()["STATUS"] == "false"
    assert not (store / "store" / "huge.bin").exists()


def test_chunked_json_body(server: LiveServer) -> None:
    body = json.dumps({"path": "doc.json", "method": "GET", "expires_in": 60}).encode()
    response = requests.post(
        server.url + "/api/v1/presign",
        data=iter([body[:10], body[10:]]),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200
    assert response.json()["url"].startswith("/api/v1/files/doc.json?")


def test_format_strings_in_names_do_not_reach_a_log_format(server: LiveServer, store: Path) -> None:
    name = "%s%(x)s%d%n{0}.txt"
    response = requests.post(
        server.url + "/uploadFiles",
        files={"FILES_LIST": (name, io.BytesIO(b"fmt"))},
        data={"FILE_NAME": "%(y)s"},
        headers=AUTH,
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["SAVED_FILES"] == ["%(y)s" + name]
    assert (store / "store" / ("%(y)s" + name)).read_bytes() == b"fmt"
    response = requests.get(
        server.url + "/getJsonFromFile/%25s%25(x)s%25d.json", headers=AUTH, timeout=30
    )
    assert response.status_code == 404
    response = requests.get(
        server.url + "/getJsonFromFile/x.json",
        headers={"Authorization": "Bearer %s%(x)s", "User-Agent": "%(x)s%s"},
        timeout=30,
    )
    assert response.status_code == 401
    requests.get(server.url + "/healthz", timeout=30)
    log = "".join(server.output)
    assert "%25s%25(x)s%25d.json" in log or "%s%(x)s%d.json" in log
    for sign in ("Logging error", "Traceback", "TypeError", "KeyError", "not enough arguments"):
        assert sign not in log


@pytest.mark.parametrize(
    "value",
    [
        "Basic",
        "Basic ",
        "Basic ====",
        "Basic " + base64.b64encode(b"no colon at all").decode(),
        "Basic " + base64.b64encode(b"user:\xff\xfe\xfd").decode(),
        "Basic " + base64.b64encode(b"\x00:\x00").decode(),
        "Basic \u00e9t\u00e9",
        "Basic " + "A" * 8000,
        "Bearer\t",
    ],
)
def test_malformed_basic_headers(server: LiveServer, value: str) -> None:
    parts = urlsplit(server.url)
    request = (
        "GET /getJsonFromFile/doc.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: {value}\r\n\r\n"
    ).encode("latin-1")
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    assert status in (400, 401), data[:300]
    if status == 401:
        assert b"WWW-Authenticate: Bearer" in data


# -- JSON past the parser's limits, in a worker of the real server -------------------------------

DEEP_OBJECTS = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
DEEP_ARRAYS = b"[" * 100_000 + b"]" * 100_000
MILLION_DIGITS = b"9" * 1_000_000
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@pytest.mark.parametrize(
    "body",
    [
        DEEP_OBJECTS,
        DEEP_ARRAYS,
        MILLION_DIGITS,
        b'{"n": ' + MILLION_DIGITS + b"}",
        b'[{"op": "add", "path": "/n", "value": ' + MILLION_DIGITS + b"}]",
        b'[{"op": "add", "path": "/n", "value": ' + DEEP_ARRAYS + b"}]",
    ],
    ids=["deep-objects", "deep-arrays", "digits", "digits-member", "patch-digits", "patch-deep"],
)
@pytest.mark.parametrize(
    ("method", "content_type"),
    [("PUT", "application/json"), ("PATCH", MERGE), ("PATCH", JSON_PATCH)],
)
def test_json_past_the_parser_limits_is_4xx(
    server: LiveServer, store: Path, body: bytes, method: str, content_type: str
) -> None:
    url = server.url + "/api/v1/json/limits.json"
    document = b'{"kept": true}'
    assert requests.put(url, data=document, headers=AUTH, timeout=30).status_code in (200, 201)
    response = requests.request(
        method, url, data=body, headers={**AUTH, "Content-Type": content_type}, timeout=60
    )
    assert response.status_code in (400, 413), response.text[:300]
    assert response.headers["Content-Type"] == "application/problem+json"
    assert (store / "store" / "limits.json").read_bytes() == document


# -- CR/LF in tus metadata -----------------------------------------------------------------------


def header_names(response: bytes) -> list[bytes]:
    head = response.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]]


def test_crlf_in_tus_metadata_never_reaches_response_headers(server: LiveServer) -> None:
    injected = "x\r\nX-Injected: 1\r\nSet-Cookie: a=b"
    metadata = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in [("path", "tus/crlf.bin"), ("filetype", injected), ("name", injected)]
    )
    response = requests.post(
        server.url + "/api/v1/uploads",
        headers={
            **AUTH,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "4",
            "Upload-Metadata": metadata,
        },
        timeout=30,
    )
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    head = (
        f"HEAD {location} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Tus-Resumable: 1.0.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()
    answer = raw(server.url, head)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    names = header_names(answer)
    assert b"x-injected" not in names and b"set-cookie" not in names
    assert f"Upload-Metadata: {metadata}\r\n".encode() in answer  # echoed as sent: base64
    # a raw CR/LF cannot be smuggled into the header itself: obs-fold is refused
    folded = (
        "POST /api/v1/uploads HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {TOKEN}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 1\r\n"
        "Upload-Metadata: path dHVzL2ZvbGQuYmlu\r\n X-Injected: 1\r\n\r\n"
    ).encode()
    answer = raw(server.url, folded)
    assert int(answer.split(b" ", 2)[1]) == 400, answer[:300]
    assert b"x-injected" not in header_names(answer)
    requests.delete(server.url + location, headers={**AUTH, "Tus-Resumable": "1.0.0"}, timeout=30)


# -- X-HTTP-Method-Override with a read token ----------------------------------------------------


def test_method_override_with_a_read_token_reaches_no_write(
    server: LiveServer, store: Path
) -> None:
    files = store / "store"
    (files / "override.json").write_text('{"v": 1}')
    response = requests.post(
        server.url + "/api/v1/uploads",
        headers={**AUTH, "Tus-Resumable": "1.0.0", "Upload-Length": "4",
                 "Upload-Metadata": "path " + base64.b64encode(b"override.bin").decode()},
        timeout=30,
    )  # fmt: skip
    upload = server.url + response.headers["Location"]
    tus = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    attempts = [
        ("POST", upload, {**tus, "Upload-Offset": "0"}, "PATCH", b"data"),
        ("POST", upload, tus, "DELETE", b""),
        ("GET", server.url + "/api/v1/files/override.json", {}, "DELETE", b""),
        ("GET", server.url + "/api/v1/files/override.json", {}, "PUT", b"{}"),
        ("HEAD", server.url + "/api/v1/files/override.json", {}, "DELETE", b""),
        ("GET", server.url + "/api/v1/json/override.json", {"Content-Type": MERGE}, "PATCH", b"{}"),
        ("GET", server.url + "/api/v1/meta/override.json", {}, "DELETE", b""),
        ("GET", server.url + "/api/v1/files", {}, "POST", b""),
    ]
    for method, url, headers, override, body in attempts:
        response = requests.request(
            method,
            url,
            data=body,
            headers={**READ_AUTH, **headers, "X-HTTP-Method-Override": override},
            timeout=30,
        )
        assert response.status_code == 403, (method, url, override, response.text)
    head = requests.head(upload, headers={**AUTH, "Tus-Resumable": "1.0.0"}, timeout=30)
    assert (head.status_code, head.headers["Upload-Offset"]) == (200, "0")
    assert (files / "override.json").read_text() == '{"v": 1}'
    assert not (files / "override.bin").exists()
    # the same token without an override still reads
    response = requests.get(
        server.url + "/api/v1/json/override.json", headers=READ_AUTH, timeout=30
    )
    assert response.json() == {"v": 1}
    requests.delete(upload, headers={**AUTH, "Tus-Resumable": "1.0.0"}, timeout=30)
