"""Operations against real `filedock serve` processes: request ids in the server's own log
lines, metrics added up over gunicorn workers, and readiness on a read-only store."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, start_server, wait_for

ACCESS_LINE = re.compile(r'"(?P<request>[A-Z]+ \S+) HTTP/1\.1" (?P<status>\d{3}) .* '
                         r"request_id=(?P<id>\S+) worker=<(?P<pid>\d+)>$")  # fmt: skip


def access_lines(server: LiveServer) -> list[re.Match[str]]:
    return [m for line in list(server.output) if (m := ACCESS_LINE.search(line.rstrip("\n")))]


def lines_with(server: LiveServer, text: str) -> list[str]:
    return [line.rstrip("\n") for line in list(server.output) if text in line]


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_request_ids_in_every_log_line(store_dir: Path) -> None:
    server = start_server("--store", str(store_dir), "--port", "0")
    try:
        given = requests.get(
            server.url + "/healthz",
            headers={"X-Request-ID": "probe-%s-%d", "User-Agent": "agent %s %(h)s %n"},
            timeout=10,
        )
        generated = requests.get(server.url + "/healthz", timeout=10)
        refused = requests.get(
            server.url + "/healthz", headers={"X-Request-ID": "two words"}, timeout=10
        )
        missing = requests.get(server.url + "/no/such/%25s%25d%25n", timeout=10)
        assert given.headers["X-Request-ID"] == "probe-%s-%d"
        generated_id, refused_id = (r.headers["X-Request-ID"] for r in (generated, refused))
        assert re.fullmatch(r"[0-9a-f]{32}", generated_id)
        assert re.fullmatch(r"[0-9a-f]{32}", refused_id)
        assert missing.status_code == 404 and missing.headers["X-Request-ID"]
        # A failure no handler expects: the server's state folder replaced by a file.
        # (moved away in one rename: a worker may still be writing in it, which rmtree races)
        (store_dir / ".filedock").rename(store_dir.parent / "old-state")
        (store_dir / ".filedock").write_text("not a folder")
        failed = requests.post(
            server.url + "/api/v1/presign",
            json={"path": "x", "method": "GET", "expires_in": 60},
            headers={"X-Request-ID": "fail-%s"},
            timeout=10,
        )
        assert failed.status_code == 500 and failed.headers["X-Request-ID"] == "fail-%s"
        wait_for(lambda: len(access_lines(server)) == 5)
    finally:
        server.stop()
    by_id = {m["id"]: m for m in access_lines(server)}
    assert by_id["probe-%s-%d"]["request"] == "GET /healthz"
    assert by_id[generated_id]["request"] == "GET /healthz"
    assert by_id[refused_id]["request"] == "GET /healthz"
    assert by_id[missing.headers["X-Request-ID"]]["request"] == "GET /no/such/%25s%25d%25n"
    assert by_id["fail-%s"]["status"] == "500"
    assert "two words" not in "".join(server.output)
    [agent_line] = lines_with(server, "probe-%s-%d")
    assert '"agent %s %(h)s %n" request_id=probe-%s-%d' in agent_line
    # The app's own log: the error line and every line of its traceback carry the id.
    error_lines = lines_with(server, "[fail-%s]")
    assert any("[ERROR] [fail-%s] unhandled error in POST '/api/v1/presign'" in line
               for line in error_lines)  # fmt: skip
    assert any(line.startswith("[fail-%s] Traceback") for line in error_lines)
    assert any("NotADirectoryError" in line for line in error_lines)
    assert str(store_dir) not in failed.text


def test_metrics_add_up_over_workers(store_dir: Path, tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    server = start_server(
        "--store", str(store_dir), "--port", "0", "--workers", "2", env={"TMPDIR": str(temp)}
    )
    try:
        [metrics_dir] = temp.glob("filedock-metrics-*")
        assert oct(metrics_dir.stat().st_mode & 0o777) == "0o700"

        def healthz(_: int) -> None:
            response = requests.get(server.url + "/healthz", timeout=10)  # a new connection
            assert response.status_code == 200

        def healthz_workers() -> set[str]:
            return {m["pid"] for m in access_lines(server) if m["request"] == "GET /healthz"}

        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while len(healthz_workers()) < 2 and sent < 800:
                list(pool.map(healthz, range(40)))
                sent += 40
                wait_for(lambda total=sent: len(access_lines(server)) >= total)
        workers = healthz_workers()
        assert len(workers) == 2, "one worker served every request"
        files = {p.name for p in metrics_dir.iterdir()}
        assert {f"counter_{pid}.db" for pid in workers} <= files

        body = os.urandom(5000)
        put = requests.put(server.url + "/api/v1/files/up.bin", data=body, timeout=10)
        assert put.status_code == 201
        labels = {"route": "/healthz", "method": "GET", "status": "200"}
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert metric(text, "filedock_requests_total", **labels) == sent
        assert metric(text, "filedock_received_bytes_total") == len(body)
        assert metric(text, "filedock_sent_bytes_total") == sent * len(b'{"status":"ok"}\n') + len(
            put.content
        )
        route = {"route": "/api/v1/files/<anypath:key>"}
        assert metric(text, "filedock_upload_seconds_count", **route) == 1
        assert metric(text, "filedock_upload_seconds_bucket", le="+Inf", **route) == 1

        # A worker that exits keeps its counts in the sum; its replacement adds to them.
        gone = sorted(workers)[0]
        os.kill(int(gone), signal.SIGTERM)
        wait_for(lambda: len(lines_with(server, "Booting worker")) >= 3, timeout=30)
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert metric(text, "filedock_requests_total", **labels) == sent
    finally:
        server.stop()
    assert not metrics_dir.exists()  # removed with the server


def test_readyz_on_a_read_only_store(store_dir: Path) -> None:
    server = start_server("--store", str(store_dir), "--port", "0")
    state = store_dir / ".filedock"
    try:
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
        # chmod would not stop root (the tests run as root): a read-only file system does.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(state)],
                       check=True)  # fmt: skip
        try:
            response = requests.get(server.url + "/readyz", timeout=10)
            assert response.status_code == 503
            assert response.headers["Content-Type"] == "application/problem+json"
            assert response.json()["code"] == "not-ready"
            assert response.headers["X-Request-ID"]
            assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
        finally:
            subprocess.run(["umount", str(state)], check=True)
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    finally:
        server.stop()
