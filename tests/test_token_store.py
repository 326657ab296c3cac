"""Tokens kept in the store (`filedock token create|list|revoke --store`), seen by running
servers within 10 seconds, and what a server does when it cannot read them."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from filedock.auth import hash_token
from filedock.cli import main
from filedock.storage.local import LocalStorage
from filedock.tokenstore import (
    REFRESH_SECONDS,
    STALE_SECONDS,
    StoreTokens,
    StoreTokensUnavailable,
)
from tests.conftest import LiveServer, start_server
from tests.seaweed import BUCKET, Seaweed

HONOURED_WITHIN_SECONDS = 10


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def create(store: Path, scopes: str = "read,write", *extra: str) -> str:
    code, out, err = run("token", "create", "--store", str(store), "--scope", scopes, *extra)
    assert code == 0, err
    return out.strip()


def records_folder(store: Path) -> Path:
    return store / ".filedock" / "state" / "tokens"


def status(server: LiveServer, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(server.url + "/api/v1/files", headers=headers, timeout=10).status_code


def until(condition: object, seconds: float) -> float:
    """Poll condition() until it holds; the seconds it took (fails past `seconds`)."""
    assert callable(condition)
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, "not within the time allowed"
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture
def token_store(store_dir: Path) -> Iterator[tuple[LiveServer, str]]:
    token = create(store_dir, "read,write", "--name", "ci")
    # One worker: each worker refreshes on its own, and the tests follow one of them.
    server = start_server("--store", str(store_dir), "--port", "0", "--workers", "1")
    yield server, token
    server.stop()


def test_create_list_revoke_keep_only_hashes(store_dir: Path) -> None:
    first = create(store_dir, "read", "--prefix", "team-a/", "--name", "reader")
    second = create(store_dir, "admin")
    files = [p for p in store_dir.rglob("*") if p.is_file()]
    assert not any(first.encode() in p.read_bytes() or second.encode() in p.read_bytes()
                   for p in files)  # fmt: skip
    assert sorted(p.name for p in records_folder(store_dir).iterdir()) == sorted(
        [hash_token(first), hash_token(second)]
    )
    code, out, _ = run("token", "list", "--store", str(store_dir))
    assert code == 0
    assert out.splitlines() == [
        f"reader\tread\tteam-a\t{hash_token(first)[:12]}",
        f"token-2\tadmin\t*\t{hash_token(second)[:12]}",
    ]
    code, out, _ = run("token", "revoke", "--store", str(store_dir), hash_token(second)[:10])
    assert code == 0 and out.strip() == "revoked token-2"
    code, out, _ = run("token", "list", "--store", str(store_dir))
    assert [line.split("\t")[0] for line in out.splitlines()] == ["reader"]
    code, _, err = run("token", "revoke", "--store", str(store_dir), "token-2")
    assert code == 2 and "no token named 'token-2'" in err
    code, _, err = run("token", "create", "--store", str(store_dir), "--scope", "read",
                       "--name", "reader")  # fmt: skip
    assert code == 2 and "exists already" in err


def test_one_place_for_tokens(store_dir: Path, tmp_path: Path) -> None:
    both = ["--store", str(store_dir), "--config", str(tmp_path / "f.toml")]
    for args in (["token", "list"], ["token", "list", *both], ["token", "revoke", *both, "x"]):
        code, _, err = run(*args)
        assert code == 2 and "give one of --config FILE or --store STORE" in err
    code, _, err = run("token", "list", "--store", str(tmp_path / "missing"))
    assert code == 2 and "there is no store at" in err
    assert not (tmp_path / "missing").exists()


def test_a_server_honours_store_tokens_and_their_revocation(
    token_store: tuple[LiveServer, str], store_dir: Path
) -> None:
    server, token = token_store
    assert status(server, None) == 401
    assert status(server, token) == 200
    added = create(store_dir, "read")
    took = until(lambda: status(server, added) == 200, HONOURED_WITHIN_SECONDS)
    code, _, _ = run("token", "revoke", "--store", str(store_dir), "ci")
    assert code == 0
    took = max(took, until(lambda: status(server, token) == 401, HONOURED_WITHIN_SECONDS))
    assert status(server, added) == 200
    print(f"honoured within {took:.1f} s")


def test_an_open_server_locks_when_the_store_gets_a_token(store_dir: Path) -> None:
    live_server = start_server("--store", str(store_dir), "--port", "0", "--workers", "1")
    try:
        check_open_server_locks(live_server, store_dir)
    finally:
        live_server.stop()


def check_open_server_locks(live_server: LiveServer, store_dir: Path) -> None:
    assert status(live_server, None) == 200
    token = create(store_dir, "read")
    until(lambda: status(live_server, None) == 401, HONOURED_WITHIN_SECONDS)
    assert status(live_server, token) == 200
    run("token", "revoke", "--store", str(store_dir), hash_token(token)[:8])
    until(lambda: status(live_server, token) == 401, HONOURED_WITHIN_SECONDS)
    assert status(live_server, None) == 401  # revoking the last token locks it


def test_store_tokens_allow_listening_beyond_loopback(store_dir: Path) -> None:
    token = create(store_dir, "read")
    server = start_server("--store", str(store_dir), "--port", "0", "--host", "0.0.0.0")
    try:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(url + "/api/v1/files", timeout=10).status_code == 401
        assert requests.get(url + "/api/v1/files", headers=headers, timeout=10).ok
    finally:
        server.stop()


def test_a_store_whose_tokens_cannot_be_read_does_not_open(store_dir: Path) -> None:
    create(store_dir, "read")
    folder = records_folder(store_dir)
    folder.rename(store_dir.parent / "tokens-away")
    folder.write_text("not a folder")
    with pytest.raises(RuntimeError, match="cannot read the tokens kept in the store"):
        start_server("--store", str(store_dir), "--port", "0")


def test_unreadable_records_refuse_rather_than_trust(
    token_store: tuple[LiveServer, str], store_dir: Path
) -> None:
    server, token = token_store
    revoked = create(store_dir, "read", "--name", "old")
    until(lambda: status(server, revoked) == 200, HONOURED_WITHIN_SECONDS)
    run("token", "revoke", "--store", str(store_dir), "old")
    until(lambda: status(server, revoked) == 401, HONOURED_WITHIN_SECONDS)
    folder = records_folder(store_dir)
    folder.rename(store_dir.parent / "tokens-away")
    folder.write_text("not a folder")
    # Known tokens go on for a few seconds, then every token of the store gets a 503 until
    # the records can be read again; the revoked one is refused throughout, never served.
    seen: list[int] = []
    until(lambda: seen.append(status(server, revoked)) or status(server, token) == 503,
          STALE_SECONDS + HONOURED_WITHIN_SECONDS)  # fmt: skip
    assert 200 not in seen
    response = requests.get(
        server.url + "/api/v1/files", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 503
    assert response.json()["code"] == "store-unavailable"
    assert response.headers["Retry-After"] == "5"
    folder.unlink()
    (store_dir.parent / "tokens-away").rename(folder)
    until(lambda: status(server, token) == 200, HONOURED_WITHIN_SECONDS)
    assert status(server, revoked) == 401


def test_a_replaced_worker_does_not_take_the_server_down(
    token_store: tuple[LiveServer, str], store_dir: Path
) -> None:
    server, token = token_store
    folder = records_folder(store_dir)
    folder.rename(store_dir.parent / "tokens-away")
    folder.write_text("not a folder")
    worker = server.first_worker()
    os.kill(worker, signal.SIGKILL)
    # gunicorn starts another worker; it cannot read the tokens, so it refuses them (503)
    # instead of failing to boot, which would stop the whole server.
    until(lambda: server.first_worker() != worker, HONOURED_WITHIN_SECONDS)
    assert status(server, token) == 503
    assert status(server, None) == 503  # it cannot tell whether the server is open
    folder.unlink()
    (store_dir.parent / "tokens-away").rename(folder)
    until(lambda: status(server, token) == 200, HONOURED_WITHIN_SECONDS)
    assert server.process.poll() is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refresh_schedule(store_dir: Path) -> None:
    """When a worker re-reads, and how long it trusts what it read."""
    storage = LocalStorage(str(store_dir))
    token = create(store_dir, "read", "--name", "a")
    clock = Clock()
    tokens = StoreTokens(storage, str(store_dir), clock)
    assert [t.name for t in tokens.current()] == ["a"]
    run("token", "revoke", "--store", str(store_dir), "a")
    clock.now += REFRESH_SECONDS - 0.5
    assert [t.name for t in tokens.current()] == ["a"]
    clock.now += 0.5
    assert tokens.current() == ()
    create(store_dir, "read", "--name", "b")
    folder = records_folder(store_dir)
    os.rename(folder, store_dir.parent / "away")
    folder.write_text("x")
    clock.now += REFRESH_SECONDS  # the read fails: what was read last still holds
    assert tokens.current() == ()
    clock.now += STALE_SECONDS - REFRESH_SECONDS - 0.5
    assert tokens.current() == ()
    clock.now += 0.5
    with pytest.raises(StoreTokensUnavailable):
        tokens.current()
    folder.unlink()
    os.rename(store_dir.parent / "away", folder)
    clock.now += REFRESH_SECONDS
    assert [t.name for t in tokens.current()] == ["b"]
    assert hash_token(token) not in {t.hash for t in tokens.current()}


class SlowRecords(LocalStorage):
    """A local store whose token listing waits for `go` once `hold` is set."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.hold, self.go, self.reading = threading.Event(), threading.Event(), threading.Event()

    def list_records(self, prefix: str) -> Iterator[str]:
        if self.hold.is_set():
            self.reading.set()
            assert self.go.wait(30)
        return super().list_records(prefix)


