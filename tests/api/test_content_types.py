"""The type an object is stored and served with (API.md section 3), on every way in: the
declared type counts when it is one type/subtype other than application/octet-stream, else
the type is guessed from the extension (application/octet-stream only when it says nothing)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_files import buffered

API = "/api/v1"
TUS = {"Tus-Resumable": "1.0.0"}
BODY = b"\xff\xd8\xff\xe0 not really a jpeg"


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return buffered(app)  # each download read whole and closed


# (name, declared type or None for none, the type stored and served)
CASES = [
    ("cat.jpg", "application/octet-stream", "image/jpeg"),  # the generic type: guessed
    ("cat.jpg", "Application/Octet-Stream; charset=binary", "image/jpeg"),
    ("cat.jpg", None, "image/jpeg"),
    ("cat.jpg", "image/png", "image/png"),  # a real declaration wins over the extension
    ("cat.jpg", "image/png, text/html", "image/jpeg"),  # a list is no type: guessed
    ("notes.txt", "text/plain; charset=utf-8", "text/plain; charset=utf-8"),
    ("blob.unknownext", "application/octet-stream", "application/octet-stream"),
    ("blob.unknownext", None, "application/octet-stream"),
    ("blob.unknownext", "image/webp", "image/webp"),
]
IDS = [f"{name}-{declared}" for name, declared, _ in CASES]


def put_file(client: FlaskClient, name: str, declared: str | None) -> str:
    headers = {} if declared is None else {"Content-Type": declared}
    response = client.put(f"{API}/files/{name}", data=BODY, headers=headers)
    assert response.status_code == 201, response.data
    content_type: str = response.json["content_type"]
    return content_type


def multipart(field: str, name: str, declared: str | None, extra: str = "") -> bytes:
    type_line = "" if declared is None else f"Content-Type: {declared}\r\n"
    head = (
        f'{extra}--bb\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        f"{type_line}\r\n"
    )
    return head.encode() + BODY + b"\r\n--bb--\r\n"


def post_form(client: FlaskClient, name: str, declared: str | None) -> str:
    body = multipart("file", name, declared)
    response = client.post(
        f"{API}/files", data=body, content_type="multipart/form-data; boundary=bb"
    )
    assert response.status_code == 201, response.data
    content_type: str = response.json["saved"][0]["content_type"]
    return content_type


def upload_files(client: FlaskClient, name: str, declared: str | None) -> str:
    body = multipart("FILES_LIST", name, declared)
    response = client.post(
        "/uploadFiles", data=body, content_type="multipart/form-data; boundary=bb"
    )
    assert response.json["SAVED_FILES"] == [name], response.data
    content_type: str = client.get(f"{API}/meta/{name}").json["content_type"]
    return content_type


def tus_upload(client: FlaskClient, name: str, declared: str | None) -> str:
    pairs = {"path": name} | ({} if declared is None else {"filetype": declared})
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())
    created = client.post(
        f"{API}/uploads",
        headers=TUS | {"Upload-Length": str(len(BODY)), "Upload-Metadata": meta},
    )
    assert created.status_code == 201, created.data
    done = client.patch(
        created.headers["Location"],
        data=BODY,
        headers=TUS | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert done.status_code == 204, done.data
    content_type: str = client.get(f"{API}/meta/{name}").json["content_type"]
    return content_type


UPLOADERS: dict[str, Callable[[FlaskClient, str, str | None], str]] = {
    "put": put_file,
    "multipart": post_form,
    "uploadFiles": upload_files,
    "tus": tus_upload,
}


@pytest.mark.parametrize("way", list(UPLOADERS))
@pytest.mark.parametrize(("name", "declared", "expected"), CASES, ids=IDS)
def test_stored_and_served_type(
    client: FlaskClient, way: str, name: str, declared: str | None, expected: str
) -> None:
    assert UPLOADERS[way](client, name, declared) == expected
    download = client.get(f"{API}/files/{name}")
    assert download.status_code == 200 and download.data == BODY
    assert download.headers["Content-Type"] == expected
    assert client.get(f"{API}/meta/{name}").json["content_type"] == expected
    listed = client.get(f"{API}/files", query_string={"prefix": name}).json["items"]
    assert [item["content_type"] for item in listed] == [expected]


@pytest.mark.parametrize("way", list(UPLOADERS))
def test_html_declared_generic_is_still_an_attachment(client: FlaskClient, way: str) -> None:
    # section 4: HTML is served as an attachment, whatever type it came with
    UPLOADERS[way](client, "page.html", "application/octet-stream")
    download = client.get(f"{API}/files/page.html")
    assert download.headers["Content-Type"].startswith("text/html")
    assert download.headers["Content-Disposition"].startswith("attachment")
