"""filedock put/get/ls/rm/meta/json through the command line, against real servers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from filedock.cli import main
from tests.conftest import SRC, LiveServer
from tests.servers import TokenServer, open_server, refused_url, token_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with open_server(tmp_path_factory.mktemp("open")) as live:
        yield live


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with token_server(tmp_path_factory.mktemp("tokens")) as live:
        yield live


def run(*args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> Result:
    """The command, run by Click's CliRunner with no FILEDOCK_ variables but env's."""
    clean = {name: None for name in os.environ if name.startswith("FILEDOCK_")}
    return CliRunner().invoke(main, list(args), env=clean | (env or {}), input=input)


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- put, get ------------------------------------------------------------------------------------


def test_put_then_get_round_trips(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(1_500_000)
    (tmp_path / "a.bin").write_bytes(data)
    result = run("put", str(tmp_path / "a.bin"), "cli/a.bin", "--url", server.url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == f"stored cli/a.bin (1500000 bytes, sha256 {sha256(data)})"
    result = run("get", "cli/a.bin", str(tmp_path / "copy.bin"), "--url", server.url)
    assert result.exit_code == 0, result.stderr
    assert sha256((tmp_path / "copy.bin").read_bytes()) == sha256(data)


def test_put_into_a_folder_keeps_the_name_and_get_defaults_to_it(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"jpeg bytes")
    result = run("put", str(tmp_path / "photo.jpg"), "cli/pics/", "--url", server.url, "-q")
    assert result.exit_code == 0 and result.stderr == ""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = run("get", "cli/pics/photo.jpg", "--url", server.url)
    assert result.exit_code == 0, result.stderr
    assert (here / "photo.jpg").read_bytes() == b"jpeg bytes"
    folder = tmp_path / "folder"
    folder.mkdir()
    assert run("get", "cli/pics/photo.jpg", str(folder), "--url", server.url).exit_code == 0
    assert (folder / "photo.jpg").read_bytes() == b"jpeg bytes"


def test_get_to_stdout_and_put_from_stdin(server: LiveServer) -> None:
    data = os.urandom(200_000)
    result = run("put", "-", "cli/stdin.bin", "--url", server.url, input=data)
    assert result.exit_code == 0, result.stderr
    result = run("get", "cli/stdin.bin", "-", "--url", server.url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == data
    assert result.stderr == ""


def test_put_without_overwrite(server: LiveServer, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_bytes(b"x")
    assert run("put", str(tmp_path / "x.txt"), "cli/x.txt", "--url", server.url).exit_code == 0
    result = run("put", str(tmp_path / "x.txt"), "cli/x.txt", "--no-overwrite", "--url", server.url)
    assert_one_line_error(result, 1, "412 precondition-failed", "cli/x.txt")


def test_put_resumable(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "r.bin").write_bytes(data)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = run(
        "put", str(tmp_path / "r.bin"), "cli/r.bin", "--resumable", "--url", server.url, env=env
    )
    assert result.exit_code == 0, result.stderr
    assert sha256(data) in result.stderr
    assert json.loads((tmp_path / "cache" / "filedock" / "uploads.json").read_text()) == {}
    result = run("get", "cli/r.bin", "-", "--url", server.url)
    assert result.stdout_bytes == data


def test_progress_bar_on_request_and_quiet(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(2_000_000)
    (tmp_path / "p.bin").write_bytes(data)
    result = run("put", str(tmp_path / "p.bin"), "cli/p.bin", "--url", server.url, "--progress")
    assert result.exit_code == 0
    assert "cli/p.bin [" in result.stderr and "100% 1.9 MiB/1.9 MiB" in result.stderr
    result = run("get", "cli/p.bin", str(tmp_path / "q.bin"), "--url", server.url, "--progress")
    assert result.exit_code == 0
    assert "100% 1.9 MiB/1.9 MiB\n" in result.stderr
    # not a terminal and not asked for: no bar; --quiet wins over --progress
    result = run("get", "cli/p.bin", str(tmp_path / "r.bin"), "--url", server.url)
    assert result.exit_code == 0 and result.stderr == ""
    result = run(
        "put", str(tmp_path / "p.bin"), "cli/p.bin", "--url", server.url, "--progress", "-q"
    )
    assert result.exit_code == 0 and result.stderr == ""


def test_get_resumes_a_partial_download(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(1_200_000)
    (tmp_path / "src.bin").write_bytes(data)
    assert (
        run("put", str(tmp_path / "src.bin"), "cli/resume.bin", "--url", server.url).exit_code == 0
    )
    local = tmp_path / "resume.bin"
    local.write_bytes(data[:1_000_000])
    result = run("get", "cli/resume.bin", str(local), "--resume", "--progress", "--url", server.url)
    assert result.exit_code == 0, result.stderr
    assert local.read_bytes() == data
    first_draw = result.stderr.split("\r")[1]
    assert " 83% " in first_draw  # it started from the 1000000 bytes already there
    result = run("get", "cli/resume.bin", "-", "-c", "--url", server.url)
    assert result.exit_code == 2 and "--resume needs a file" in result.stderr


# -- ls, rm, meta, json --------------------------------------------------------------------------


def test_ls_and_long(server: LiveServer) -> None:
    for name in ("ls/b.txt", "ls/a.txt", "ls/sub/c.txt"):
        assert run("put", "-", name, "--url", server.url, input=name.encode()).exit_code == 0
    result = run("ls", "ls/", "--url", server.url)
    assert result.exit_code == 0
    assert result.stdout == "ls/a.txt\nls/b.txt\nls/sub/c.txt\n"
    result = run("ls", "ls/sub", "--long", "--url", server.url)
    fields = result.stdout.split()
    assert fields[0] == "12" and fields[2] == "ls/sub/c.txt"
    assert fields[1].endswith("Z") and len(fields[1]) == 20
    assert run("ls", "ls/none/", "--url", server.url).stdout == ""


def test_rm_and_meta(server: LiveServer) -> None:
    assert run("put", "-", "rm/a.txt", "--url", server.url, input=b"abc").exit_code == 0
    result = run("meta", "rm/a.txt", "--url", server.url)
    assert json.loads(result.stdout)["sha256"] == sha256(b"abc")
    result = run("rm", "rm/a.txt", "--url", server.url)
    assert result.exit_code == 0 and result.stdout == ""
    assert run("ls", "rm/", "--url", server.url).stdout == ""
    assert_one_line_error(run("rm", "rm/a.txt", "--url", server.url), 1, "no object at rm/a.txt")


def test_json_get_put_patch(server: LiveServer, tmp_path: Path) -> None:
    doc = {"labels": {"0": "cat", "1": "dög"}, "list": [1, 2]}
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    result = run("json", "put", "js/doc.json", str(tmp_path / "doc.json"), "--url", server.url)
    assert result.exit_code == 0, result.stderr
    result = run("json", "get", "js/doc.json", "--url", server.url)
    assert result.exit_code == 0
    assert result.stdout == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    result = run("json", "get", "js/doc.json", "--pointer", "/labels/1", "--url", server.url)
    assert result.stdout == '"dög"\n'
    result = run("json", "get", "js/doc.json", "--pointer", "/labels", "--url", server.url)
    assert result.stdout == '{\n  "0": "cat",\n  "1": "dög"\n}\n'
    patch = b'[{"op": "add", "path": "/list/-", "value": 3}]'
    result = run("json", "patch", "js/doc.json", "-", "--url", server.url, input=patch)
    assert result.exit_code == 0 and json.loads(result.stdout)["list"] == [1, 2, 3]
    result = run(
        "json",
        "patch",
        "js/doc.json",
        "-",
        "--merge",
        "--url",
        server.url,
        input=b'{"labels": null}',
    )
    assert json.loads(result.stdout) == {"list": [1, 2, 3]}
    result = run("json", "get", "js/doc.json", "--pointer", "/nope", "--url", server.url)
    assert_one_line_error(result, 1, "404 pointer-not-found")
    result = run("json", "put", "js/x.json", "-", "--url", server.url, input=b"{not json")
    assert result.exit_code == 2 and "is not JSON" in result.stderr


# -- errors --------------------------------------------------------------------------------------


def test_not_found_is_one_line_and_exit_1(server: LiveServer, tmp_path: Path) -> None:
    result = run("get", "err/missing.bin", str(tmp_path / "m.bin"), "--url", server.url)
    assert_one_line_error(result, 1, "no object at err/missing.bin (404 not-found)")
    assert not (tmp_path / "m.bin").exists()


def test_tokens_from_option_and_environment(protected: TokenServer) -> None:
    result = run("ls", "--url", protected.url)
    assert_one_line_error(result, 1, "(401 unauthorized)", "--token or set FILEDOCK_TOKEN")
    result = run("ls", "--url", protected.url, "--token", "wrong")
    assert_one_line_error(result, 1, "401 unauthorized")
    result = run(
        "put", "-", "t/a.txt", "--url", protected.url, "--token", protected.token, input=b"a"
    )
    assert result.exit_code == 0, result.stderr
    env = {"FILEDOCK_URL": protected.url, "FILEDOCK_TOKEN": protected.read_token}
    result = run("ls", env=env)
    assert result.exit_code == 0 and result.stdout == "t/a.txt\n"
    result = run("rm", "t/a.txt", env=env)
    assert_one_line_error(result, 1, "403 forbidden")


def test_usage_and_connection_errors() -> None:
    result = run("ls", "--url", "localhost:5000")
    assert result.exit_code == 2 and "not an http:// or https:// URL" in result.stderr
    result = run("put", "/no/such/file", "x", "--url", "http://127.0.0.1:5000")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = run("put", "-", "folder/", input=b"x")
    assert result.exit_code == 2 and "REMOTE must name the object" in result.stderr
    url = refused_url()
    assert_one_line_error(run("ls", "--url", url), 1, f"cannot reach {url}", "Connection refused")
    assert_one_line_error(run("get", "a", "-", env={"FILEDOCK_URL": url}), 1, "Connection refused")


# -- a real process ------------------------------------------------------------------------------


def filedock(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`python -m filedock ARGS` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "filedock", *args],
        input=input, capture_output=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_subprocess_put_get_and_errors(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(2_500_000)
    (tmp_path / "big.bin").write_bytes(data)
    done = filedock("put", str(tmp_path / "big.bin"), "proc/big.bin", "--url", server.url)
    assert done.returncode == 0, done.stderr
    done = filedock("get", "proc/big.bin", str(tmp_path / "back.bin"), "--url", server.url)
    assert done.returncode == 0, done.stderr
    assert sha256((tmp_path / "back.bin").read_bytes()) == sha256(data)
    # standard input from a pipe (sent chunked) and standard output
    done = filedock("put", "-", "proc/piped.bin", "--url", server.url, "-q", input=data)
    assert done.returncode == 0 and done.stderr == b""
    done = filedock("get", "proc/piped.bin", "-", "--url", server.url)
    assert done.returncode == 0 and done.stdout == data
    done = filedock("get", "proc/missing", "-", "--url", server.url)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr == b"Error: no object at proc/missing (404 not-found)\n"


def test_subprocess_refused_upload_reports_the_servers_answer(protected: TokenServer) -> None:
    # The server answers 401/403 before it reads the body: the client still reports that
    # answer, not the broken pipe of the bytes it was still sending.
    data = os.urandom(4_000_000)
    done = filedock("put", "-", "proc/x.bin", "--url", protected.url, input=data)
    assert done.returncode == 1
    assert done.stderr.endswith(b"(401 unauthorized); pass --token or set FILEDOCK_TOKEN\n")
    args = ("--url", protected.url, "--token", protected.read_token)
    done = filedock("put", "-", "proc/x.bin", *args, input=data)
    assert done.returncode == 1 and b"(403 forbidden)" in done.stderr
