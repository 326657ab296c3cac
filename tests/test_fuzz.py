"""Property-based fuzzing of every documented endpoint from the app's own OpenAPI document.

schemathesis reads /api/v1/openapi.json from the WSGI app, then for every operation generates
requests that fit the document and requests that break it (its examples, coverage and fuzzing
phases), and checks each answer: never a 5xx, a documented status and content type, and a body
and headers that match the documented schema. The run is bounded and derandomized, so CI sees
the same requests every time.

`{path}` parameters hold slashes: schemathesis sends them percent-encoded (`%2F`), and since the
server decodes the URL path exactly once (API.md section 1), that reaches the app as a real
separator, so generated paths exercise the path rules rather than the router."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks

from filedock.app import create_app
from filedock.auth import hash_token
from filedock.config import Settings, Token
from tests.hostile import SENTINEL

# tus chunks are raw bytes, like application/octet-stream bodies.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

MAX_EXAMPLES = 30
TOKEN = "fuzz-admin-token"
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
# Objects in the store before the run, so that generated requests also reach existing ones.
SEEDED = {
    "doc.json": b'{"a": [1, {"b": "c"}], "n": null, "s": "x"}',
    "dir/list.json": b"[1, 2, 3]",
    "bin/bytes.bin": bytes(range(256)),
    "page.html": b"<script>alert(1)</script>",
}

# A fresh temporary store for this run (the schemas are built when the tests are collected).
ROOT = Path(tempfile.mkdtemp(prefix="filedock-fuzz-"))


def make_store(name: str) -> Path:
    """A store folder under ROOT with the seeded objects and a sentinel beside it."""
    base = ROOT / name
    store = base / "store"
    store.mkdir(parents=True)
    (base / "sentinel.json").write_text(SENTINEL)
    for key, data in SEEDED.items():
        (store / key).parent.mkdir(parents=True, exist_ok=True)
        (store / key).write_bytes(data)
    return store


def load_schema(store: Path, **options: Any) -> Any:
    """The app's own OpenAPI document, read through the WSGI app."""
    app = create_app(
        Settings(store=str(store), max_upload_bytes=1 << 20, max_json_bytes=64 << 10, **options)
    )
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


OPEN_STORE = make_store("open")
TOKEN_STORE = make_store("token")
open_schema = load_schema(OPEN_STORE)
token_schema = load_schema(
    TOKEN_STORE, tokens=(Token(hash_token(TOKEN), ("admin",), name="admin"),)
)


def steer_to_seeded(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Keep the generated `path`, or aim the request at one of the seeded objects."""
    if not isinstance(path_parameters, dict) or "path" not in path_parameters:
        return st.just(path_parameters)
    seeded = [path_parameters | {"path": quote(key, safe="")} for key in SEEDED]
    return st.sampled_from([path_parameters, *seeded])


for _schema in (open_schema, token_schema):
    _schema.hook("flatmap_path_parameters")(steer_to_seeded)

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", autouse=True)
def remove_the_stores() -> Iterator[None]:
    yield
    shutil.rmtree(ROOT, ignore_errors=True)


@open_schema.parametrize()
@FUZZ_SETTINGS
def test_open_server(case: Any) -> None:
    """No tokens configured: every request is served."""
    case.call_and_validate(checks=CHECKS, buffered=True)


@token_schema.parametrize()
@FUZZ_SETTINGS
def test_server_with_a_token(case: Any) -> None:
    """Tokens configured, and the client sends an admin token."""
    case.call_and_validate(
        checks=CHECKS, headers={"Authorization": f"Bearer {TOKEN}"}, buffered=True
    )


def tree(root: Path) -> list[str]:
    """Every file and folder under root, relative to it."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_fuzzing_stayed_inside_the_stores() -> None:
    """Whatever was generated, nothing was written beside the stores and no sentinel changed."""
    for store in (OPEN_STORE, TOKEN_STORE):
        assert (store.parent / "sentinel.json").read_text() == SENTINEL
        assert [p for p in tree(store.parent) if not p.startswith("store")] == ["sentinel.json"]
    assert sorted(os.listdir(ROOT)) == ["open", "token"]
