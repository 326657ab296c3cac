"""Mistakes on the command line, in the config, the environment or the store: the real
`filedock` command prints one line on stderr (`filedock: ...`) and exits with 2, never a
traceback, and starts no server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FILEDOCK = str(Path(sys.executable).with_name("filedock"))  # the installed console script


def run_filedock(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command, with no FILEDOCK_ (or AWS_) variables but env's. A server that started by
    mistake never ends by itself: the timeout then fails the test."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FILEDOCK_", "AWS_"))}
    return subprocess.run(
        [FILEDOCK, *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, env=clean | (env or {}),
    )  # fmt: skip


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 2 and one line on stderr, `filedock: ...`, holding every fragment."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("filedock: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "serving" not in result.stdout


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--store", "s3://No_Such_Bucket!/x"], ["not a bucket name", "s3://No_Such_Bucket!/x"]),
        (["--store", "s3://bucket/a/../b"], ["bad prefix", "s3://bucket/a/../b"]),
        (["--store", "ftp://host/x"], ["unknown kind of store", "ftp://"]),
        (["--port", "abc"], ["--port", "'abc' is not a valid integer"]),
        (["--port", "70000"], ["port must be between 0 and 65535"]),
        (["--port", "-1"], ["port must be between 0 and 65535"]),
        (["--workers", "0"], ["workers must be at least 1"]),
        (["--wrokers", "2"], ["No such option '--wrokers'"]),
        (["--config", "missing.toml"], ["missing.toml does not exist"]),
        (["--config", "."], ["'--config'", "is a directory"]),
        (["--host", "0.0.0.0"], ["refusing to listen on 0.0.0.0", "--allow-anonymous"]),
        # TEST-NET-1 (RFC 5737): an address no interface of this host has
        (["--host", "192.0.2.1", "--allow-anonymous"], ["cannot listen on 192.0.2.1"]),
    ],
)
def test_bad_serve_flags(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    result = run_filedock("serve", "--port", "0", *args, cwd=tmp_path)
    assert_user_error(result, *fragments)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"port = \n", ["config file", "Invalid value (at line 1"]),
        (b"\xff\xfeport = 1\n", ["config file", "can't decode"]),
        (b"prot = 5000\n", ["unknown setting 'prot'"]),
        (b'max_upload_bytes = "five"\n', ["bad value for max_upload_bytes"]),
        (b"workers = 0\n", ["workers must be at least 1"]),
        (b"max_upload_bytes = -1\n", ["max_upload_bytes must not be negative"]),
        (b"[[tokens]]\nname = 'no hash'\n", ["bad value for tokens"]),
        (b"cors_origins = 5\n", ["bad value for cors_origins"]),
    ],
)
def test_invalid_config_content(tmp_path: Path, content: bytes, fragments: list[str]) -> None:
    config = write(tmp_path / "filedock.toml", content)
    result = run_filedock("serve", "--port", "0", "--config", config, cwd=tmp_path)
    assert_user_error(result, *fragments)


def test_unreadable_config_named_in_the_environment(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    result = run_filedock("serve", "--port", "0", cwd=tmp_path, env={"FILEDOCK_CONFIG": "conf.d"})
    assert_user_error(result, "config file conf.d", "Is a directory")


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"FILEDOCK_WORKERS": "x"}, ["bad value for workers"]),
        ({"FILEDOCK_PROT": "5000"}, ["unknown environment variable FILEDOCK_PROT"]),
        ({"FILEDOCK_STORE": "s3://-bucket"}, ["not a bucket name", "s3://-bucket"]),
    ],
)
def test_bad_environment(tmp_path: Path, env: dict[str, str], fragments: list[str]) -> None:
    result = run_filedock("serve", "--port", "0", cwd=tmp_path, env=env)
    assert_user_error(result, *fragments)


def test_an_s3_store_without_credentials(tmp_path: Path) -> None:
    """No AWS credentials anywhere: one line that says so, before any request is made."""
    nowhere = str(tmp_path / "none")
    env = {"AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_CONFIG_FILE": nowhere}
    result = run_filedock("serve", "--port", "0", "--store", "s3://bucket/x", cwd=tmp_path,
                          env=env)  # fmt: skip
    assert_user_error(result, "no AWS credentials were found", "s3://bucket/x")


def test_an_s3_store_with_an_unknown_aws_profile(tmp_path: Path) -> None:
    nowhere = str(tmp_path / "none")
    env = {"AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_CONFIG_FILE": nowhere}
    env |= {"AWS_PROFILE": "nobody"}
    result = run_filedock("serve", "--port", "0", "--store", "s3://bucket/x", cwd=tmp_path,
                          env=env)  # fmt: skip
    assert_user_error(result, "cannot use s3://bucket/x", "nobody")


def test_port_in_use(tmp_path: Path, busy_port: int) -> None:
    result = run_filedock("serve", "--port", str(busy_port), cwd=tmp_path)
    assert_user_error(result, f"cannot listen on 127.0.0.1 port {busy_port}", "in use")


def test_store_that_cannot_be_made(tmp_path: Path) -> None:
    # The tests run as root, which may write anywhere mode bits forbid: a file standing
    # where a folder must go stops root too.
    (tmp_path / "a-file").write_text("x")
    for store in ("a-file", "a-file/store"):
        result = run_filedock("serve", "--port", "0", "--store", store, cwd=tmp_path)
        assert_user_error(result, f"cannot open the store {store}", "not a folder")


def test_store_whose_state_cannot_be_written(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / ".filedock").write_text("a file where the server keeps its state")
    result = run_filedock("serve", "--port", "0", "--store", str(store), cwd=tmp_path)
    assert_user_error(result, f"cannot open the store {store}", ".filedock")


def test_unknown_command(tmp_path: Path) -> None:
    assert_user_error(run_filedock("serv", cwd=tmp_path), "No such command 'serv'")


def test_token_command_mistakes(tmp_path: Path) -> None:
    config = str(tmp_path / "filedock.toml")
    result = run_filedock("token", "create", "--config", config, "--scope", "reed", cwd=tmp_path)
    assert_user_error(result, "unknown scope 'reed'")
    assert not os.path.exists(config)
    result = run_filedock("token", "create", "--config", config, "--scope", "read", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_filedock("token", "revoke", "--config", config, "nobody", cwd=tmp_path)
    assert_user_error(result, "no token named 'nobody'")
    bad = write(tmp_path / "bad.toml", b"tokens = \n")
    result = run_filedock("token", "list", "--config", bad, cwd=tmp_path)
    assert_user_error(result, "config file")


def test_help_is_still_shown_without_arguments(tmp_path: Path) -> None:
    result = run_filedock(cwd=tmp_path)
    assert "Usage: filedock" in result.stdout + result.stderr
    assert "Commands:" in result.stdout + result.stderr
