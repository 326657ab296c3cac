"""The web UI at / (API.md section 12) in a real browser: Debian's Chromium driven by
Playwright, against a real `filedock serve`."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    expect,
    sync_playwright,
)
from playwright.sync_api import Request as BrowserRequest

from tests.conftest import LiveServer, start_server
from tests.servers import token_server

ROOT = Path(__file__).resolve().parent.parent
UI = ROOT / "src" / "filedock" / "static" / "ui"
NODE_MODULES = ROOT / "tests" / "js" / "node_modules"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
HOSTILE = "<img src=x onerror=alert(1)>.jpg"
CHUNK_BYTES = 8 << 20  # the page's tus chunk size (app.js CHUNK_BYTES)

# Generous: the machine may be busy; every wait is for a condition, never for time.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@dataclass
class Watch:
    """What a page did: every request it made, console errors, uncaught errors, dialogs."""

    requests: list[BrowserRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


def watch(page: Page) -> Watch:
    seen = Watch()
    page.on("request", lambda request: seen.requests.append(request))
    page.on("console", seen.on_console)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    return seen


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with a folder, a JSON document, a nested file and a hostile name."""
    store = tmp_path / "store"
    (store / "docs" / "sub").mkdir(parents=True)
    (store / "docs" / "config.json").write_text('{"colour": "blue", "sizes": [1, 2]}')
    (store / "docs" / "sub" / "deep.txt").write_text("deep")
    (store / "readme.txt").write_text("hello")
    (store / HOSTILE).write_text("not an image")
    return store


@pytest.fixture
def server(store: Path) -> Iterator[LiveServer]:
    server = start_server("--store", str(store), "--port", "0")
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    yield page
    context.close()


def row(page: Page, name: str) -> Any:
    """The listing's link for a file or folder (folders end in '/')."""
    return page.locator("#rows").get_by_role("link", name=name, exact=True)


