"""Live servers for the client tests: an open one and one that wants tokens."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from filedock.cli import main
from tests.conftest import LiveServer, start_server


@dataclass
class TokenServer:
    """A server with a read,write token and a read-only one."""

    server: LiveServer
    url: str
    token: str
    read_token: str


def create_token(config: Path, scopes: str) -> str:
    """`filedock token create --config FILE --scope SCOPES`: the new token."""
    result = CliRunner().invoke(
        main, ["token", "create", "--config", str(config), "--scope", scopes]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@contextmanager
def open_server(root: Path) -> Iterator[LiveServer]:
    """`filedock serve` on a fresh store under root."""
    store = root / "store"
    store.mkdir()
    server = start_server("--store", str(store), "--port", "0")
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def token_server(root: Path) -> Iterator[TokenServer]:
    """`filedock serve --config FILE` with two tokens in FILE."""
    store = root / "store"
    store.mkdir()
    config = root / "filedock.toml"
    token = create_token(config, "read,write")
    read_token = create_token(config, "read")
    server = start_server("--store", str(store), "--port", "0", "--config", str(config))
    try:
        yield TokenServer(server, server.url, token, read_token)
    finally:
        server.stop()


def refused_url() -> str:
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
