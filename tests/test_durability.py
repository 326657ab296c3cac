"""Nothing acknowledged is lost: the system calls of a real server show that every stored file
was fsynced before it was renamed into place, and its folder after, all before the answer.

strace follows the worker; the lines of the thread that renamed the files are read in order."""

from __future__ import annotations

import io
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.api.test_tus import create_live
from tests.conftest import LiveServer, start_server

FSYNC = re.compile(r"^(\d+) +fsync\(\d+<(?P<path>[^>]*)>\) = 0")
RENAME = re.compile(r'^(\d+) +rename(?:at2?)?\([^"]*"(?P<src>[^"]+)", [^"]*"(?P<dst>[^"]+)"')
ANSWER = re.compile(r'^(\d+) +(?:sendto|write|sendmsg)\(\d+<(?:socket|TCP)[^>]*>, "HTTP/1\.1 ')


@pytest.fixture
def traced(store_dir: Path, tmp_path: Path) -> Iterator[tuple[LiveServer, Callable[[], str]]]:
    server = start_server("--store", str(store_dir), "--port", "0", "--workers", "1")
    worker = server.first_worker()
    trace = tmp_path / "trace.txt"
    strace = subprocess.Popen(
        ["strace", "-f", "-y", "-e", "trace=fsync,rename,renameat,renameat2,sendto,write,sendmsg",
         "-o", str(trace), "-p", str(worker)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert strace.stderr is not None
    assert "attached" in strace.stderr.readline()

    def finish() -> str:
        strace.send_signal(signal.SIGINT)
        strace.wait(20)
        return trace.read_text()

    try:
        yield server, finish
    finally:
        if strace.poll() is None:
            finish()
        assert strace.stderr is not None
        strace.stderr.close()
        assert server.stop() == 0


def check_order(text: str, store: Path, names: list[str]) -> None:
    """In the thread that stored `names`: each was fsynced (as its staging file) before its
    rename into the store, its folder fsynced after that, and only then the answer sent."""
    root = str(store.resolve())
    renames = [m for line in text.splitlines() if (m := RENAME.match(line))]
    stored = {m["dst"][len(root) + 1 :]: m for m in renames if m["dst"].startswith(root + "/")}
    stored = {k: m for k, m in stored.items() if not k.startswith(".filedock/")}
    assert sorted(stored) == sorted(names), text
    [thread] = {m.group(1) for m in stored.values()}
    lines = [line for line in text.splitlines() if line.startswith(thread + " ")]
    answered = next(i for i, line in enumerate(lines) if ANSWER.match(line))
    for name, rename in stored.items():
        renamed = lines.index(rename.string)
        synced = [i for i, line in enumerate(lines) if (m := FSYNC.match(line))
                  and m["path"] == rename["src"]]  # fmt: skip
        assert synced and synced[0] < renamed, f"{name} renamed before its data was fsynced"
        folder = str(Path(rename["dst"]).parent)
        folder_synced = [i for i, line in enumerate(lines) if (m := FSYNC.match(line))
                         and m["path"] == folder and i > renamed]  # fmt: skip
        assert folder_synced and folder_synced[0] < answered, f"{name}'s folder not fsynced"


def files(*names: str) -> list[tuple[str, tuple[str, io.BytesIO]]]:
    return [("file", (name, io.BytesIO(name.encode() * 1000))) for name in names]


def test_a_raw_upload_is_durable_before_it_is_acknowledged(
    traced: tuple[LiveServer, Callable[[], str]], store_dir: Path
) -> None:
    server, finish = traced
    put = requests.put(server.url + "/api/v1/files/a/one.bin", data=b"x" * 100_000, timeout=30)
    assert put.status_code == 201
    check_order(finish(), store_dir, ["a/one.bin"])


def test_a_form_of_many_files_is_durable_before_it_is_acknowledged(
    traced: tuple[LiveServer, Callable[[], str]], store_dir: Path
) -> None:
    server, finish = traced
    names = [f"f{i}.bin" for i in range(20)]
    post = requests.post(
        server.url + "/api/v1/files", files=files(*names), data={"dir": "many"}, timeout=30
    )
    assert post.status_code == 201, post.text
    check_order(finish(), store_dir, [f"many/{name}" for name in names])


def test_the_original_upload_is_durable_before_it_is_acknowledged(
    traced: tuple[LiveServer, Callable[[], str]], store_dir: Path
) -> None:
    server, finish = traced
    upload = [("FILES_LIST", (n, io.BytesIO(b"jpeg" * 5000))) for n in ("1.jpg", "2.jpg")]
    post = requests.post(
        server.url + "/uploadFiles", files=upload, data={"FILE_NAME": "new_"}, timeout=30
    )
    assert post.status_code == 200 and post.json()["STATUS"] == "true", post.text
    check_order(finish(), store_dir, ["new_1.jpg", "new_2.jpg"])


def test_a_json_document_is_durable_before_it_is_acknowledged(
    traced: tuple[LiveServer, Callable[[], str]], store_dir: Path
) -> None:
    server, finish = traced
    put = requests.put(server.url + "/api/v1/json/labels.json", json={"thor": "3"}, timeout=30)
    assert put.status_code == 201
    check_order(finish(), store_dir, ["labels.json"])


def test_a_tus_chunk_and_its_offset_are_durable_before_the_answer(
    traced: tuple[LiveServer, Callable[[], str]], store_dir: Path
) -> None:
    """The chunk's data is fsynced, then the upload's record (with the new offset) is fsynced,
    renamed into place and its folder fsynced, all before the 204."""
    server, finish = traced
    tus = {"Tus-Resumable": "1.0.0"}
    upload = create_live(server.url, 200_000, "t.bin")
    upload_id = upload.rsplit("/", 1)[1]
    patched = requests.patch(
        upload,
        data=b"x" * 100_000,
        headers=tus | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        timeout=30,
    )
    assert patched.status_code == 204 and patched.headers["Upload-Offset"] == "100000"
    text = finish()
    record = [m for line in text.splitlines() if (m := RENAME.match(line))
              and m["dst"].endswith(f"/uploads/{upload_id}.json")][-1]  # fmt: skip
    thread = record.group(1)
    lines = [line for line in text.splitlines() if line.startswith(thread + " ")]
    renamed = lines.index(record.string)
    answered = next(i for i, line in enumerate(lines) if i > renamed and ANSWER.match(line))
    fsynced = [(i, m["path"]) for i, line in enumerate(lines) if (m := FSYNC.match(line))]
    data = [i for i, path in fsynced if path.endswith(f"/uploads/{upload_id}.part")]
    assert data and data[-1] < renamed, "the chunk was not fsynced before its offset was saved"
    assert any(path == record["src"] for i, path in fsynced if i < renamed), "record not fsynced"
    folder = str(Path(record["dst"]).parent)
    assert any(path == folder for i, path in fsynced if renamed < i < answered), (
        "the record's folder was not fsynced before the answer"
    )