def sha256_of(server_url: str, path: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(f"{server_url}/api/v1/meta/{path}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    sha: str = response.json()["sha256"]
    return sha


def test_the_page_is_served_at_root_with_a_strict_policy(server: LiveServer) -> None:
    response = requests.get(server.url + "/", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe" not in policy
    assert "<script>" not in response.text and " style=" not in response.text


def test_loads_without_errors_or_outside_requests(server: LiveServer, page: Page) -> None:
    seen = watch(page)
    page.goto(server.url + "/")
    expect(row(page, "readme.txt")).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("1 folder, 2 files")
    assert seen.errors == []
    origin = urlsplit(server.url)
    for request in seen.requests:
        url = urlsplit(request.url)
        assert (url.scheme, url.netloc) == (origin.scheme, origin.netloc), request.url
    # Everything the page needs, from the server itself: small enough for a phone.
    responses = [request.response() for request in seen.requests]
    total = sum(len(response.body()) for response in responses if response is not None)
    assert total < 200_000, total


def test_browse_into_a_folder_and_back(server: LiveServer, page: Page) -> None:
    page.goto(server.url + "/")
    row(page, "docs/").click()
    expect(page).to_have_url(re.compile(r"#/docs/$"))
    expect(row(page, "config.json")).to_be_visible()
    expect(row(page, "readme.txt")).to_have_count(0)
    row(page, "sub/").click()
    expect(row(page, "deep.txt")).to_be_visible()
    page.go_back()
    expect(row(page, "config.json")).to_be_visible()
    page.go_back()
    expect(row(page, "readme.txt")).to_be_visible()
    # The folder's URL works on its own, as a bookmark.
    page.goto(server.url + "/#/docs/sub/")
    expect(row(page, "deep.txt")).to_be_visible()
    expect(page.get_by_role("navigation", name="Folder")).to_contain_text("docs")
    with page.expect_download() as download:
        row(page, "deep.txt").click()
    assert download.value.suggested_filename == "deep.txt"
    assert Path(download.value.path()).read_text() == "deep"


def test_sort_and_filter(server: LiveServer, page: Page, store: Path) -> None:
    (store / "big.bin").write_bytes(b"x" * 5000)
    page.goto(server.url + "/")
    expect(row(page, "big.bin")).to_be_visible()
    names = page.locator("#rows td.name")
    expect(names).to_have_text(["docs/", HOSTILE, "big.bin", "readme.txt"])
    page.get_by_role("button", name="Size").click()
    expect(names).to_have_text(["docs/", "readme.txt", HOSTILE, "big.bin"])
    page.get_by_role("button", name="Size").click()  # largest first
    expect(names).to_have_text(["docs/", "big.bin", HOSTILE, "readme.txt"])
    page.get_by_role("button", name="Name").click()
    expect(names).to_have_text(["docs/", HOSTILE, "big.bin", "readme.txt"])
    page.get_by_label("Filter by name").fill("READ")
    expect(names).to_have_text(["readme.txt"])


def test_upload_by_input_and_by_drop(server: LiveServer, page: Page) -> None:
    page.goto(server.url + "/#/docs/")
    expect(row(page, "config.json")).to_be_visible()
    picked = {f"picked-{i}.bin": os.urandom(100_000 + i) for i in range(3)}
    page.get_by_label("Upload files").set_input_files(
        [
            {"name": name, "mimeType": "application/octet-stream", "buffer": data}
            for name, data in picked.items()
        ]  # fmt: skip
    )
    for name in picked:
        expect(row(page, name)).to_be_visible()  # in the list without a reload
    dropped = {"dropped-a.txt": "first dropped file\n", "dropped-é.txt": "second, ünïcode\n"}
    page.evaluate(
        """(files) => {
            const data = new DataTransfer();
            for (const [name, text] of Object.entries(files)) {
              data.items.add(new File([text], name, { type: "text/plain" }));
            }
            for (const type of ["dragenter", "dragover", "drop"]) {
              const init = { bubbles: true, cancelable: true, dataTransfer: data };
              document.querySelector("main").dispatchEvent(new DragEvent(type, init));
            }
        }""",
        dropped,
    )
    for name in dropped:
        expect(row(page, name)).to_be_visible()
    for name, data in picked.items():
        assert sha256_of(server.url, f"docs/{name}") == hashlib.sha256(data).hexdigest()
    for name, text in dropped.items():
        expected = hashlib.sha256(text.encode()).hexdigest()
        assert sha256_of(server.url, f"docs/{name}") == expected
    expect(page.locator("#uploads-total")).to_contain_text("5 of 5 done")


def test_upload_a_folder(server: LiveServer, page: Page, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "2026").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "2026" / "b.txt").write_text("b")
    page.goto(server.url + "/")
    expect(row(page, "readme.txt")).to_be_visible()
    page.get_by_label("Upload a folder").set_input_files(folder)
    expect(row(page, "photos/")).to_be_visible()
    expect(page.locator("#uploads-total")).to_contain_text("2 of 2 done")
    assert sha256_of(server.url, "photos/2026/b.txt") == hashlib.sha256(b"b").hexdigest()
    row(page, "photos/").click()
    expect(row(page, "2026/")).to_be_visible()
    expect(row(page, "a.txt")).to_be_visible()


def test_an_existing_file_is_replaced_only_when_asked(
    server: LiveServer, page: Page, store: Path
) -> None:
    page.goto(server.url + "/")
    expect(row(page, "readme.txt")).to_be_visible()
    page.get_by_label("Upload files").set_input_files(
        [{"name": "readme.txt", "mimeType": "text/plain", "buffer": b"new text"}]
    )
    expect(page.locator("#upload-list")).to_contain_text("readme.txt exists already")
    assert (store / "readme.txt").read_text() == "hello"
    page.get_by_role("button", name="Replace readme.txt").click()
    expect(page.locator("#uploads-total")).to_contain_text("1 of 1 done")
    assert (store / "readme.txt").read_bytes() == b"new text"


class Holder:
    """Holds the upload's second PATCH, so the test can stop the server mid-upload."""

    def __init__(self) -> None:
        self.patches = 0
        self.held: list[Route] = []

    def handle(self, route: Route) -> None:
        if route.request.method == "PATCH":
            self.patches += 1
            if self.patches == 2:
                self.held.append(route)
                return
        route.continue_()


def wait_until_held(page: Page, holder: Holder) -> None:
    """Let Playwright dispatch route events until the second PATCH is held."""
    for _ in range(1200):
        if holder.held:
            return
        page.wait_for_timeout(50)
    raise AssertionError("the upload never sent its second chunk")


def test_upload_survives_a_server_restart(page: Page, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    server = start_server("--store", str(store), "--port", "0")
    port = str(urlsplit(server.url).port)
    data = os.urandom(2 * CHUNK_BYTES + 12345)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    seen = watch(page)
    holder = Holder()
    try:
        page.goto(server.url + "/")
        expect(page.get_by_role("status").first).to_have_text("0 files")
        page.route("**/api/v1/uploads/**", holder.handle)
        page.get_by_label("Upload files").set_input_files(big)
        wait_until_held(page, holder)
        server.stop()  # the first chunk is acknowledged; the server goes away mid-upload
        holder.held[0].continue_()
        expect(page.locator("#upload-list")).to_contain_text("Connection lost")
        server = start_server("--store", str(store), "--port", port)
        page.unroute("**/api/v1/uploads/**")
        expect(row(page, "big.bin")).to_be_visible(timeout=120_000)
        assert sha256_of(server.url, "big.bin") == hashlib.sha256(data).hexdigest()
    finally:
        server.stop()
    creations = [r for r in seen.requests if r.method == "POST" and "/uploads" in r.url]
    assert len(creations) == 1  # it went on with the same upload, not a new one
    offsets = [int(r.headers["upload-offset"]) for r in seen.requests if r.method == "PATCH"]
    assert offsets[0] == 0 and CHUNK_BYTES in offsets[1:]
    assert seen.errors == [] or all("ERR_CONNECTION_REFUSED" in e for e in seen.errors)


def test_upload_continues_after_a_reload(server: LiveServer, page: Page, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_BYTES + 777)
    big = tmp_path / "again.bin"
    big.write_bytes(data)
    seen = watch(page)
    holder = Holder()
    page.goto(server.url + "/")
    expect(row(page, "readme.txt")).to_be_visible()
    page.route("**/api/v1/uploads/**", holder.handle)
    page.get_by_label("Upload files").set_input_files(big)
    wait_until_held(page, holder)
    page.on("dialog", lambda dialog: dialog.accept())  # "leave the page?" while uploading
    page.unroute("**/api/v1/uploads/**")
    before_reload = len(seen.requests)
    page.reload()
    expect(page.get_by_role("region", name="Unfinished uploads")).to_contain_text("again.bin")
    page.get_by_label("Upload files").set_input_files(big)
    expect(row(page, "again.bin")).to_be_visible()
    assert sha256_of(server.url, "again.bin") == hashlib.sha256(data).hexdigest()
    creations = [r for r in seen.requests if r.method == "POST" and "/uploads" in r.url]
    assert len(creations) == 1
    after = seen.requests[before_reload:]
    offsets = [int(r.headers["upload-offset"]) for r in after if r.method == "PATCH"]
    assert offsets and offsets[0] >= CHUNK_BYTES  # went on from what the server had
    assert any(r.method == "HEAD" and "/uploads/" in r.url for r in after)
    expect(page.get_by_role("region", name="Unfinished uploads")).to_be_hidden()


def test_cancel_an_upload(server: LiveServer, page: Page, tmp_path: Path, store: Path) -> None:
    big = tmp_path / "cancelled.bin"
    big.write_bytes(os.urandom(2 * CHUNK_BYTES))
    holder = Holder()
    page.goto(server.url + "/")
    expect(row(page, "readme.txt")).to_be_visible()
    page.route("**/api/v1/uploads/**", holder.handle)
    page.get_by_label("Upload files").set_input_files(big)
    wait_until_held(page, holder)
    page.get_by_role("button", name="Cancel upload of cancelled.bin").click()
    holder.held[0].abort()
    expect(page.locator("#upload-list")).to_contain_text("Cancelled")
    page.unroute("**/api/v1/uploads/**")
    uploads = store / ".filedock" / "uploads"
    deadline_checks = 600
    while any(uploads.glob("*.part")) and deadline_checks:
        page.wait_for_timeout(50)  # the termination request is on its way
        deadline_checks -= 1
    assert not any(uploads.glob("*.part"))
    assert not (store / "cancelled.bin").exists()


def test_delete_after_confirmation(server: LiveServer, page: Page, store: Path) -> None:
    page.goto(server.url + "/")
    expect(row(page, "readme.txt")).to_be_visible()
    messages: list[str] = []

    def dismiss(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Delete readme.txt").click()
    expect(page.get_by_role("button", name="Delete readme.txt")).to_be_enabled()
    assert messages and "readme.txt" in messages[0]
    assert (store / "readme.txt").exists()  # dismissed: nothing deleted
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete readme.txt").click()
    expect(row(page, "readme.txt")).to_have_count(0)
    assert not (store / "readme.txt").exists()


def test_delete_a_folder_after_confirmation(server: LiveServer, page: Page, store: Path) -> None:
    page.goto(server.url + "/")
    messages: list[str] = []

    def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Delete folder docs").click()
    expect(row(page, "docs/")).to_have_count(0)
    assert "2 files" in messages[0]
    assert not any(path.is_file() for path in (store / "docs").rglob("*"))
    assert (store / "readme.txt").exists()


def test_json_save_meets_a_concurrent_change(server: LiveServer, page: Page) -> None:
    url = f"{server.url}/api/v1/json/docs/config.json"
    page.goto(server.url + "/#/docs/")
    page.get_by_role("button", name="Edit config.json").click()
    editor = page.get_by_label("Contents (JSON)")
    expect(editor).to_have_value(re.compile("blue"))
    mine = '{"colour": "green", "sizes": [1, 2]}'
    editor.fill(mine)
    theirs = {"colour": "red", "sizes": [3]}
    assert requests.put(url, json=theirs, timeout=30).status_code == 200
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#json-message")).to_contain_text("someone changed this document")
    assert requests.get(url, timeout=30).json() == theirs  # theirs stays
    expect(editor).to_have_value(mine)  # and mine is still on the screen
    page.get_by_role("button", name="Reload").click()
    expect(editor).to_have_value(re.compile("red"))
    editor.fill('{"colour": "purple"}')
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#json-message")).to_have_text("Saved.")
    assert requests.get(url, timeout=30).json() == {"colour": "purple"}
    editor.fill("{not json")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#json-message")).to_contain_text("not valid JSON")
    assert requests.get(url, timeout=30).json() == {"colour": "purple"}


def test_token_field_and_a_read_only_token(page: Page, tmp_path: Path) -> None:
    with token_server(tmp_path) as live:
        (tmp_path / "store" / "note.txt").write_text("note")
        page.goto(live.url + "/")
        token = page.get_by_label("Token")
        expect(token).to_be_visible()
        expect(token).to_be_focused()
        expect(token).to_have_attribute("type", "password")
        token.fill("wrong")
        page.get_by_role("button", name="Use token").click()
        expect(page.get_by_role("status").first).to_contain_text("not accepted")
        token.fill(live.read_token)
        page.get_by_role("button", name="Use token").click()
        expect(row(page, "note.txt")).to_be_visible()
        expect(page.get_by_label("Upload files")).to_be_disabled()
        expect(page.get_by_role("button", name="Delete note.txt")).to_be_disabled()
        expect(page.get_by_role("button", name="Share note.txt")).to_be_enabled()
        with page.expect_download() as download:  # a link cannot carry the token: signed
            row(page, "note.txt").click()
        assert Path(download.value.path()).read_text() == "note"
        stored = page.evaluate(
            "[sessionStorage.getItem('filedock.token'), JSON.stringify(localStorage)]"
        )
        assert stored[0] == live.read_token and live.read_token not in stored[1]
        page.reload()  # the token lasts for the tab's session
        expect(row(page, "note.txt")).to_be_visible()
        page.get_by_role("button", name="Forget token").click()
        expect(token).to_be_visible()
        token.fill(live.token)
        page.get_by_role("button", name="Use token").click()
        expect(page.get_by_role("button", name="Delete note.txt")).to_be_enabled()
        page.get_by_label("Upload files").set_input_files(
            [{"name": "up.txt", "mimeType": "text/plain", "buffer": b"with a token"}]
        )
        expect(row(page, "up.txt")).to_be_visible()
        expected = hashlib.sha256(b"with a token").hexdigest()
        assert sha256_of(live.url, "up.txt", live.token) == expected


def test_share_link_works_without_the_token(page: Page, tmp_path: Path) -> None:
    with token_server(tmp_path) as live:
        (tmp_path / "store" / "shared.txt").write_text("for anyone with the link")
        page.goto(live.url + "/")
        page.get_by_label("Token").fill(live.read_token)
        page.get_by_role("button", name="Use token").click()
        page.get_by_role("button", name="Share shared.txt").click()
        link = page.get_by_label(re.compile("Anyone with this link"))
        expect(link).to_have_value(re.compile(r"signature="))
        url = link.input_value()
        assert url.startswith(live.url + "/")
        response = requests.get(url, timeout=30)
        assert response.status_code == 200 and response.text == "for anyone with the link"
        assert requests.get(live.url + "/api/v1/files/shared.txt", timeout=30).status_code == 401


def test_a_hostile_name_is_shown_as_text(server: LiveServer, page: Page) -> None:
    seen = watch(page)
    page.on("dialog", lambda dialog: (seen.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(server.url + "/")
    expect(row(page, HOSTILE)).to_have_text(HOSTILE)
    assert page.locator("img").count() == 0
    assert page.locator("#rows [onerror]").count() == 0
    page.get_by_role("button", name=f"Share {HOSTILE}").click()
    expect(page.locator("#share-name")).to_have_text(HOSTILE)
    assert page.locator("img").count() == 0
    assert seen.dialogs == [] and seen.errors == []
    assert not any(urlsplit(r.url).path == "/x" for r in seen.requests)


AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core's WCAG 2 A/AA rules on the page as it is now."""
    page.evaluate((NODE_MODULES / "axe-core" / "axe.min.js").read_text())
    result = page.evaluate(
        "(tags) => axe.run(document, { runOnly: { type: 'tag', values: tags } })", AXE_TAGS
    )
    violations: list[dict[str, Any]] = result["violations"]
    return [{"id": v["id"], "nodes": [n["html"] for n in v["nodes"]]} for v in violations]


def test_no_accessibility_violations(server: LiveServer, page: Page) -> None:
    page.goto(server.url + "/#/docs/")
    expect(row(page, "config.json")).to_be_visible()
    page.get_by_label("Upload files").set_input_files(
        [{"name": "a.txt", "mimeType": "text/plain", "buffer": b"a"}]
    )
    expect(row(page, "a.txt")).to_be_visible()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Edit config.json").click()
    expect(page.get_by_label("Contents (JSON)")).to_have_value(re.compile("blue"))
    assert axe_violations(page) == []
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    assert axe_violations(page) == []


def test_keyboard_reaches_the_controls(server: LiveServer, page: Page) -> None:
    page.goto(server.url + "/")
    expect(row(page, "readme.txt")).to_be_visible()
    page.get_by_label("Filter by name").focus()
    page.keyboard.press("Tab")  # on to the sort buttons and the rows
    for _ in range(20):
        if page.evaluate("document.activeElement.textContent") == "docs/":
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(row(page, "config.json")).to_be_visible()


def test_token_needed_page_has_no_accessibility_violations(page: Page, tmp_path: Path) -> None:
    with token_server(tmp_path) as live:
        page.goto(live.url + "/")
        expect(page.get_by_label("Token")).to_be_visible()
        assert axe_violations(page) == []


def test_a_folder_of_ten_thousand_files(page: Page, tmp_path: Path) -> None:
    store = tmp_path / "store"
    folder = store / "many"
    folder.mkdir(parents=True)
    for i in range(10_000):
        (folder / f"file-{i:05}.txt").write_text(str(i))
    live = start_server("--store", str(store), "--port", "0")
    try:
        page.goto(live.url + "/#/many/")
        expect(row(page, "file-00000.txt")).to_be_visible()
        expect(page.get_by_role("status").first).to_have_text("10000 files", timeout=120_000)
        rendered = page.locator("#rows tr:not(.spacer)").count()
        assert 0 < rendered < 200  # only the rows in view (and a margin) are in the page
        page.keyboard.press("End")
        expect(row(page, "file-09999.txt")).to_be_visible()
        assert page.locator("#rows tr:not(.spacer)").count() < 200
        page.get_by_label("Filter by name").fill("file-0424")
        expect(page.locator("#rows td.name")).to_have_count(10)
    finally:
        live.stop()


def test_vendored_tus_client_is_the_locked_package() -> None:
    lock = json.loads((ROOT / "tests" / "js" / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/tus-js-client"]["version"]
    package = NODE_MODULES / "tus-js-client"
    assert json.loads((package / "package.json").read_text())["version"] == locked
    vendored = UI / "vendor"
    assert (vendored / "tus.min.js").read_bytes() == (package / "dist" / "tus.min.js").read_bytes()
    assert (vendored / "tus-js-client.LICENSE").read_bytes() == (package / "LICENSE").read_bytes()
    assert f"tus-js-client {locked}" in (vendored / "README.md").read_text()
