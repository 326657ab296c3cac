"""Plain raw uploads (PUT /api/v1/files/<key>) are answered in front of the framework
(hotpath.py): the same answer as the app's, for the same callers; everything else, refusals
and errors included, is the app's answer."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import request_started
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from filedock.app import create_app
from filedock.auth import hash_token
from filedock.config import Settings, Token
from tests.api.test_document_gets import quote
from tests.api.test_operations import FILE_RULE, scrape, value
from tests.conftest import LiveServer, start_server

URL = "/api/v1/files/"
KEYS = [
    "plain.bin",
    "models/v1/weights.bin",
    "caf\u00e9/\u00e9t\u00e9 d'hiver.txt",
    "odd !$&'()*+,;=@~ name.json",
    "100%/#hash?.png",
]
PER_REQUEST = {"Date", "X-Request-ID"}


def comparable(response: TestResponse) -> tuple[int, list[tuple[str, str]], dict[str, object]]:
    """Status, headers and body, less what differs from one request to the next."""
    headers = [(k, v) for k, v in response.headers.items() if k not in PER_REQUEST]
    body = json.loads(response.get_data()) if response.get_data() else {}
    body.pop("modified", None)  # the file's own time (to the second)
    return response.status_code, headers, body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "text/plain; charset=utf-8"},
        {"Content-Type": "application/octet-stream", "Origin": "https://app.example"},
        {"X-Request-ID": "client-chosen-id-42"},
    ],
    ids=["bare", "typed", "origin", "request-id"],
)
def test_a_plain_put_is_the_apps_answer_made_without_the_app(
    client: FlaskClient, app_requests: list[str], store_dir: Path, headers: dict[str, str]
) -> None:
    for key in KEYS:
        data = os.urandom(3000)
        answers = []
        for query in ("?unused=1", "", "?unused=1", ""):  # the app's, in front, each 201, 200
            if len(answers) == 3:
                assert client.delete(URL + quote(key)).status_code == 204
                app_requests.clear()
            response = client.put(URL + quote(key) + query, data=data, headers=headers)
            assert bool(app_requests) == bool(query), f"{key}{query}: wrong path"
            app_requests.clear()
            answers.append(response)
        created_by_app, replaced_in_front, replaced_by_app, created_in_front = answers
        assert created_by_app.status_code == created_in_front.status_code == 201
        assert comparable(created_in_front) == comparable(created_by_app)
        assert replaced_in_front.status_code == replaced_by_app.status_code == 200
        assert comparable(replaced_in_front) == comparable(replaced_by_app)
        assert (store_dir / key).read_bytes() == data
        assert created_in_front.json["modified"].endswith("Z")
        if "X-Request-ID" in headers:
            assert created_in_front.headers["X-Request-ID"] == headers["X-Request-ID"]
        else:
            assert len(created_in_front.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("a.bin?unused=1", {}, 201),
        ("a.bin", {"If-None-Match": "*"}, 201),
        ("a.bin", {"If-Match": '"0000"'}, 412),
        ("a.bin", {"Content-Digest": "sha-256=:AAAA:"}, 400),
        ("a.bin", {"X-HTTP-Method-Override": "DELETE"}, 201),
        ("a/../a.bin", {}, 400),
        ("a.bin/", {}, 400),
        (".filedock/x.bin", {}, 400),
    ],
)
def test_every_other_put_is_the_apps(
    client: FlaskClient,
    app_requests: list[str],
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    response = client.put(URL + path, data=b"data", headers=headers)
    assert response.status_code == status, response.data
    assert len(app_requests) == 1


def test_a_body_larger_than_allowed_is_refused_by_the_app(store_dir: Path) -> None:
    app = create_app(Settings(store=str(store_dir), max_upload_bytes=100))
    seen: list[str] = []
    request_started.connect(lambda sender, **extra: seen.append("app"), app, weak=False)
    client = app.test_client()
    assert client.put(URL + "small.bin", data=b"x" * 100).status_code == 201
    assert seen == []
    response = client.put(URL + "big.bin", data=b"x" * 101)
    assert response.status_code == 413 and seen == ["app"]
    assert not (store_dir / "big.bin").exists()


def test_a_symlink_out_of_the_store_is_refused_and_nothing_is_written(
    client: FlaskClient, store_dir: Path
) -> None:
    (store_dir / "escape").symlink_to(store_dir.parent)
    response = client.put(URL + "escape/sentinel.json", data=b'{"secret": "overwritten"}')
    assert response.status_code == 404, response.data
    assert json.loads((store_dir.parent / "sentinel.json").read_text()) == {"secret": "sentinel"}


def test_an_error_while_storing_is_the_apps_answer(
    client: FlaskClient, app_requests: list[str], store_dir: Path
) -> None:
    """A parent that is a file shows only at the commit, the body read: the app's error
    handlers and after-request hooks answer it, as they answer the same request in full."""
    (store_dir / "file").write_bytes(b"a file, not a folder")
    in_front = client.put(URL + "file/child.bin", data=b"data", headers={"X-Request-ID": "abc"})
    assert app_requests == []
    by_app = client.put(URL + "file/child.bin?unused=1", data=b"data")
    assert in_front.status_code == by_app.status_code == 409
    assert in_front.mimetype == "application/problem+json"
    assert in_front.headers["X-Request-ID"] == "abc"
    assert comparable(in_front) == comparable(by_app)
    assert (store_dir / "file").read_bytes() == b"a file, not a folder"


def test_plain_puts_are_counted_like_the_others(client: FlaskClient) -> None:
    before = scrape(client)
    for i in range(3):
        assert client.put(URL + f"n{i}.bin", data=b"x" * 1000).status_code == 201
    assert client.put(URL + "n0.bin?unused=1", data=b"y" * 1000).status_code == 200
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("filedock_requests_total", route=FILE_RULE, method="PUT", status="201") == 3
    assert grew("filedock_requests_total", route=FILE_RULE, method="PUT", status="200") == 1
    assert grew("filedock_received_bytes_total") == 4000
    assert grew("filedock_upload_seconds_count", route=FILE_RULE) == 4


TOKENS = (
    Token(hash_token("writer-secret"), ("write",), name="writer"),
    Token(hash_token("team-secret"), ("read", "write"), "models", "team"),
    Token(hash_token("reader-secret"), ("read",), name="reader"),
)


@pytest.mark.parametrize(
    ("authorization", "path", "status", "by_app"),
    [
        ("Bearer writer-secret", "labels.bin", 201, False),
        ("Bearer team-secret", "models/v1/w.bin", 201, False),
        ("Bearer team-secret", "labels.bin", 403, True),
        ("Bearer reader-secret", "labels.bin", 403, True),
        ("Bearer unknown-secret", "labels.bin", 401, True),
        (None, "labels.bin", 401, True),
    ],
)
def test_with_tokens_only_a_caller_the_app_lets_write_is_answered_in_front(
    store_dir: Path, authorization: str | None, path: str, status: int, by_app: bool
) -> None:
    app = create_app(Settings(store=str(store_dir), tokens=TOKENS))
    seen: list[str] = []
    request_started.connect(lambda sender, **extra: seen.append("app"), app, weak=False)
    headers = {"Authorization": authorization} if authorization else {}
    response = app.test_client().put(URL + path, data=b"data", headers=headers)
    assert response.status_code == status, response.data
    assert bool(seen) == by_app
    assert (store_dir / path).exists() == (status == 201)


@pytest.mark.parametrize(
    "settings",
    [{"read_only": True}, {"cors_origins": ("https://app.example",)}],
    ids=["read-only", "listed-origins"],
)
def test_the_app_answers_every_put_when_it_must(
    store_dir: Path, settings: dict[str, object]
) -> None:
    app = create_app(Settings(store=str(store_dir), **settings))  # type: ignore[arg-type]
    seen: list[str] = []
    request_started.connect(lambda sender, **extra: seen.append("app"), app, weak=False)
    response = app.test_client().put(URL + "a.bin", data=b"data")
    assert seen == ["app"]
    assert response.status_code == (403 if settings.get("read_only") else 201)


@pytest.fixture
def server(store_dir: Path) -> Iterator[LiveServer]:
    live = start_server("--store", str(store_dir), "--port", "0")
    yield live
    live.stop()


def test_through_the_server_both_paths_send_the_same_bytes(
    server: LiveServer, store_dir: Path
) -> None:
    def strip(response: requests.Response) -> tuple[int, list[tuple[str, str]], dict[str, object]]:
        headers = [(k, v) for k, v in response.headers.items() if k not in PER_REQUEST]
        body = response.json()
        body.pop("modified")
        return response.status_code, headers, body

    with requests.Session() as session:
        for key in KEYS:
            data = os.urandom(200_000)
            url = server.url + URL + quote(key)
            full = session.put(url + "?unused=1", data=data)
            fast = session.put(url, data=data)
            assert full.status_code == 201 and fast.status_code == 200
            assert strip(fast) == (200, *strip(full)[1:])
            assert session.get(url).content == data == (store_dir / key).read_bytes()
