"""A listing describes (and so hashes) only the objects it returns (API.md sections 4 and 8).

Files put into a local store by hand are hashed on first use, and the store keeps each hash
in a record under .filedock/meta/: counting those records shows which files were hashed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from filedock.app import create_app
from filedock.auth import hash_token
from filedock.config import Settings, Token

API = "/api/v1"
TOKENS = (
    Token(hash_token("team-a-reader"), ("read",), "team-a", "team-a reader"),
    Token(hash_token("everything"), ("read",), "", "reader"),
    Token(hash_token("one-file"), ("read",), "team-c", "team-c reader"),
)
TEAM_A = [f"team-a/{name}" for name in ("a.txt", "b/c.txt", "b/d.txt", "e.json", "z.bin")]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hashed(store: Path) -> int:
    """How many files the store has hashed (one metadata record each)."""
    meta = store / ".filedock" / "meta"
    return sum(1 for path in meta.rglob("*.json")) if meta.exists() else 0


@pytest.fixture(scope="module")
def by_hand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three thousand files as someone put them in a folder, five of them under team-a."""
    folder = tmp_path_factory.mktemp("by-hand")
    for team, count in (("team-b", 1500), ("team-ab", 1000), ("other", 495)):
        for i in range(count):
            path = folder / team / f"{i % 20:02d}" / f"{i:05d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{team} {i}".encode())
    for key in TEAM_A:
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(key.encode())
    (folder / "team-a.txt").write_bytes(b"beside team-a, not in it")
    return folder


@pytest.fixture
def client(by_hand: Path, store_dir: Path) -> FlaskClient:
    # the files linked, not copied, into each test's own store (whose hashes start empty)
    shutil.copytree(by_hand, store_dir, copy_function=os.link, dirs_exist_ok=True)
    return create_app(Settings(store=str(store_dir), tokens=TOKENS)).test_client()


def paths(response: object) -> list[str]:
    return [item["path"] for item in response.json["items"]]  # type: ignore[attr-defined]


def test_a_prefixed_tokens_listing_hashes_only_what_it_may_read(
    client: FlaskClient, store_dir: Path
) -> None:
    for prefix in ("", "t", "team-a", "team-a/"):
        query = {"prefix": prefix}
        response = client.get(f"{API}/files", query_string=query, headers=auth("team-a-reader"))
        assert response.status_code == 200
        assert paths(response) == sorted(TEAM_A)
        assert response.json["next_cursor"] is None
        assert hashed(store_dir) == len(TEAM_A)


def test_a_prefixed_token_sees_nothing_outside_its_prefix(
    client: FlaskClient, store_dir: Path
) -> None:
    for prefix in ("team-ab", "team-b", "other/", "team-a.txt", "team-a."):
        query = {"prefix": prefix}
        response = client.get(f"{API}/files", query_string=query, headers=auth("team-a-reader"))
        assert response.status_code == 200
        assert response.json == {"items": [], "next_cursor": None}
        assert hashed(store_dir) == 0


def test_pages_hash_only_what_they_return(client: FlaskClient, store_dir: Path) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        response = client.get(f"{API}/files", query_string=query, headers=auth("team-a-reader"))
        seen += paths(response)
        assert hashed(store_dir) == len(seen)  # not the first object of the next page
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(TEAM_A)


def test_a_whole_store_listing_hashes_one_page(client: FlaskClient, store_dir: Path) -> None:
    response = client.get(f"{API}/files", query_string={"limit": "7"}, headers=auth("everything"))
    assert len(paths(response)) == 7 and response.json["next_cursor"] is not None
    assert hashed(store_dir) == 7
    response = client.get(
        f"{API}/files", query_string={"prefix": "team-a"}, headers=auth("everything")
    )
    # the whole-store reader sees team-a.txt and team-ab/ too (in key order: '.' < '/' < 'b')
    assert paths(response)[:6] == ["team-a.txt", *sorted(TEAM_A)]
    assert paths(response)[6].startswith("team-ab/")
    assert len(paths(response)) == 100


def test_a_token_whose_prefix_is_a_file_lists_that_file(
    client: FlaskClient, store_dir: Path
) -> None:
    (store_dir / "team-c").write_bytes(b"one file")
    (store_dir / "team-c.bak").write_bytes(b"beside it")
    (store_dir / "team-cd").mkdir()
    (store_dir / "team-cd" / "x").write_bytes(b"beside it")
    for prefix in ("", "team", "team-c"):
        query = {"prefix": prefix}
        response = client.get(f"{API}/files", query_string=query, headers=auth("one-file"))
        assert paths(response) == ["team-c"] and response.json["next_cursor"] is None
    assert hashed(store_dir) == 1
    after = client.get(
        f"{API}/files", query_string={"cursor": "dGVhbS1j"}, headers=auth("one-file")
    )  # the cursor after team-c
    assert after.json == {"items": [], "next_cursor": None}
