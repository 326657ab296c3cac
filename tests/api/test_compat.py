"""The original app's endpoints (API.md section 6), through Flask's test client."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.hostile import HOSTILE_FILENAMES, HOSTILE_URL_PATHS, SENTINEL

LABELS = {"ironman": "1", "deadpool": "2", "thor": "3", "thanos": "snapItAll"}


@pytest.fixture
def labels(store_dir: Path) -> Path:
    path = store_dir / "labelsFile.json"
    path.write_text(json.dumps(LABELS))
    return path


def test_get_json(client: FlaskClient, labels: Path) -> None:
    response = client.get("/getJsonFromFile/labelsFile.json")
    assert response.status_code == 200
    assert response.json == {"STATUS": "true", "LABELS_MAPPING": LABELS}
    assert list(response.json["LABELS_MAPPING"]) == list(LABELS)  # document order is kept


def test_get_json_bytes_are_the_originals(client: FlaskClient, store_dir: Path) -> None:
    # jsonify's compact form, as the original app answered, whatever the file's own layout
    (store_dir / "pretty.json").write_text('{\n  "b": [1, 2],\n  "a": "x"\n}\n')
    for _ in range(2):  # made once, then served again from the document cache
        response = client.get("/getJsonFromFile/pretty.json")
        assert response.data == b'{"STATUS":"true","LABELS_MAPPING":{"b":[1,2],"a":"x"}}\n'
        assert response.mimetype == "application/json"


def test_get_json_in_a_folder(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "models").mkdir()
    (store_dir / "models" / "m.json").write_text("[1, 2]")
    assert client.get("/getJsonFromFile/models/m.json").json == {
        "STATUS": "true",
        "LABELS_MAPPING": [1, 2],
    }


def test_missing_file_is_404(client: FlaskClient) -> None:
    response = client.get("/getJsonFromFile/nope.json")
    assert response.status_code == 404
    assert response.json == {"STATUS": "false", "error": "file not found in server"}


@pytest.mark.parametrize(
    "content", [b"not json", b"\xff\xfe{}", b"[" * 100_000, b"1" * 1_000_000, b"NaN", b""]
)
def test_not_json_is_422(client: FlaskClient, store_dir: Path, content: bytes) -> None:
    (store_dir / "bad.json").write_bytes(content)
    response = client.get("/getJsonFromFile/bad.json")
    assert response.status_code == 422
    assert response.json == {"STATUS": "false", "error": "file is not valid JSON"}


def test_folder_is_not_a_file(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "dir").mkdir()
    assert client.get("/getJsonFromFile/dir").status_code == 404


@pytest.mark.parametrize("path", HOSTILE_URL_PATHS)
def test_hostile_paths_are_400(client: FlaskClient, path: str) -> None:
    response = client.get("/getJsonFromFile/" + path)
    assert response.status_code == 400, response.data
    assert response.json["STATUS"] == "false"
    assert "sentinel" not in response.get_data(as_text=True).replace("sentinel.json", "")


def test_symlink_out_of_the_store_is_404(client: FlaskClient, store_dir: Path) -> None:
    (store_dir / "link.json").symlink_to(store_dir.parent / "sentinel.json")
    response = client.get("/getJsonFromFile/link.json")
    assert response.status_code == 404
    assert "secret" not in response.get_data(as_text=True)


def upload(client: FlaskClient, files: list[tuple[bytes, str]], prefix: str | None = "new_file"):  # type: ignore[no-untyped-def]
    data: dict[str, object] = {"FILES_LIST": [(io.BytesIO(body), name) for body, name in files]}
    if prefix is not None:
        data["FILE_NAME"] = prefix
    return client.post("/uploadFiles", data=data, content_type="multipart/form-data")


def test_upload_files(client: FlaskClient, store_dir: Path) -> None:
    response = upload(client, [(b"one", "file1.jpg"), (b"two", "my file2.jpg")])
    assert response.status_code == 200
    assert response.json == {
        "STATUS": "true",
        "ERROR_FILES_LIST": "",
        "SAVED_FILES": ["new_filefile1.jpg", "new_filemyfile2.jpg"],
    }
    assert (store_dir / "new_filefile1.jpg").read_bytes() == b"one"
    assert (store_dir / "new_filemyfile2.jpg").read_bytes() == b"two"


def test_upload_replaces_and_keeps_last_segment(client: FlaskClient, store_dir: Path) -> None:
    upload(client, [(b"old", "x.txt")], prefix=None)
    response = upload(client, [(b"new", "dir/sub/x.txt")], prefix=None)
    assert response.json["SAVED_FILES"] == ["x.txt"]
    assert (store_dir / "x.txt").read_bytes() == b"new"
    # curl escapes a backslash in a quoted filename; the quoted-string decodes to C:\Users\...
    body = (
        b'--bb\r\nContent-Disposition: form-data; name="FILES_LIST"; '
        b'filename="C:\\\\Users\\\\me\\\\y.txt"\r\n\r\nwin\r\n--bb--\r\n'
    )
    response = client.post(
        "/uploadFiles", data=body, content_type="multipart/form-data; boundary=bb"
    )
    assert response.json["SAVED_FILES"] == ["y.txt"]
    assert (store_dir / "y.txt").read_bytes() == b"win"


def test_fields_may_come_before_or_after_the_files(client: FlaskClient, store_dir: Path) -> None:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="FILE_NAME"\r\n\r\npre_\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="FILES_LIST"; filename="f.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nfirst\r\n"
        f"--{boundary}--\r\n"
    )
    response = client.post(
        "/uploadFiles", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.json["SAVED_FILES"] == ["pre_f.txt"]
    assert (store_dir / "pre_f.txt").read_bytes() == b"first"


@pytest.mark.parametrize(
    ("declared", "kept"),
    [
        ("image/png", "image/png"),
        ("text/plain, text/html", "text/plain"),  # a list: guessed from the name instead
        ("text/plain\x01", "text/plain"),
    ],
)
def test_a_files_content_type_is_kept_only_when_it_is_one_media_type(
    client: FlaskClient, declared: str, kept: str
) -> None:
    body = (
        '--bb\r\nContent-Disposition: form-data; name="FILES_LIST"; filename="n.txt"\r\n'
        f"Content-Type: {declared}\r\n\r\n<script>alert(1)</script>\r\n--bb--\r\n"
    )
    response = client.post(
        "/uploadFiles", data=body, content_type="multipart/form-data; boundary=bb"
    )
    assert response.json["SAVED_FILES"] == ["n.txt"]
    assert client.get("/api/v1/meta/n.txt").json["content_type"] == kept
    assert client.head("/api/v1/files/n.txt").headers["Content-Type"] == kept


def test_bad_names_are_listed_as_errors(client: FlaskClient, store_dir: Path) -> None:
    response = upload(client, [(b"ok", "good.txt"), (b"bad", "..")], prefix=None)
    assert response.status_code == 200
    assert response.json == {
        "STATUS": "true",
        "ERROR_FILES_LIST": ",..",
        "SAVED_FILES": ["good.txt"],
    }


@pytest.mark.parametrize("filename", HOSTILE_FILENAMES)
def test_hostile_filenames_store_nothing(
    client: FlaskClient, store_dir: Path, filename: str
) -> None:
    response = upload(client, [(b"evil", filename)], prefix=None)
    assert response.status_code in (200, 400)
    assert response.json["STATUS"] == ("true" if response.status_code == 200 else "false")
    if response.status_code == 200:
        assert response.json["SAVED_FILES"] == []
    assert sorted(p.name for p in store_dir.iterdir()) == [".filedock"]
    assert (store_dir.parent / "sentinel.json").read_text() == SENTINEL


@pytest.mark.parametrize("prefix", ["../", "..", "a/b", "a\\b", "x\x00", ".filedock", "q" * 256])
def test_hostile_file_name_prefix_is_400(client: FlaskClient, store_dir: Path, prefix: str) -> None:
    response = upload(client, [(b"evil", "sentinel.json")], prefix=prefix)
    assert response.status_code == 400
    assert response.json["STATUS"] == "false"
    assert sorted(p.name for p in store_dir.iterdir()) == [".filedock"]
    assert (store_dir.parent / "sentinel.json").read_text() == SENTINEL
    assert not list((store_dir / ".filedock" / "staging").iterdir())


def test_no_files_is_400(client: FlaskClient) -> None:
    response = client.post(
        "/uploadFiles", data={"FILE_NAME": "x"}, content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert response.json == {"STATUS": "false", "error": "no files in FILES_LIST"}


def test_not_multipart_is_400(client: FlaskClient) -> None:
    response = client.post("/uploadFiles", data=b"raw", content_type="application/octet-stream")
    assert response.status_code == 400
    assert response.json["STATUS"] == "false"


def test_truncated_multipart_is_400_and_leaves_nothing(
    client: FlaskClient, store_dir: Path
) -> None:
    body = (
        "--bb\r\n"
        'Content-Disposition: form-data; name="FILES_LIST"; filename="t.txt"\r\n\r\n'
        + "x"
        * 100_000
    )
    response = client.post(
        "/uploadFiles", data=body, content_type="multipart/form-data; boundary=bb"
    )
    assert response.status_code == 400
    assert sorted(p.name for p in store_dir.iterdir()) == [".filedock"]
    assert not list((store_dir / ".filedock" / "staging").iterdir())


def test_upload_over_the_limit_is_413(store_dir: Path) -> None:
    from filedock.app import create_app
    from filedock.config import Settings

    client = create_app(Settings(store=str(store_dir), max_upload_bytes=1000)).test_client()
    response = upload(client, [(b"x" * 2000, "big.bin")])
    assert response.status_code == 413
    assert response.json["STATUS"] == "false"
    assert sorted(p.name for p in store_dir.iterdir()) == [".filedock"]


def test_cors_is_on(client: FlaskClient, labels: Path) -> None:
    response = client.get("/getJsonFromFile/labelsFile.json", headers={"Origin": "http://x.test"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    preflight = client.options(
        "/uploadFiles",
        headers={"Origin": "http://x.test", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
