"""`filedock serve` as a real process, driven with real curl and raw sockets."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import SRC, LiveServer, start_server
from tests.hostile import HOSTILE_URL_PATHS, SENTINEL
from tests.wire import raw_get

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def curl(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["curl", "-sS", *args], check=True, capture_output=True, text=True, cwd=cwd, timeout=60
    ).stdout


def test_original_curl_commands(live_server: LiveServer, store_dir: Path, tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "labelsFile.json", store_dir / "labelsFile.json")
    port = urlsplit(live_server.url).port
    body = json.loads(curl(f"localhost:{port}/getJsonFromFile/labelsFile.json"))
    assert body["STATUS"] == "true"
    assert body["LABELS_MAPPING"]["thanos"] == "snapItAll"

    work = tmp_path / "client"
    work.mkdir()
    (work / "file1.jpg").write_bytes(b"\xff\xd8first image")
    (work / "file2.jpg").write_bytes(b"\xff\xd8second image")
    out = curl(
        "-F", "FILES_LIST=@./file1.jpg", "-F", "FILES_LIST=@./file2.jpg",
        "-F", "FILE_NAME=new_file", f"localhost:{port}/uploadFiles", cwd=work,
    )  # fmt: skip
    assert json.loads(out) == {
        "STATUS": "true",
        "ERROR_FILES_LIST": "",
        "SAVED_FILES": ["new_filefile1.jpg", "new_filefile2.jpg"],
    }
    assert (store_dir / "new_filefile1.jpg").read_bytes() == b"\xff\xd8first image"
    assert (store_dir / "new_filefile2.jpg").read_bytes() == b"\xff\xd8second image"


def test_missing_file_over_http(live_server: LiveServer) -> None:
    result = subprocess.run(
        ["curl", "-s", "-w", "%{http_code}", "-o", "/dev/null",
         live_server.url + "/getJsonFromFile/none.json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout == "404"


@pytest.mark.parametrize("path", HOSTILE_URL_PATHS)
def test_hostile_paths_over_the_wire(live_server: LiveServer, store_dir: Path, path: str) -> None:
    response = raw_get(live_server.url, "/getJsonFromFile/" + path)
    status = int(response.split(b" ", 2)[1])
    assert 400 <= status < 500, response[:300]
    assert b"secret" not in response
    assert (store_dir.parent / "sentinel.json").read_text() == SENTINEL


def test_sigterm_stops_cleanly(store_dir: Path) -> None:
    server = start_server("--store", str(store_dir), "--port", "0")
    assert curl(server.url + "/healthz").strip() == '{"status":"ok"}'
    assert server.stop(signal.SIGTERM) == 0


def test_ctrl_c_stops_cleanly(store_dir: Path) -> None:
    server = start_server("--store", str(store_dir), "--port", "0")
    assert server.stop(signal.SIGINT) == 0


def test_two_servers_side_by_side(tmp_path: Path) -> None:
    first = start_server("--store", str(tmp_path / "one"), "--port", "0")
    second = start_server("--store", str(tmp_path / "two"), "--port", "0")
    try:
        assert curl(first.url + "/healthz") and curl(second.url + "/healthz")
    finally:
        assert first.stop() == 0
        assert second.stop() == 0


def test_defaults_to_data_on_loopback_5000(tmp_path: Path) -> None:
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 5000))
    except OSError:
        probe.close()
        pytest.skip("port 5000 is taken on this machine")  # the default port is in use
    probe.close()
    server = start_server(cwd=tmp_path)
    try:
        assert server.url == "http://127.0.0.1:5000"
        assert (tmp_path / "data").is_dir()
    finally:
        assert server.stop() == 0


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "filedock", *args],
        capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", **(env or {})},
    )  # fmt: skip


def test_refuses_open_non_loopback_without_tokens(store_dir: Path) -> None:
    result = run_cli("serve", "--store", str(store_dir), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode != 0
    assert "--allow-anonymous" in result.stderr
    assert "no tokens" in result.stderr


def test_allow_anonymous_opens_non_loopback(store_dir: Path) -> None:
    server = start_server(
        "--store", str(store_dir), "--host", "0.0.0.0", "--port", "0", "--allow-anonymous"
    )
    try:
        port = urlsplit(server.url).port
        assert curl(f"http://127.0.0.1:{port}/healthz")
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_loopback_with_or_without_brackets(store_dir: Path, host: str) -> None:
    server = start_server("--store", str(store_dir), "--host", host, "--port", "0")
    try:
        assert server.url.startswith("http://[::1]:")
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        assert server.stop() == 0


def test_unknown_environment_variable_is_refused(store_dir: Path) -> None:
    result = run_cli("serve", "--store", str(store_dir), env={"FILEDOCK_PROT": "1"})
    assert result.returncode != 0
    assert "FILEDOCK_PROT" in result.stderr


def test_stop_signal_while_workers_boot_is_not_lost(tmp_path: Path) -> None:
    # The URL is printed before the workers have booted; a SIGTERM at that moment used to reach
    # a half-started worker that ignored it until the 30 s graceful timeout killed it.
    for i in range(8):
        server = start_server("--store", str(tmp_path / f"s{i}"), "--port", "0")
        raw_get(server.url, "/healthz")
        assert server.stop(signal.SIGTERM, timeout=25) == 0


def test_access_log_can_be_turned_off(store_dir: Path) -> None:
    for setting, logged in (("true", True), ("false", False)):
        server = start_server(
            "--store", str(store_dir), "--port", "0", env={"FILEDOCK_ACCESS_LOG": setting}
        )
        try:
            curl(server.url + "/healthz?probe=" + setting)
        finally:
            assert server.stop() == 0
        assert any(f"/healthz?probe={setting}" in line for line in server.output) is logged
