"""filedock.client against real `filedock serve` processes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from filedock.client import Client, FiledockError
from tests.conftest import LiveServer
from tests.servers import TokenServer, open_server, refused_url, token_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with open_server(tmp_path_factory.mktemp("open")) as live:
        yield live


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with token_server(tmp_path_factory.mktemp("tokens")) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[Client]:
    with Client(server.url) as c:
        yield c


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


# -- put and get ---------------------------------------------------------------------------------


def test_put_then_get_round_trips_bytes_and_sha256(client: Client, tmp_path: Path) -> None:
    data = random_bytes(3 * (1 << 20) + 17)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    seen: list[tuple[int, int | None]] = []
    info = client.put(source, "rt/big.bin", progress=lambda d, t: seen.append((d, t)))
    assert info["path"] == "rt/big.bin" and info["size"] == len(data)
    assert info["sha256"] == sha256(data) and info["etag"] == f'"{sha256(data)}"'
    assert seen[-1] == (len(data), len(data))
    target = tmp_path / "copy.bin"
    got = client.get("rt/big.bin", target)
    assert target.read_bytes() == data
    assert got["sha256"] == sha256(data) and got["size"] == len(data)
    assert got["etag"] == info["etag"] and got["modified"] == info["modified"]
    assert client.meta("rt/big.bin") == info


def test_put_sends_a_content_digest_the_server_checks(client: Client) -> None:
    # A file object read from its position: the digest covers exactly what is sent.
    stream = io.BytesIO(b"skip-me|the body")
    stream.seek(8)
    info = client.put(stream, "rt/from-position.txt")
    assert info["size"] == 8 and info["sha256"] == sha256(b"the body")
    assert info["content_type"] == "text/plain"


def test_put_from_a_pipe_streams_chunked(client: Client) -> None:
    data = random_bytes(300_000)
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as out:
            out.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_end, "rb") as stream:
        info = client.put(stream, "rt/piped.bin")
    writer.join()
    assert info["size"] == len(data) and info["sha256"] == sha256(data)
    out = io.BytesIO()
    client.get("rt/piped.bin", out)
    assert out.getvalue() == data


def test_put_empty_file(client: Client, tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert client.put(tmp_path / "empty", "rt/empty")["size"] == 0
    client.get("rt/empty", tmp_path / "empty-copy")
    assert (tmp_path / "empty-copy").read_bytes() == b""


def test_put_without_overwrite_refuses_an_existing_object(client: Client) -> None:
    client.put(io.BytesIO(b"first"), "rt/once.txt")
    with pytest.raises(FiledockError) as caught:
        client.put(io.BytesIO(b"second"), "rt/once.txt", overwrite=False)
    assert (caught.value.status, caught.value.code) == (412, "precondition-failed")
    out = io.BytesIO()
    client.get("rt/once.txt", out)
    assert out.getvalue() == b"first"
    client.put(io.BytesIO(b"second"), "rt/once.txt")
    assert client.meta("rt/once.txt")["size"] == 6


def test_paths_are_percent_encoded_once(client: Client) -> None:
    name = "rt/odd names/a b%20?#ü+;.txt"
    client.put(io.BytesIO(b"odd"), name)
    assert name in client.ls("rt/odd names/")
    out = io.BytesIO()
    client.get(name, out)
    assert out.getvalue() == b"odd"
    with pytest.raises(FiledockError) as caught:
        client.meta("rt/odd names/a b ?#ü+;.txt")  # %20 stays a literal "%20"
    assert caught.value.status == 404


def test_get_missing_raises_and_leaves_the_local_file_alone(client: Client, tmp_path: Path) -> None:
    local = tmp_path / "keep.txt"
    local.write_bytes(b"mine")
    with pytest.raises(FiledockError) as caught:
        client.get("rt/missing.bin", local)
    error = caught.value
    assert (error.status, error.code) == (404, "not-found")
    assert error.detail == "no object at rt/missing.bin"
    assert str(error) == "404 not-found: no object at rt/missing.bin"
    assert local.read_bytes() == b"mine"
    with pytest.raises(FiledockError):
        client.get("rt/missing.bin", tmp_path / "new.txt")
    assert not (tmp_path / "new.txt").exists()


def test_invalid_path_is_the_servers_problem(client: Client) -> None:
    with pytest.raises(FiledockError) as caught:
        client.put(io.BytesIO(b"x"), "rt/.filedock-state")
    assert (caught.value.status, caught.value.code) == (400, "invalid-path")


# -- resumed downloads ---------------------------------------------------------------------------


def test_get_resumes_a_partial_download_with_a_range(client: Client, tmp_path: Path) -> None:
    data = random_bytes(2 * (1 << 20) + 5)
    client.put(io.BytesIO(data), "resume/a.bin")
    local = tmp_path / "a.bin"
    local.write_bytes(data[:700_000])
    seen: list[int] = []
    info = client.get("resume/a.bin", local, progress=lambda d, t: seen.append(d), resume=True)
    assert local.read_bytes() == data
    assert info["sha256"] == sha256(data) and info["size"] == len(data)
    assert seen[0] == 700_000  # only the rest came over the wire
    assert seen[-1] == len(data)


def test_resume_of_a_complete_file_fetches_nothing(client: Client, tmp_path: Path) -> None:
    data = b"complete already"
    client.put(io.BytesIO(data), "resume/done.txt")
    local = tmp_path / "done.txt"
    local.write_bytes(data)
    seen: list[int] = []
    client.get("resume/done.txt", local, progress=lambda d, t: seen.append(d), resume=True)
    assert seen == [len(data)] and local.read_bytes() == data


def test_resume_after_the_object_changed_fetches_it_whole(client: Client, tmp_path: Path) -> None:
    old, new = random_bytes(400_000), random_bytes(600_000)
    client.put(io.BytesIO(new), "resume/changed.bin")
    local = tmp_path / "changed.bin"
    local.write_bytes(old[:200_000])  # the start of a version that is gone
    client.get("resume/changed.bin", local, resume=True)
    assert local.read_bytes() == new
    local.write_bytes(old)  # shorter than the object, and not its start
    client.get("resume/changed.bin", local, resume=True)
    assert local.read_bytes() == new
    local.write_bytes(new + b"extra")  # longer than the object
    client.get("resume/changed.bin", local, resume=True)
    assert local.read_bytes() == new


def test_resume_needs_a_path(client: Client) -> None:
    with pytest.raises(ValueError):
        client.get("resume/a.bin", io.BytesIO(), resume=True)


# -- listing and deleting ------------------------------------------------------------------------


def test_ls_follows_cursors_and_long_gives_metadata(client: Client) -> None:
    names = [f"list/{i:02d}.txt" for i in range(7)]
    for name in reversed(names):
        client.put(io.BytesIO(name.encode()), name)
    client.put(io.BytesIO(b"x"), "listing-elsewhere.txt")
    assert [item["path"] for item in client.iter_files("list/", page_size=2)] == names
    assert client.ls("list/") == names
    long = client.ls("list/", long=True)
    assert [item["path"] for item in long] == names
    assert long[0]["size"] == len(names[0]) and long[0]["sha256"] == sha256(names[0].encode())
    assert client.ls("list/0") == names
    assert client.ls("nothing-here/") == []


def test_rm_deletes_and_missing_is_404(client: Client) -> None:
    client.put(io.BytesIO(b"bye"), "rm/a.txt")
    client.rm("rm/a.txt")
    assert client.ls("rm/") == []
    with pytest.raises(FiledockError) as caught:
        client.rm("rm/a.txt")
    assert (caught.value.status, caught.value.code) == (404, "not-found")


# -- JSON documents ------------------------------------------------------------------------------


def test_json_put_get_pointer_and_patches(client: Client) -> None:
    doc = {"labels": ["cat", "dog"], "meta": {"name": "ünï"}}
    info = client.json_put("docs/labels.json", doc)
    assert info["path"] == "docs/labels.json" and info["size"] > 0
    assert client.json_get("docs/labels.json") == doc
    assert client.json_get("docs/labels.json", pointer="/labels/1") == "dog"
    assert client.json_get("docs/labels.json", pointer="/meta/name") == "ünï"
    merged = client.json_patch("docs/labels.json", {"meta": None, "n": 2}, merge=True)
    assert merged == {"labels": ["cat", "dog"], "n": 2}
    patched = client.json_patch(
        "docs/labels.json", [{"op": "add", "path": "/labels/-", "value": "bird"}]
    )
    assert patched["labels"] == ["cat", "dog", "bird"]
    assert client.json_get("docs/labels.json") == patched


def test_json_errors_carry_the_problem(client: Client) -> None:
    client.json_put("docs/e.json", {"a": 1})
    with pytest.raises(FiledockError) as caught:
        client.json_get("docs/e.json", pointer="/b")
    assert (caught.value.status, caught.value.code) == (404, "pointer-not-found")
    with pytest.raises(FiledockError) as caught:
        client.json_patch("docs/e.json", [{"op": "test", "path": "/a", "value": 2}])
    assert (caught.value.status, caught.value.code) == (409, "patch-test-failed")
    etag = client.meta("docs/e.json")["etag"]
    client.json_put("docs/e.json", {"a": 2})
    with pytest.raises(FiledockError) as caught:
        client.json_put("docs/e.json", {"a": 3}, if_match=etag)
    assert caught.value.status == 412
    client.put(io.BytesIO(b"not json"), "docs/plain.json")
    with pytest.raises(FiledockError) as caught:
        client.json_get("docs/plain.json")
    assert (caught.value.status, caught.value.code) == (422, "invalid-json")


# -- resumable uploads ---------------------------------------------------------------------------


class Interrupt(Exception):
    pass


def test_upload_resumable_round_trip(client: Client, tmp_path: Path) -> None:
    data = random_bytes(700_000)
    source = tmp_path / "tus.bin"
    source.write_bytes(data)
    state = tmp_path / "state.json"
    info = client.upload_resumable(source, "tus/a.bin", chunk_bytes=256 * 1024, state_file=state)
    assert info["sha256"] == sha256(data) and info["size"] == len(data)
    assert json.loads(state.read_text()) == {}


def test_upload_resumable_carries_on_after_an_interruption(
    server: LiveServer, tmp_path: Path
) -> None:
    data = random_bytes(1_000_000)
    source = tmp_path / "tus.bin"
    source.write_bytes(data)
    state = tmp_path / "state.json"

    def stop_after_first_chunk(done: int, total: int | None) -> None:
        if done >= 300_000:
            raise Interrupt

    with Client(server.url) as first, pytest.raises(Interrupt):
        first.upload_resumable(
            source, "tus/resumed.bin", progress=stop_after_first_chunk,
            chunk_bytes=300_000, state_file=state,
        )  # fmt: skip
    assert len(json.loads(state.read_text())) == 1
    with Client(server.url) as second:
        with pytest.raises(FiledockError):
            second.meta("tus/resumed.bin")  # nothing is visible before the last chunk
        seen: list[int] = []
        info = second.upload_resumable(
            source, "tus/resumed.bin", progress=lambda d, t: seen.append(d),
            chunk_bytes=300_000, state_file=state,
        )  # fmt: skip
    assert seen[0] == 300_000 and seen[-1] == len(data)
    assert info["sha256"] == sha256(data)
    assert json.loads(state.read_text()) == {}


def test_upload_resumable_refused_target_is_dropped(client: Client, tmp_path: Path) -> None:
    client.put(io.BytesIO(b"taken"), "tus/taken.bin")
    source = tmp_path / "x.bin"
    source.write_bytes(b"new bytes")
    state = tmp_path / "state.json"
    with pytest.raises(FiledockError) as caught:
        client.upload_resumable(source, "tus/taken.bin", overwrite=False, state_file=state)
    assert (caught.value.status, caught.value.code) == (412, "exists")
    assert not state.exists() or json.loads(state.read_text()) == {}
    assert client.upload_resumable(source, "tus/taken.bin", state_file=state)["size"] == 9


# -- tokens and transport errors -----------------------------------------------------------------


def test_token_protected_server(protected: TokenServer) -> None:
    with Client(protected.url) as anonymous:
        with pytest.raises(FiledockError) as caught:
            anonymous.ls()
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    with Client(protected.url, token="not-a-token") as wrong:
        with pytest.raises(FiledockError) as caught:
            wrong.put(io.BytesIO(b"x"), "t/x.txt")
        assert caught.value.status == 401
    with Client(protected.url, token=protected.token) as writer:
        info = writer.put(io.BytesIO(b"secret"), "t/x.txt")
        assert writer.ls() == ["t/x.txt"]
        out = io.BytesIO()
        writer.get("t/x.txt", out)
        assert out.getvalue() == b"secret"
        assert writer.json_put("t/d.json", [1])["size"] == 3
    with Client(protected.url, token=protected.read_token) as reader:
        assert reader.meta("t/x.txt") == info
        with pytest.raises(FiledockError) as caught:
            reader.rm("t/x.txt")
        assert (caught.value.status, caught.value.code) == (403, "forbidden")


def test_connection_refused_and_bad_urls() -> None:
    with Client(refused_url()) as nobody, pytest.raises(FiledockError) as caught:
        nobody.ls()
    error = caught.value
    assert error.status is None and error.code == "connection-failed"
    assert "Connection refused" in error.detail
    for url in ("localhost:5000", "ftp://host/", "http://"):
        with pytest.raises(FiledockError) as caught:
            Client(url)
        assert caught.value.code == "bad-url"
