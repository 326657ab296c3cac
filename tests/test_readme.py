"""The README's shell commands work as written.

Every ```sh block of README.md is run with bash, in order, against a live server started as
`make serve` starts one: `filedock serve` with its defaults, in a folder where ./data is a
fresh copy of examples/. That folder stands in for a fresh clone's root (the README's commands
run from there): it holds examples/ too, so the files the commands send are where the README
says, and what they write (downloads, a config file) lands in it rather than in the checkout.
The server listens on a free port, written over the README's 5000.

Each command must exit with 0 (the README's curl commands use -f where a failure matters, and
bash runs with pipefail), and a comment right under a command is its expected output: JSON
is compared as JSON, `...` stands for anything, and anything else must match exactly.

A block is left out only when an HTML comment right above it says so; SKIPPED lists each one
with the reason, and the test fails if the README's list differs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import start_server

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SKIP_MARKER = re.compile(r"^<!-- not run by tests/test_readme\.py: (.+) -->$")

# The blocks the test does not run (by their first line), and why.
SKIPPED = {
    # make serve starts the very server this test starts itself; make test runs this test.
    "make serve   # set up, copy examples/ to ./data (first run only), serve it at "
    "http://127.0.0.1:5000/": "make serve starts the server that the test runs the other "
    "blocks against, and make test would run the test inside itself",
    # A second server on the default port that never ends; the token commands above it run.
    "filedock serve --config filedock.toml": "it starts a second server, which runs until "
    "it is stopped",
    # The tests run an S3 store of their own (tests/seaweed.py); the README's is an example.
    "filedock serve --store s3://my-bucket/filedock --s3-endpoint http://127.0.0.1:8333": "it "
    "needs an S3 store at that address, and starts a server that runs until it is stopped",
}


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)  # the comment lines right under it


@dataclass
class Block:
    first_line: str
    commands: list[Command]
    skip_reason: str | None


def read_blocks(text: str) -> list[Block]:
    """The ```sh blocks of a Markdown text, each split into commands."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```sh":
            i += 1
            continue
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        marker = SKIP_MARKER.match(before.strip())
        end = lines.index("```", i + 1)
        body = lines[i + 1 : end]
        blocks.append(Block(body[0], split_commands(body), marker[1] if marker else None))
        i = end + 1
    return blocks


def split_commands(body: list[str]) -> list[Command]:
    """Commands (with their continuation lines) and the output comments right under them."""
    commands: list[Command] = []
    last: Command | None = None  # the command the next comment line would belong to
    lines = iter(body)
    for line in lines:
        if not line.strip():
            last = None
        elif line.lstrip().startswith("#"):
            if last is not None:
                last.expected.append(line.lstrip()[1:].strip())
        else:
            text = line
            while text.endswith("\\"):
                text += "\n" + next(lines)
            last = Command(text)
            commands.append(last)
    return commands


def matches(expected: str, actual: str) -> bool:
    """Does a command's output match the README's comment?"""
    actual = actual.strip()
    if "..." in expected:
        pattern = ".*".join(re.escape(part) for part in expected.split("..."))
        return re.fullmatch(pattern, actual, re.DOTALL) is not None
    try:
        return bool(json.loads(expected) == json.loads(actual))
    except ValueError:
        return expected == actual


def on_port(text: str, port: int) -> str:
    """A command aimed at the test's server instead of the default port."""
    for host in ("localhost", "127.0.0.1"):
        text = text.replace(f"{host}:5000", f"{host}:{port}")
    assert ":5000" not in text, text  # it would reach whatever listens there
    return text


def run_block(block: Block, port: int, root: Path, env: dict[str, str]) -> list[str]:
    """Run the block's commands in one bash, in order; the failures, described."""
    out = root / ".readme-run"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    script = ["set -o pipefail"]
    for n, command in enumerate(block.commands):
        # The command on lines of its own: a trailing comment must not swallow the rest.
        script += ["{", on_port(command.text, port), f"}} >{out}/{n}.out 2>{out}/{n}.err",
                   f"echo $? >{out}/{n}.rc"]  # fmt: skip
    subprocess.run(["bash", "-c", "\n".join(script)], cwd=root, env=env, timeout=300, check=False)
    failures = []
    for n, command in enumerate(block.commands):
        rc = (out / f"{n}.rc").read_text().strip()
        stdout = (out / f"{n}.out").read_text(errors="replace")
        stderr = (out / f"{n}.err").read_text(errors="replace")
        if rc != "0":
            failures.append(f"{command.text}\n  exit {rc}: {stderr.strip()} {stdout.strip()}")
        elif command.expected and not matches("\n".join(command.expected), stdout):
            failures.append(f"{command.text}\n  printed {stdout!r}, not {command.expected}")
    return failures


def test_the_readme_commands_work_as_written(tmp_path: Path) -> None:
    blocks = read_blocks(README.read_text())
    skipped = {block.first_line: block.skip_reason for block in blocks if block.skip_reason}
    assert skipped == SKIPPED
    runnable = [block for block in blocks if not block.skip_reason]
    commands = [command for block in runnable for command in block.commands]
    assert len(commands) >= 30
    assert sum(1 for command in commands if command.expected) >= 4

    root = tmp_path / "checkout"
    shutil.copytree(REPO / "examples", root / "examples")
    shutil.copytree(REPO / "examples", root / "data")  # what make serve does on its first run
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    env |= {
        # the filedock command of this checkout, then the system's tools (curl, tar, ...)
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),  # put --resumable keeps its record under ~/.cache
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    server = start_server("--port", "0", cwd=root)
    try:
        port = int(server.url.rsplit(":", 1)[1])
        failures = []
        for block in runnable:
            failures += run_block(block, port, root, env)
    finally:
        assert server.stop() == 0
    assert not failures, "\n\n".join(failures)
    # What the commands did is there: the uploads by both APIs, and the CLI's download.
    assert (root / "data" / "new_filefile1.jpg").read_bytes() == (
        REPO / "examples" / "file1.jpg"
    ).read_bytes()
    assert (root / "data" / "models" / "v3" / "model.onnx").is_file()
    assert (root / "model.onnx").read_bytes() == (REPO / "examples" / "model.onnx").read_bytes()
    assert (root / "cat.jpg").read_bytes() == (REPO / "examples" / "file1.jpg").read_bytes()
    assert not (root / "data" / "images" / "file1.jpg").exists()  # the conditional DELETE
