"""The files in deploy/ hold together: the systemd unit passes systemd's own check, compose.yaml
names only real settings and files, and nginx.conf keeps the choices docs/deploy.md explains.
(nginx.conf itself runs for real in test_cluster_nginx.py; make lint runs hadolint.)"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from filedock.config import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SETTINGS = {f.name for f in dataclasses.fields(Settings)}


def verify_unit(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on the unit, in a root of its own holding systemd's units and
    the unit's ExecStart program, so that every warning it prints is about the unit."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    program = re.search(r"^ExecStart=(\S+)", text, re.MULTILINE)
    assert program is not None
    executable = root / program.group(1).lstrip("/")
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    unit = root / "etc/systemd/system/filedock.service"
    unit.write_text(text)
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    text = (DEPLOY / "filedock.service").read_text()
    result = verify_unit(tmp_path, text)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # The check does see mistakes: a bad value is reported.
    broken = verify_unit(tmp_path / "b", text.replace("ProtectSystem=strict", "ProtectSystem=x"))
    assert "ProtectSystem" in broken.stderr or "protect system" in broken.stderr


def test_the_systemd_unit_is_hardened() -> None:
    lines = set((DEPLOY / "filedock.service").read_text().splitlines())
    for line in ("ProtectSystem=strict", "ReadWritePaths=/srv/filedock", "NoNewPrivileges=yes",
                 "User=filedock", "CapabilityBoundingSet=", "PrivateTmp=yes"):  # fmt: skip
        assert line in lines
    env = {line.split("=", 2)[1] for line in lines if line.startswith("Environment=FILEDOCK_")}
    assert {name.removeprefix("FILEDOCK_").lower() for name in env} <= SETTINGS | {"config"}


def test_compose_names_real_settings_and_files() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"nginx", "filedock-1", "filedock-2", "seaweedfs"} <= set(services)
    for name in ("filedock-1", "filedock-2"):
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / "deploy/Dockerfile").is_file()
        env = service["environment"]
        assert env["FILEDOCK_STORE"].startswith("s3://")
        assert env["FILEDOCK_TRUSTED_PROXIES"] == "1"
        settings = {k.removeprefix("FILEDOCK_").lower() for k in env if k.startswith("FILEDOCK_")}
        assert settings <= SETTINGS, settings - SETTINGS
    mounts = [volume.split(":")[0] for volume in services["nginx"]["volumes"]]
    assert "./nginx.conf" in mounts
    for mount in mounts:
        assert (DEPLOY / mount).is_file(), mount
    upstreams = (DEPLOY / "compose-upstreams.conf").read_text()
    assert re.findall(r"^server (\S+):5000", upstreams, re.MULTILINE) == [
        "filedock-1",
        "filedock-2",
    ]


def test_nginx_conf_keeps_its_choices() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    directives = {line.split("#")[0].strip() for line in text.splitlines()}
    for directive in (
        "client_max_body_size 0;",
        "proxy_request_buffering off;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header X-Request-ID $filedock_request_id;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        'proxy_set_header X-Forwarded-Prefix "";',
        "proxy_next_upstream error timeout;",
        "include upstreams.conf;",
    ):
        assert directive in directives, directive
    assert "non_idempotent" not in "".join(d for d in directives if d.startswith("proxy_next"))
