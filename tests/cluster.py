"""Several `filedock serve` instances on one store behind a real nginx running the shipped
deploy/nginx.conf, all on loopback: for the tests and for the soak run (bench/soak.py).

The store is a folder, or (given a running SeaweedFS) a fresh prefix of an S3 bucket: then
the instances share nothing but the bucket, as on several machines."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
from click.testing import CliRunner

from filedock.cli import main
from tests.conftest import SRC, LiveServer, start_server
from tests.seaweed import BUCKET, Seaweed

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
LISTEN_PLACEHOLDER = re.compile(r"^(\s*)listen 8080;.*$", re.MULTILINE)
SECRET_KEY = "one-key-shared-by-every-instance"


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_config(port: int) -> str:
    """deploy/nginx.conf with its listen placeholder filled in for loopback."""
    text = (DEPLOY / "nginx.conf").read_text()
    filled, count = LISTEN_PLACEHOLDER.subn(rf"\1listen 127.0.0.1:{port};", text)
    assert count == 1, "deploy/nginx.conf has no single `listen 8080;` placeholder"
    return filled


def create_store_token(
    store: Path | str, scopes: str, name: str, env: dict[str, str] | None = None
) -> str:
    """`filedock token create --store STORE` (with env: the S3 endpoint and credentials):
    the new token."""
    result = CliRunner().invoke(
        main,
        ["token", "create", "--store", str(store), "--scope", scopes, "--name", name],
        env=env,
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def revoke_store_token(store: Path | str, name: str, env: dict[str, str] | None = None) -> None:
    """`filedock token revoke --store` as its own process, as an operator would run it."""
    subprocess.run(
        [sys.executable, "-m", "filedock", "token", "revoke", "--store", str(store), name],
        check=True, capture_output=True, timeout=60, env={"PYTHONPATH": SRC, **(env or {})},
    )  # fmt: skip


def process_tree(pid: int) -> list[int]:
    """pid and its children (a gunicorn arbiter and its workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


@dataclass
class Cluster:
    """N instances sharing one store and one config (trusted_proxies, and secret_key on a
    folder), and nginx in front of them.

    With seaweed, the store is s3://BUCKET/<fresh prefix> on it, and the config has no
    secret_key: signed links use the key the first instance keeps in the bucket."""

    root: Path
    size: int = 3
    workers: int = 2
    seaweed: Seaweed | None = None
    store: str = field(init=False)
    env: dict[str, str] = field(init=False)  # what a process needs to reach the store
    config: Path = field(init=False)
    ports: list[int] = field(default_factory=list)
    instances: list[LiveServer] = field(default_factory=list)
    nginx: subprocess.Popen[str] | None = None
    nginx_output: list[str] = field(default_factory=list)
    url: str = ""
    token: str = ""
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "filedock.toml"
        if self.seaweed is None:
            folder = self.root / "store"
            folder.mkdir(exist_ok=True)
            self.store, self.env = str(folder), {}
            self.config.write_text(f'secret_key = "{SECRET_KEY}"\ntrusted_proxies = 1\n')
        else:
            self.store = f"s3://{BUCKET}/cluster-{uuid.uuid4().hex[:12]}"
            self.env = self.seaweed.env | {"FILEDOCK_S3_ENDPOINT": self.seaweed.endpoint}
            self.config.write_text("trusted_proxies = 1\n")

    @property
    def kind(self) -> str:
        """ "s3" or "local"."""
        return "local" if self.seaweed is None else "s3"

    def start(self) -> Cluster:
        """Start the instances, then nginx; return once nginx answers."""
        self.token = create_store_token(self.store, "admin", "cluster-admin", self.env)
        self.ports = [free_port() for _ in range(self.size)]
        self.instances = [self._serve(port) for port in self.ports]
        self._start_nginx()
        return self

    def _serve(self, port: int) -> LiveServer:
        return start_server(
            "--store", self.store, "--port", str(port), "--config", str(self.config),
            "--workers", str(self.workers), env=self.env,
        )  # fmt: skip

    def _start_nginx(self) -> None:
        folder = self.root / "nginx"
        folder.mkdir(exist_ok=True)
        port = free_port()
        (folder / "nginx.conf").write_text(nginx_config(port))
        servers = "".join(
            f"server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n" for p in self.ports
        )
        (folder / "upstreams.conf").write_text(servers)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.nginx = subprocess.Popen(
            [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._drain_nginx, daemon=True)
        self._reader.start()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert self.nginx.poll() is None, "nginx exited:\n" + "".join(self.nginx_output)
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.05)

    def _drain_nginx(self) -> None:
        assert self.nginx is not None and self.nginx.stdout is not None
        for line in self.nginx.stdout:
            self.nginx_output.append(line)

    @property
    def headers(self) -> dict[str, str]:
        """The cluster token's Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}

    def instance_url(self, index: int) -> str:
        """One instance's own address, bypassing nginx."""
        return self.instances[index].url

    def kill(self, index: int) -> None:
        """SIGKILL an instance: its arbiter and every worker at once, as a crash would."""
        server = self.instances[index]
        for pid in process_tree(server.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server.process.wait(30)

    def restart(self, index: int) -> LiveServer:
        """Start an instance again on its port (after kill(), or stopping it gracefully)."""
        old = self.instances[index]
        if old.process.poll() is None:
            old.stop()
        self.instances[index] = self._serve(self.ports[index])
        return self.instances[index]

    def stop(self) -> None:
        """Stop nginx and every instance."""
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()  # fast shutdown: idle keep-alive connections need no wait
            try:
                self.nginx.wait(30)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait(10)
        if self.nginx is not None and self.nginx.stdout is not None:
            if self._reader is not None:
                self._reader.join(10)
            self.nginx.stdout.close()
        for server in self.instances:  # all at once: each waits for its own workers
            if server.process.poll() is None:
                server.process.terminate()
        for server in self.instances:
            server.stop()
