"""Several `filedock serve` instances on one store behind a real nginx running the shipped
deploy/nginx.conf, all on loopback: for the tests and for the soak run (bench/soak.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from click.testing import CliRunner

from filedock.cli import main
from tests.conftest import LiveServer, start_server

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


def create_store_token(store: Path, scopes: str, name: str) -> str:
    """`filedock token create --store STORE`: the new token."""
    result = CliRunner().invoke(
        main, ["token", "create", "--store", str(store), "--scope", scopes, "--name", name]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def process_tree(pid: int) -> list[int]:
    """pid and its children (a gunicorn arbiter and its workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


@dataclass
class Cluster:
    """N instances sharing one store folder and one config (secret_key, trusted_proxies),
    and nginx in front of them."""

    root: Path
    size: int = 3
    workers: int = 2
    store: Path = field(init=False)
    config: Path = field(init=False)
    ports: list[int] = field(default_factory=list)
    instances: list[LiveServer] = field(default_factory=list)
    nginx: subprocess.Popen[str] | None = None
    nginx_output: list[str] = field(default_factory=list)
    url: str = ""
    token: str = ""
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.store = self.root / "store"
        self.store.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "filedock.toml"
        self.config.write_text(f'secret_key = "{SECRET_KEY}"\ntrusted_proxies = 1\n')

    def start(self) -> Cluster:
        """Start the instances, then nginx; return once nginx answers."""
        self.token = create_store_token(self.store, "admin", "cluster-admin")
        self.ports = [free_port() for _ in range(self.size)]
        self.instances = [self._serve(port) for port in self.ports]
        self._start_nginx()
        return self

    def _serve(self, port: int) -> LiveServer:
        return start_server(
            "--store", str(self.store), "--port", str(port), "--config", str(self.config),
            "--workers", str(self.workers),
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
        for server in self.instances:
            server.stop()
