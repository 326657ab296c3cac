"""The access log of a real server: what it says a request sent, and what it never says."""

from __future__ import annotations

import re
from pathlib import Path

import requests

from tests.conftest import LiveServer, start_server, wait_for
from tests.servers import create_token
from tests.wire import raw, status_of

ACCESS_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/1\.1" (?P<status>\d{3}) '
    r"(?P<bytes>\d+) .* request_id=(?P<id>\S+) worker=<\d+>$"
)


def access_line(server: LiveServer, request_id: str) -> re.Match[str]:
    """The access line of the request with that X-Request-ID, once it is written."""

    def found() -> re.Match[str] | None:
        for line in list(server.output):
            match = ACCESS_LINE.search(line.rstrip("\n"))
            if match and match["id"] == request_id:
                return match
        return None

    wait_for(lambda: found() is not None)
    match = found()
    assert match is not None
    return match


def test_downloads_log_the_bytes_they_sent(live_server: LiveServer, store_dir: Path) -> None:
    (store_dir / "data.bin").write_bytes(bytes(range(256)) * 4000)  # 1,024,000 bytes
    url = live_server.url + "/api/v1/files/data.bin"
    whole = requests.get(url, headers={"X-Request-ID": "whole"}, timeout=30)
    part = requests.get(
        url, headers={"X-Request-ID": "part", "Range": "bytes=100-1099"}, timeout=30
    )
    listing = requests.get(
        live_server.url + "/api/v1/files?prefix=data",
        headers={"X-Request-ID": "listing"},
        timeout=30,
    )
    assert (whole.status_code, part.status_code, listing.status_code) == (200, 206, 200)
    assert access_line(live_server, "whole")["bytes"] == "1024000"
    assert access_line(live_server, "part")["bytes"] == "1000"
    assert access_line(live_server, "listing")["bytes"] == str(len(listing.content))


def test_no_credential_reaches_the_log(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.txt").write_bytes(b"a")
    config = tmp_path / "filedock.toml"
    token = create_token(config, "read,write")
    server = start_server("--store", str(store), "--port", "0", "--config", str(config))
    try:
        auth = {"Authorization": f"Bearer {token}"}
        signed = requests.post(
            server.url + "/api/v1/presign",
            headers=auth,
            timeout=30,
            json={"path": "a.txt", "method": "GET", "expires_in": 600},
        )
        assert signed.status_code in (200, 201), signed.text
        link = signed.json()["url"]
        signature = re.search(r"signature=([^&]+)", link)
        assert signature is not None
        secret = signature[1]
        link = link if link.startswith("http") else server.url + link
        by_link = requests.get(link, headers={"X-Request-ID": "by-link"}, timeout=30)
        assert by_link.status_code == 200 and by_link.content == b"a"
        by_token = requests.get(
            server.url + "/api/v1/files/a.txt",
            timeout=30,
            headers={
                **auth,
                "X-Request-ID": "by-token",
                "Referer": f"{server.url}/x?access_token={token}",
            },
        )
        assert by_token.status_code == 200
        in_query = requests.get(
            f"{server.url}/api/v1/files/a.txt?token={token}&x=1",
            headers={"X-Request-ID": "in-query"},
            timeout=30,
        )
        assert in_query.status_code == 401
        # A request line gunicorn refuses itself is written to the error log, URL and all.
        refused = raw(
            server.url,
            f"GET api/v1/files/a.txt?signature={secret} HTTP/1.1\r\n"
            "Host: x\r\nConnection: close\r\n\r\n".encode(),
        )
        assert status_of(refused) == 400
        line = access_line(server, "by-link")
        assert "signature=[redacted]" in line["target"]
        assert access_line(server, "by-token")
        assert "token=[redacted]&x=1" in access_line(server, "in-query")["target"]
        wait_for(lambda: any("Invalid request" in line for line in list(server.output)))
    finally:
        assert server.stop() == 0
    output = "".join(server.output)
    assert secret not in output
    assert token not in output
    assert "signature=[redacted]" in output.split("Invalid request", 1)[1]
