"""Plain JSON document GETs are answered in front of the framework (hotpath.py): the same
answer as the app's, for the same callers, and every other request is the app's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask, request_started
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from filedock.app import create_app
from filedock.auth import hash_token
from filedock.config import Settings, Token
from tests.api.test_operations import JSON_RULE, scrape, value
from tests.conftest import LiveServer, start_server

URL = "/api/v1/json/"
DOCS = {
    "labels.json": b'{"ironman": "1", "thanos": "snapItAll"}',
    "models/v1/list.json": b"[1, 2.5, null, true]",
    "caf\u00e9/\u00e9t\u00e9.json": '{"saison": "\u00e9t\u00e9"}'.encode(),
    "empty.json": b'""',
}
PER_REQUEST = {"Date", "X-Request-ID"}


@pytest.fixture
def docs(store_dir: Path) -> dict[str, bytes]:
    for key, data in DOCS.items():
        (store_dir / key).parent.mkdir(parents=True, exist_ok=True)
        (store_dir / key).write_bytes(data)
    (store_dir / "broken.json").write_bytes(b'{"a": ')
    return DOCS


def quote(key: str) -> str:
    return requests.utils.quote(key, safe="/")


def comparable(response: TestResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.items() if k not in PER_REQUEST]
    return response.status_code, headers, response.get_data()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "https://app.example"},
        {"X-Request-ID": "client-chosen-id-42"},
        {"Accept": "application/json", "Accept-Encoding": "gzip"},
    ],
    ids=["bare", "origin", "request-id", "accept"],
)
def test_a_plain_get_is_the_apps_answer_made_without_the_app(
    client: FlaskClient, docs: dict[str, bytes], app_requests: list[str], headers: dict[str, str]
) -> None:
    for key, data in docs.items():
        fast = client.get(URL + quote(key), headers=headers)
        assert app_requests == [], f"{key} went through the app"
        full = client.get(URL + quote(key) + "?unused=1", headers=headers)  # the app's own
        assert app_requests, "a query string must go to the app"
        app_requests.clear()
        assert fast.status_code == 200 and fast.get_data() == data
        assert comparable(fast) == comparable(full)
        if "X-Request-ID" in headers:
            assert fast.headers["X-Request-ID"] == headers["X-Request-ID"]
        else:
            assert len(fast.headers["X-Request-ID"]) == 32
            assert fast.headers["X-Request-ID"] != full.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("labels.json", {"If-None-Match": "*"}, 304),
        ("labels.json?pointer=/thanos", {}, 200),
        ("labels.json", {"Range": "bytes=0-3"}, 200),
        ("labels.json", {"X-HTTP-Method-Override": "DELETE"}, 200),
        ("missing.json", {}, 404),
        ("broken.json", {}, 422),
        ("a/../labels.json", {}, 400),
        ("labels.json/", {}, 400),
    ],
)
def test_every_other_get_is_the_apps(
    client: FlaskClient,
    docs: dict[str, bytes],
    app_requests: list[str],
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    response = client.get(URL + path, headers=headers)
    assert response.status_code == status, response.data
    assert len(app_requests) == 1


def test_a_head_and_a_get_with_a_body_are_the_apps(
    client: FlaskClient, docs: dict[str, bytes], app_requests: list[str]
) -> None:
    assert client.head(URL + "labels.json").status_code == 200
    assert client.get(URL + "labels.json", data=b"{}").status_code == 200
    assert len(app_requests) == 2


def test_a_change_is_served_at_once(
    client: FlaskClient, docs: dict[str, bytes], store_dir: Path
) -> None:
    first = client.get(URL + "labels.json")
    (store_dir / "labels.json").write_bytes(b'{"changed": "by hand"}')
    second = client.get(URL + "labels.json")
    assert second.get_data() == b'{"changed": "by hand"}'
    assert second.headers["ETag"] != first.headers["ETag"]
    client.put(URL + "labels.json", data=b'{"changed": "by PUT"}')
    assert client.get(URL + "labels.json").json == {"changed": "by PUT"}


def test_plain_gets_are_counted_like_the_others(
    client: FlaskClient, docs: dict[str, bytes]
) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get(URL + "labels.json").status_code == 200
    assert client.get(URL + "labels.json?unused=1").status_code == 200
    after = scrape(client)
    count = {
        "name": "filedock_requests_total",
        "route": JSON_RULE,
        "method": "GET",
        "status": "200",
    }
    assert value(after, **count) - value(before, **count) == 4
    sent = value(after, "filedock_sent_bytes_total") - value(before, "filedock_sent_bytes_total")
    assert sent == 4 * len(DOCS["labels.json"]) + len(before.encode())


TOKENS = (
    Token(hash_token("reader-secret"), ("read",), name="reader"),
    Token(hash_token("team-secret"), ("read",), "models", "team"),
    Token(hash_token("writer-secret"), ("write",), name="writer"),
)


@pytest.fixture
def token_app(store_dir: Path, docs: dict[str, bytes]) -> Flask:
    return create_app(Settings(store=str(store_dir), tokens=TOKENS))


@pytest.mark.parametrize(
    ("authorization", "path", "status", "by_app"),
    [
        ("Bearer reader-secret", "labels.json", 200, False),
        ("Bearer team-secret", "models/v1/list.json", 200, False),
        ("Bearer team-secret", "labels.json", 403, True),
        ("Bearer writer-secret", "labels.json", 403, True),
        ("Bearer unknown-secret", "labels.json", 401, True),
        ("Bearer", "labels.json", 401, True),
        ("Digest abc", "labels.json", 401, True),
        (None, "labels.json", 401, True),
    ],
)
def test_with_tokens_only_a_caller_the_app_lets_read_is_answered_in_front(
    token_app: Flask, authorization: str | None, path: str, status: int, by_app: bool
) -> None:
    seen: list[str] = []
    request_started.connect(lambda sender, **extra: seen.append("app"), token_app, weak=False)
    headers = {"Authorization": authorization} if authorization else {}
    response = token_app.test_client().get(URL + path, headers=headers)
    assert response.status_code == status, response.data
    assert bool(seen) == by_app
    if status != 200:
        assert response.mimetype == "application/problem+json"


def test_with_listed_origins_the_app_answers_everything(
    store_dir: Path, docs: dict[str, bytes]
) -> None:
    app = create_app(Settings(store=str(store_dir), cors_origins=("https://app.example",)))
    seen: list[str] = []
    request_started.connect(lambda sender, **extra: seen.append("app"), app, weak=False)
    response = app.test_client().get(URL + "labels.json", headers={"Origin": "https://app.example"})
    assert response.status_code == 200 and seen == ["app"]
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in response.headers["Vary"]


@pytest.fixture
def server(store_dir: Path, docs: dict[str, bytes]) -> Iterator[LiveServer]:
    live = start_server("--store", str(store_dir), "--port", "0")
    yield live
    live.stop()


def test_through_the_server_both_paths_send_the_same_bytes(server: LiveServer) -> None:
    def strip(response: requests.Response) -> list[tuple[str, str]]:
        return [(k, v) for k, v in response.headers.items() if k not in PER_REQUEST]

    with requests.Session() as session:
        for key, data in DOCS.items():
            for prefix in (URL, "/getJsonFromFile/"):
                full = session.get(server.url + prefix + quote(key) + "?unused=1")
                fast = session.get(server.url + prefix + quote(key))
                assert fast.status_code == full.status_code == 200
                assert fast.content == full.content
                assert strip(fast) == strip(full)
            assert session.get(server.url + URL + quote(key)).content == data


def test_the_original_endpoint_is_answered_in_front_too(
    client: FlaskClient, docs: dict[str, bytes], app_requests: list[str]
) -> None:
    full = client.get("/getJsonFromFile/labels.json?unused=1")  # the app's (and caches it)
    fast = client.get("/getJsonFromFile/labels.json")
    assert app_requests == ["/getJsonFromFile/labels.json?unused=1"]
    assert fast.json == {"STATUS": "true", "LABELS_MAPPING": json.loads(DOCS["labels.json"])}
    assert comparable(fast) == comparable(full)
    for path, status in [
        ("missing.json", 404),
        ("broken.json", 422),
        ("a/../x.json", 400),
        ("", 400),
    ]:
        assert client.get("/getJsonFromFile/" + path).status_code == status
    assert len(app_requests) == 5
    changed = b'{"new": "labels"}'
    client.put(URL + "labels.json", data=changed)
    assert client.get("/getJsonFromFile/labels.json").json["LABELS_MAPPING"] == {"new": "labels"}
