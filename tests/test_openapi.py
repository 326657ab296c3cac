"""The OpenAPI document: valid, in step with the URL map, and true to what the server answers."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.test import TestResponse

API = "/api/v1"
DIGEST = "sha-256=:AAAA:"  # well-formed, wrong
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json
    return document


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def openapi_path(rule: str) -> str:
    """A Werkzeug rule as an OpenAPI path: an <anypath:...> argument (an object's path) is
    {path}, any other <x> is {x}."""
    return re.sub(
        r"<(?:([^:<>]+):)?([^<>]+)>",
        lambda m: "{path}" if m[1] == "anypath" else f"{{{m[2]}}}",
        rule,
    )


# Rules that are not endpoints of the API: Flask's static folder, which holds the assets of
# the /docs page (the page itself is documented).
NOT_ENDPOINTS = {"static"}


def served_operations(app: Flask) -> dict[str, set[str]]:
    """Every route of the app as {OpenAPI path: methods} (OPTIONS aside: CORS answers it)."""
    served: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_ENDPOINTS:
            continue
        methods = {m.lower() for m in rule.methods or ()} - {"options"}
        served.setdefault(openapi_path(rule.rule), set()).update(methods)
    return served


def documented_operations(spec: dict[str, Any]) -> dict[str, set[str]]:
    return {
        path: {key for key in item if key in METHODS} - {"options"}
        for path, item in spec["paths"].items()
    }


def test_every_route_is_in_the_document(app: Flask, spec: dict[str, Any]) -> None:
    served, documented = served_operations(app), documented_operations(spec)
    assert {"/healthz", "/readyz", "/metrics", "/uploadFiles", "/docs"} <= set(served)
    assert "/getJsonFromFile/{path}" in served
    missing = {
        path: methods - documented.get(path, set())
        for path, methods in served.items()
        if methods - documented.get(path, set())
    }
    assert missing == {}


def test_everything_documented_is_served(app: Flask, spec: dict[str, Any]) -> None:
    served, documented = served_operations(app), documented_operations(spec)
    extra = {
        path: methods - served.get(path, set())
        for path, methods in documented.items()
        if methods - served.get(path, set())
    }
    assert extra == {}


def test_whoami_the_page_and_json_patch_are_documented(spec: dict[str, Any]) -> None:
    whoami = spec["paths"]["/api/v1/whoami"]["get"]["responses"]["200"]["content"]
    schema = {**whoami["application/json"]["schema"], "components": spec["components"]}
    validator = Draft202012Validator(schema)
    validator.validate({"anonymous": True, "scopes": ["read", "write", "admin"],
                        "prefix": None, "name": None})  # fmt: skip
    assert not validator.is_valid({"anonymous": True, "scopes": ["read"]})
    assert "text/html" in spec["paths"]["/"]["get"]["responses"]["200"]["content"]
    patch = spec["paths"]["/api/v1/json/{path}"]["patch"]["requestBody"]["content"]
    assert set(patch) == {
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/json",
    }


def test_every_operation_describes_problem_json_errors(spec: dict[str, Any]) -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, item in spec["paths"].items():
        for method in (METHODS & set(item)) - {"head"}:  # HEAD answers carry no body
            operation = item[method]
            responses = operation["responses"]
            default = responses["default"]["content"]["application/problem+json"]["schema"]
            assert default == problem, (method, path)
            if "compatibility" in operation.get("tags", ()):
                continue  # the original's error shape, by contract (API.md section 6)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in response["content"], (status, path)


# The reason phrases the server sends as a problem's title: HTTP's, and tus's for 460.
PHRASES = HTTP_STATUS_CODES | {460: "Checksum Mismatch"}


def media_examples(media: dict[str, Any]) -> list[Any]:
    """The examples of a media type object: `example`, and each of `examples`."""
    found = [media["example"]] if "example" in media else []
    found += [item["value"] for item in media.get("examples", {}).values()]
    return found


def test_every_example_is_right(spec: dict[str, Any]) -> None:
    """Each response example fits its schema; a problem's carries its own status, that
    status's reason phrase as title, and a known code. Every problem response with a status
    has one (else a docs page makes one up, the same for every status)."""
    checked = problems = 0
    for path, item in spec["paths"].items():
        for method in METHODS & set(item):
            for status, response in item[method]["responses"].items():
                for media_type, media in response.get("content", {}).items():
                    examples = media_examples(media)
                    is_problem = media_type == "application/problem+json"
                    if is_problem and status.isdigit():
                        assert examples, (method, path, status)
                    for example in examples:
                        where = (method, path, status, media_type)
                        if media_type.endswith("json"):
                            schema = {**media["schema"], "components": spec["components"]}
                            Draft202012Validator(schema).validate(example)
                        else:
                            assert isinstance(example, str), where
                        checked += 1
                        if is_problem:
                            problems += 1
                            assert example["status"] == int(status), where
                            assert example["title"] == PHRASES[int(status)], where
                            assert example["code"] in API_CODES, where
    assert checked > 50 and problems > 40
    # The shared schema names no status, title or code of its own: it stands for all of them.
    assert "example" not in json.dumps(spec["components"]["schemas"]["Problem"])


# The stable codes of API.md section 2, and /readyz's not-ready.
API_CODES = {
    "invalid-path", "not-found", "conflict", "exists", "too-large", "precondition-failed",
    "digest-mismatch", "invalid-json", "invalid-patch", "patch-test-failed",
    "pointer-not-found", "unsupported-media-type", "range-not-satisfiable", "unauthorized",
    "forbidden", "method-not-allowed", "insufficient-storage", "read-only", "bad-request",
    "internal", "not-ready",
}  # fmt: skip


def operation_for(spec: dict[str, Any], method: str, url: str) -> dict[str, Any]:
    path = url.split("?", 1)[0]
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", ".+", re.escape(template)) + "$"
        if re.match(pattern, path):
            operation: dict[str, Any] = item[method.lower()]
            return operation
    raise AssertionError(f"{method} {url} is not in the document")


def check_conforms(spec: dict[str, Any], method: str, url: str, response: TestResponse) -> None:
    """The response's status, media type and body are what the document says."""
    responses = operation_for(spec, method, url)["responses"]
    described = responses.get(str(response.status_code), responses["default"])
    if method == "HEAD" or response.status_code in (204, 304):
        assert response.data == b""
        return
    content = described.get("content", {})
    media = response.mimetype
    assert media in content or "*/*" in content, (method, url, response.status_code, media)
    if media in content and media.endswith("json"):
        schema = {**content[media]["schema"], "components": spec["components"]}
        Draft202012Validator(schema).validate(response.json)


def test_responses_conform_to_the_document(client: FlaskClient, spec: dict[str, Any]) -> None:
    form = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="m.txt"\r\n\r\nm\r\n'
        b"--b--\r\n"
    )
    form_type = "multipart/form-data; boundary=b"
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", f"{API}/files/a/x.txt", {"data": b"hello"}),
        ("PUT", f"{API}/files/a/x.txt", {"data": b"hello again"}),
        ("PUT", f"{API}/files/a/x.txt/under", {"data": b"x"}),
        ("PUT", f"{API}/files/a/x.txt", {"data": b"x", "headers": {"If-Match": '"no"'}}),
        ("PUT", f"{API}/files/d.txt", {"data": b"x", "headers": {"Content-Digest": DIGEST}}),
        ("PUT", f"{API}/files/../x", {"data": b"x"}),
        ("GET", f"{API}/files", {}),
        ("GET", f"{API}/files?limit=1", {}),
        ("GET", f"{API}/files?limit=0", {}),
        ("GET", f"{API}/files?prefix=../", {}),
        ("GET", f"{API}/files/a/x.txt", {}),
        ("HEAD", f"{API}/files/a/x.txt", {}),
        ("GET", f"{API}/files/a/x.txt", {"headers": {"Range": "bytes=0-1"}}),
        ("GET", f"{API}/files/a/x.txt", {"headers": {"Range": "bytes=99-"}}),
        ("GET", f"{API}/files/a/x.txt", {"headers": {"If-None-Match": "*"}}),
        ("GET", f"{API}/files/missing", {}),
        ("GET", f"{API}/meta/a/x.txt", {}),
        ("GET", f"{API}/meta/missing", {}),
        ("POST", f"{API}/files", {"data": form, "content_type": form_type}),
        ("POST", f"{API}/files", {"data": form, "content_type": form_type}),
        ("POST", f"{API}/files", {"data": b"{}", "content_type": "application/json"}),
        ("POST", f"{API}/files", {"data": b"--b\r\n", "content_type": form_type}),
        ("DELETE", f"{API}/files/a/x.txt", {}),
        ("DELETE", f"{API}/files/a/x.txt", {}),
        ("GET", f"{API}/openapi.json", {}),
        ("HEAD", f"{API}/meta/m.txt", {}),
        ("HEAD", f"{API}/files?prefix=m", {}),
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),
        ("GET", "/metrics", {}),
        ("GET", "/docs", {}),
        ("GET", "/getJsonFromFile/missing.json", {}),
        ("GET", "/getJsonFromFile/", {}),
        ("GET", "/getJsonFromFile/a/../b", {}),
        ("POST", "/uploadFiles", {"data": b"{}", "content_type": "application/json"}),
    ]  # fmt: skip
    statuses = set()
    for method, url, kwargs in requests:
        response = client.open(url, method=method, buffered=True, **kwargs)
        statuses.add(response.status_code)
        check_conforms(spec, method, url, response)
    assert statuses >= {200, 201, 204, 206, 304, 400, 404, 409, 412, 415, 416}


class AssetParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "data-spec-url") and value:
                self.urls.append(value)


def test_docs_page_uses_only_local_assets(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    parser = AssetParser()
    parser.feed(page.get_data(as_text=True))
    assert len(parser.urls) >= 4  # stylesheet, bundle, starter, spec
    for url in parser.urls:
        if url.startswith("data:"):  # inline, fetched from nowhere
            continue
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url, buffered=True)
        assert asset.status_code == 200, url
        assert len(asset.data) > 100, url
    starter = client.get("/static/docs/docs.js", buffered=True).get_data(as_text=True)
    assert "validatorUrl: null" in starter  # no badge fetched from elsewhere
    static = Path(__file__).resolve().parent.parent / "src" / "filedock" / "static" / "docs"
    assert (static / "LICENSE").is_file()
    with open(static / "swagger-ui-bundle.js", encoding="utf-8") as bundle:
        assert "SwaggerUIBundle" in bundle.read()
