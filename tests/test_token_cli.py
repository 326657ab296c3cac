"""`filedock token create|list|revoke` through the command line, then a real server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tomllib
from pathlib import Path

from click.testing import CliRunner

from filedock.auth import hash_token
from filedock.cli import main
from tests.conftest import start_server


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def curl_status(url: str, *args: str) -> int:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args, url],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return int(out)


def test_create_prints_a_token_once_and_stores_its_hash(tmp_path: Path) -> None:
    config = tmp_path / "filedock.toml"
    code, out, err = run("token", "create", "--config", str(config), "--scope", "read,write")
    assert code == 0, err
    token = out.strip()
    assert len(token) == 43 and "\n" not in token
    assert "only time" in err
    text = config.read_text()
    assert token not in text
    data = tomllib.loads(text)
    assert data["tokens"] == [
        {"name": "token-1", "hash": hash_token(token), "scopes": ["read", "write"]}
    ]
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600


def test_create_keeps_other_keys_and_tokens(tmp_path: Path) -> None:
    config = tmp_path / "filedock.toml"
    config.write_text('port = 6000\ncors_origins = ["https://a.test"]\n')
    code, first, _ = run(
        "token", "create", "--config", str(config), "--scope", "read", "--prefix", "team-a/",
        "--name", "team-a-reader",
    )  # fmt: skip
    assert code == 0
    code, second, _ = run("token", "create", "--config", str(config), "--scope", "admin")
    assert code == 0 and first != second
    data = tomllib.loads(config.read_text())
    assert data["port"] == 6000 and data["cors_origins"] == ["https://a.test"]
    assert [t["name"] for t in data["tokens"]] == ["team-a-reader", "token-2"]
    assert data["tokens"][0]["prefix"] == "team-a"


def test_create_refuses_bad_input(tmp_path: Path) -> None:
    config = tmp_path / "filedock.toml"
    for args in (["--scope", "reed"], ["--scope", ""], ["--scope", "read", "--prefix", "../x"]):
        code, out, err = run("token", "create", "--config", str(config), *args)
        assert code == 2 and out == "" and err.startswith("filedock: "), args
    assert not config.exists()
    run("token", "create", "--config", str(config), "--scope", "read", "--name", "n")
    code, _, err = run("token", "create", "--config", str(config), "--scope", "read", "--name", "n")
    assert code != 0 and "exists already" in err


def test_list_shows_no_tokens(tmp_path: Path) -> None:
    config = tmp_path / "filedock.toml"
    _, token, _ = run("token", "create", "--config", str(config), "--scope", "read", "--name", "r")
    _, _, _ = run(
        "token", "create", "--config", str(config), "--scope", "write", "--prefix", "drop",
        "--name", "w",
    )  # fmt: skip
    code, out, _ = run("token", "list", "--config", str(config))
    assert code == 0
    token = token.strip()
    assert token not in out and hash_token(token) not in out
    lines = [line.split("\t") for line in out.splitlines()]
    assert lines == [
        ["r", "read", "*", hash_token(token)[:12]],
        ["w", "write", "drop", lines[1][3]],
    ]


def test_revoke_by_name_or_hash_prefix(tmp_path: Path) -> None:
    config = tmp_path / "filedock.toml"
    tokens = {}
    for name in ("a", "b", "c"):
        tokens[name] = run(
            "token", "create", "--config", str(config), "--scope", "read", "--name", name
        )[1].strip()
    code, out, _ = run("token", "revoke", "--config", str(config), "b")
    assert code == 0 and "revoked b" in out
    code, out, _ = run("token", "revoke", "--config", str(config), hash_token(tokens["c"])[:10])
    assert code == 0 and "revoked c" in out
    names = [t["name"] for t in tomllib.loads(config.read_text())["tokens"]]
    assert names == ["a"]
    for ref in ("b", "zz", hash_token(tokens["a"])[:4]):  # gone, unknown, too short a prefix
        code, _, err = run("token", "revoke", "--config", str(config), ref)
        assert code != 0 and "no token" in err


def test_a_real_server_accepts_a_created_token(tmp_path: Path) -> None:
    config = tmp_path / "filedock.toml"
    store = tmp_path / "store"
    store.mkdir()
    (store / "doc.json").write_text('{"ok": 1}')
    reader = run("token", "create", "--config", str(config), "--scope", "read", "--name", "r")[1]
    writer = run("token", "create", "--config", str(config), "--scope", "write", "--name", "w")[1]
    reader, writer = reader.strip(), writer.strip()
    server = start_server("--config", str(config), "--store", str(store), "--port", "0")
    try:
        url = server.url + "/getJsonFromFile/doc.json"
        assert curl_status(url) == 401
        assert curl_status(url, "-H", f"Authorization: Bearer {reader}") == 200
        assert curl_status(url, "-u", f":{reader}") == 200
        assert curl_status(url, "-u", f":{writer}") == 403
        assert curl_status(url, "-u", ":not-a-token") == 401
        body = subprocess.run(
            ["curl", "-s", "-u", f":{reader}", url], capture_output=True, text=True, check=True
        ).stdout
        assert json.loads(body)["LABELS_MAPPING"] == {"ok": 1}
        # revoking is seen by the running server's workers
        code, _, _ = run("token", "revoke", "--config", str(config), "r")
        assert code == 0
        assert curl_status(url, "-u", f":{reader}") == 401
    finally:
        assert server.stop() == 0
