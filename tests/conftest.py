"""Shared fixtures: settings, app and client (Flask's test client), and a live server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from filedock.app import create_app
from filedock.config import Settings
from filedock.storage import ObjectStore, open_storage

from .seaweed import BUCKET, Seaweed

SRC = str(Path(__file__).resolve().parent.parent / "src")
URL_LINE = re.compile(r"filedock: serving .* at (http://\S+/)")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """The store's folder, with a sentinel file beside it that no request may reach."""
    (tmp_path / "sentinel.json").write_text('{"secret": "sentinel"}')
    store = tmp_path / "store"
    store.mkdir()
    return store


@pytest.fixture
def settings(store_dir: Path) -> Settings:
    """Settings for a local store in a temporary folder."""
    return Settings(store=str(store_dir))


@pytest.fixture
def app(settings: Settings) -> Flask:
    """The app on those settings."""
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client for the app."""
    return app.test_client()


# -- stores ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A real SeaweedFS for the whole session, on free loopback ports, in a fresh folder."""
    server = Seaweed(tmp_path_factory.mktemp("seaweed")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix of the bucket that no other test uses."""
    return f"t/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_env(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> Seaweed:
    """The SeaweedFS, with its credentials in this process's environment (as AWS's usual
    sources give them)."""
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)
    return seaweed


@pytest.fixture
def s3_settings(s3_env: Seaweed, s3_prefix: str) -> Settings:
    """Settings for an S3 store under a fresh prefix of the session's SeaweedFS."""
    return Settings(store=f"s3://{BUCKET}/{s3_prefix}", s3_endpoint=s3_env.endpoint)


@pytest.fixture
def memory_store() -> ObjectStore:
    """A fresh in-memory store."""
    return open_storage(Settings(store="memory://"))


@pytest.fixture
def local_store(store_dir: Path) -> ObjectStore:
    """A fresh local store in a temporary folder."""
    return open_storage(Settings(store=str(store_dir)))


@pytest.fixture
def s3_store(s3_settings: Settings) -> ObjectStore:
    """A fresh S3 store: a new prefix of the session's SeaweedFS."""
    return open_storage(s3_settings)


@dataclass
class LiveServer:
    """A `filedock serve` process."""

    process: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def first_worker(self) -> int:
        """The pid of the server's first worker process, once it is forked (after the URL)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + 30
        while not children.read_text().split():
            assert time.monotonic() < deadline, "no worker was started"
            time.sleep(0.05)
        return int(children.read_text().split()[0])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send sig and wait for the process to end; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise
        finally:
            if self.reader is not None:
                self.reader.join(10)
            if self.process.stdout is not None:
                self.process.stdout.close()
        return code


def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    """Poll until condition() holds (server output arrives through a reader thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def start_server(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> LiveServer:
    """Start `python -m filedock serve ARGS` and wait until it prints its URL."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "filedock", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=cwd,
    )
    assert process.stdout is not None
    output: list[str] = []
    url = ""
    timer = threading.Timer(60, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            output.append(line)
            match = URL_LINE.search(line)
            if match:
                url = match.group(1).rstrip("/")
                break
    finally:
        timer.cancel()
    if not url:
        process.kill()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()
        raise RuntimeError("filedock serve did not start:\n" + "".join(output))
    server = LiveServer(process, url, output)

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)

    server.reader = threading.Thread(target=drain, daemon=True)
    server.reader.start()
    return server


@pytest.fixture
def live_server(store_dir: Path) -> Iterator[LiveServer]:
    """`filedock serve` on the temporary store, on a free port."""
    server = start_server("--store", str(store_dir), "--port", "0")
    yield server
    server.stop()