def test_after_an_idle_spell_a_request_waits_for_the_re_read_rather_than_refusing(
    store_dir: Path,
) -> None:
    """Ten idle seconds mean nobody asked, not that the store is down: while one thread
    re-reads the tokens, another one waits for that read instead of answering 503."""
    storage = SlowRecords(str(store_dir))
    create(store_dir, "read", "--name", "a")
    clock = Clock()
    tokens = StoreTokens(storage, str(store_dir), clock)
    clock.now += STALE_SECONDS + 1  # idle
    storage.hold.set()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(tokens.current)  # re-reads, held inside the listing
        assert storage.reading.wait(30)
        second = pool.submit(tokens.current)  # must wait for that read, not refuse
        with pytest.raises(FutureTimeout):
            second.result(timeout=0.2)
        storage.go.set()
        assert [t.name for t in first.result(30)] == ["a"]
        assert [t.name for t in second.result(30)] == ["a"]


def test_token_commands_on_an_s3_store_take_its_endpoint(
    s3_env: Seaweed, s3_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FILEDOCK_S3_ENDPOINT", raising=False)
    store = ["--store", f"s3://{BUCKET}/{s3_prefix}", "--s3-endpoint", s3_env.endpoint]
    code, out, err = run("token", "create", *store, "--scope", "read", "--name", "on-s3")
    assert code == 0, err
    token = out.strip()
    code, out, _ = run("token", "list", *store)
    assert code == 0 and out.startswith(f"on-s3\tread\t*\t{hash_token(token)[:12]}")
    code, out, _ = run("token", "revoke", *store, "on-s3")
    assert code == 0 and out.strip() == "revoked on-s3"
    assert run("token", "list", *store)[1] == ""
