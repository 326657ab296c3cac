// filedock's web UI: browse a folder, upload with tus (resumable), delete, share, edit JSON.
// Everything from the store (names, documents) reaches the page as text nodes or form values,
// never as markup; the page's Content-Security-Policy allows no inline code either.
"use strict";

(function () {
  const API = document.body.dataset.api; // "/api/v1/" below the server's root
  const TOKEN_KEY = "filedock.token";
  const CHUNK_BYTES = 8 << 20; // tus PATCH size: a dropped connection loses at most this much
  const PARALLEL = 3;
  const FIRST_PAGE = 100; // small, so the first rows show at once
  const PAGE = 1000; // the listing API's largest page, for the rest
  const OVERSCAN = 10;
  // Waits between tries after a failed request: about three minutes in all, so an upload
  // rides out a server restart or a short network drop without anyone pressing a button.
  const RETRY_DELAYS = [0, 1000, 2000, 3000, 5000, 5000, 10000, 10000, 15000, 20000, 30000, 60000];
  const SCOPES_TEXT = { read: "read", write: "write", admin: "admin" };
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    me: null,
    folder: "",
    entries: new Map(), // "d:name" / "f:name" -> entry of the current folder
    rows: [], // entries after filter and sort, in display order
    sort: { key: "name", dir: 1 },
    filter: "",
    loadId: 0,
    loading: false,
    listError: "",
    rendered: { start: -1, end: -1, rows: null },
    uploads: [],
  };

  // -- small helpers --------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === false || value == null) continue;
      if (name === "text") node.textContent = value;
      else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child == null) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function encodePath(key) {
    return key.split("/").map(encodeURIComponent).join("/");
  }

  function join(folder, name) {
    return folder ? folder + "/" + name : name;
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra);
    if (state.token) headers.Authorization = "Bearer " + state.token;
    return headers;
  }

  function api(path, options) {
    const opts = Object.assign({ cache: "no-store" }, options || {});
    opts.headers = authHeaders(opts.headers);
    return fetch(API + path, opts);
  }

  async function problemText(response) {
    try {
      const body = await response.json();
      return body.detail || body.title || body.error || "HTTP " + response.status;
    } catch (error) {
      return "HTTP " + response.status;
    }
  }

  function formatBytes(bytes) {
    if (!isFinite(bytes)) return "";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return (unit === 0 ? String(value) : value.toFixed(value < 10 ? 1 : 0)) + " " + units[unit];
  }

  function formatSeconds(seconds) {
    if (!isFinite(seconds) || seconds < 0) return "";
    if (seconds < 60) return Math.ceil(seconds) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.ceil(seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  function formatDate(iso) {
    const date = new Date(iso);
    return isNaN(date) ? "" : dateFormat.format(date);
  }

  function say(message) {
    $("status").textContent = message;
  }

  // -- permissions ------------------------------------------------------------------------------

  function can(scope, key) {
    const me = state.me;
    if (!me || !me.scopes.includes(scope)) return false;
    if (!me.prefix) return true;
    return key != null && (key === me.prefix || key.startsWith(me.prefix + "/"));
  }

  function canWriteHere() {
    return can("write", join(state.folder, "x"));
  }

  function applyPermissions() {
    const write = canWriteHere();
    for (const id of ["upload-files", "upload-folder"]) $(id).disabled = !write;
    for (const label of document.querySelectorAll(".picker label")) {
      label.classList.toggle("disabled", !write);
    }
    const me = state.me;
    $("identity").hidden = !me || me.anonymous;
    if (me && !me.anonymous) {
      const scopes = me.scopes.map((s) => SCOPES_TEXT[s] || s).join(", ");
      const who = me.name ? "Token " + me.name : "Token";
      $("identity-text").textContent =
        who + ": " + scopes + (me.prefix ? " in " + me.prefix + "/" : "");
    }
    state.rendered.rows = null; // the rows' buttons depend on the permissions
    render();
  }

  async function whoami() {
    let response;
    try {
      response = await api("whoami");
    } catch (error) {
      say("The server cannot be reached.");
      return false;
    }
    if (response.status === 401) {
      const hadToken = Boolean(state.token);
      forgetToken();
      askForToken(hadToken ? "That token was not accepted." : "This server needs a token.");
      return false;
    }
    if (!response.ok) {
      say(await problemText(response));
      return false;
    }
    state.me = await response.json();
    $("token-form").hidden = true;
    applyPermissions();
    return true;
  }

  function forgetToken() {
    state.token = "";
    state.me = null;
    sessionStorage.removeItem(TOKEN_KEY);
  }

  function askForToken(message) {
    state.me = null;
    state.entries = new Map();
    refreshRows();
    $("token-form").hidden = false;
    $("identity").hidden = true;
    applyPermissions();
    say(message + " Enter it in the Token field.");
    $("token").focus();
  }

  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    $("token").value = "";
    if (!state.token) return;
    sessionStorage.setItem(TOKEN_KEY, state.token);
    if (await whoami()) {
      load();
      showPaused();
    }
  });

  $("sign-out").addEventListener("click", async () => {
    forgetToken();
    if (await whoami()) load();
  });

  // -- the folder in the URL -------------------------------------------------------------------

  function folderFromHash() {
    const raw = location.hash.replace(/^#\/?/, "").replace(/\/+$/, "");
    if (!raw) return "";
    try {
      return raw.split("/").map(decodeURIComponent).join("/");
    } catch (error) {
      return "";
    }
  }

  function folderHash(folder) {
    return "#/" + (folder ? encodePath(folder) + "/" : "");
  }

  function showCrumbs() {
    const list = $("crumbs");
    list.replaceChildren();
    const parts = state.folder ? state.folder.split("/") : [];
    const here = (last) => (last ? { "aria-current": "page" } : {});
    list.append(el("li", {}, el("a", Object.assign({ href: "#/" }, here(!parts.length)), "All files")));
    parts.forEach((part, i) => {
      const path = parts.slice(0, i + 1).join("/");
      const link = el("a", Object.assign({ href: folderHash(path) }, here(i === parts.length - 1)), part);
      list.append(el("li", {}, link));
    });
    document.title = (state.folder ? state.folder + " – " : "") + "filedock";
  }

  window.addEventListener("hashchange", () => {
    const folder = folderFromHash();
    if (folder === state.folder) return;
    state.folder = folder;
    state.filter = "";
    $("filter").value = "";
    showCrumbs();
    window.scrollTo(0, 0);
    applyPermissions();
    if (state.me) load();
  });

  // -- listing: paged from the API, grouped into one level --------------------------------------

  function addItem(item, prefix) {
    const rest = item.path.slice(prefix.length);
    const slash = rest.indexOf("/");
    if (slash < 0) {
      state.entries.set("f:" + rest, {
        kind: "file",
        name: rest,
        path: item.path,
        size: item.size,
        modified: item.modified,
        etag: item.etag,
      });
      return;
    }
    const name = rest.slice(0, slash);
    const entry = state.entries.get("d:" + name) || {
      kind: "folder",
      name,
      path: prefix + name,
      size: 0,
      count: 0,
      modified: "",
    };
    entry.size += item.size;
    entry.count += 1;
    if (item.modified > entry.modified) entry.modified = item.modified;
    state.entries.set("d:" + name, entry);
  }

  async function load() {
    const id = ++state.loadId;
    const prefix = state.folder ? state.folder + "/" : "";
    state.entries = new Map();
    state.listError = "";
    state.loading = true;
    refreshRows();
    let cursor = null;
    try {
      do {
        const query = new URLSearchParams({ prefix, limit: String(cursor ? PAGE : FIRST_PAGE) });
        if (cursor) query.set("cursor", cursor);
        const response = await api("files?" + query);
        if (id !== state.loadId) return;
        if (response.status === 401) {
          forgetToken();
          askForToken("The token is no longer accepted.");
          return;
        }
        if (!response.ok) {
          state.listError =
            response.status === 403
              ? "This token may not list files here" + (canWriteHere() ? "; it can upload." : ".")
              : await problemText(response);
          break;
        }
        const body = await response.json();
        if (id !== state.loadId) return;
        for (const item of body.items) addItem(item, prefix);
        cursor = body.next_cursor;
        refreshRows();
      } while (cursor);
    } catch (error) {
      if (id === state.loadId) state.listError = "The server cannot be reached.";
    }
    if (id !== state.loadId) return;
    state.loading = false;
    refreshRows();
  }

  function compare(a, b) {
    if (a.kind !== b.kind) return a.kind === "folder" ? -1 : 1;
    const key = state.sort.key;
    let result = 0;
    if (key === "size") result = a.size - b.size;
    else if (key === "modified") result = a.modified < b.modified ? -1 : a.modified > b.modified ? 1 : 0;
    if (result === 0) result = collator.compare(a.name, b.name);
    return result * state.sort.dir;
  }

  function refreshRows() {
    const needle = state.filter.toLowerCase();
    const rows = [];
    for (const entry of state.entries.values()) {
      if (!needle || entry.name.toLowerCase().includes(needle)) rows.push(entry);
    }
    rows.sort(compare);
    state.rows = rows;
    state.rendered.rows = null;
    render();
    const files = rows.filter((r) => r.kind === "file").length;
    const folders = rows.length - files;
    let message = state.listError;
    if (!message && state.me) {
      const parts = [];
      if (folders) parts.push(folders + (folders === 1 ? " folder" : " folders"));
      if (files || !folders) parts.push(files + (files === 1 ? " file" : " files"));
      message = parts.join(", ");
      if (state.filter) message += " match the filter";
      if (state.loading) message = "Loading… " + message;
    }
    if (state.me || state.listError) say(message);
    $("empty").hidden = Boolean(rows.length || state.loading || state.listError || state.filter || !state.me);
  }

  // -- rendering only the rows in view ---------------------------------------------------------

  function rowHeight() {
    const value = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--row"));
    return value > 0 ? value : 44;
  }

  function spacer(height) {
    const row = el("tr", { class: "spacer", "aria-hidden": "true" }, el("td", { colspan: 4 }));
    row.style.height = height + "px";
    return row;
  }

  function render() {
    const body = $("rows");
    const total = state.rows.length;
    const height = rowHeight();
    const top = body.getBoundingClientRect().top;
    const first = Math.max(0, Math.floor(-top / height) - OVERSCAN);
    const last = Math.min(total, Math.ceil((window.innerHeight - top) / height) + OVERSCAN);
    const start = Math.min(first, total);
    const end = Math.max(start, last);
    const seen = state.rendered;
    if (seen.rows === state.rows && seen.start === start && seen.end === end) return;
    const focusedPath = document.activeElement && document.activeElement.dataset.path;
    const focusedRole = document.activeElement && document.activeElement.dataset.role;
    const nodes = [];
    if (start > 0) nodes.push(spacer(start * height));
    for (let i = start; i < end; i++) nodes.push(rowFor(state.rows[i], i));
    if (end < total) nodes.push(spacer((total - end) * height));
    body.replaceChildren(...nodes);
    $("listing").setAttribute("aria-rowcount", String(total + 1));
    state.rendered = { start, end, rows: state.rows };
    if (focusedPath != null) {
      // Keep keyboard focus on the same control when the rows are redrawn.
      for (const node of body.querySelectorAll("[data-path]")) {
        if (node.dataset.path === focusedPath && node.dataset.role === focusedRole) {
          node.focus();
          break;
        }
      }
    }
  }

  let renderQueued = false;
  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }
  window.addEventListener("scroll", queueRender, { passive: true });
  window.addEventListener("resize", queueRender);

  function rowFor(entry, index) {
    const row = el("tr", { "aria-rowindex": index + 2, class: entry.kind });
    const data = (role) => ({ "data-path": entry.path, "data-role": role });
    if (entry.kind === "folder") {
      const link = el("a", Object.assign({ href: folderHash(entry.path), class: "folder-link" }, data("open")), entry.name + "/");
      row.append(
        el("td", { class: "name" }, link),
        el("td", { class: "size" }, entry.count + (entry.count === 1 ? " file" : " files")),
        el("td", { class: "date" }, entry.modified ? el("time", { datetime: entry.modified }, formatDate(entry.modified)) : ""),
        el("td", { class: "actions" }, actionButton("Delete", "Delete folder " + entry.name, !canDeleteFolder(entry), data("delete"), () => deleteFolder(entry)))
      );
      return row;
    }
    const readable = can("read", entry.path);
    const name = readable
      ? el("a", Object.assign({ href: API + "files/" + encodePath(entry.path) + "?download=1", on: { click: (e) => download(e, entry) } }, data("open")), entry.name)
      : el("span", { class: "no-access" }, entry.name);
    const actions = el("td", { class: "actions" });
    if (/\.json$/i.test(entry.name)) {
      actions.append(actionButton("Edit", (can("write", entry.path) ? "Edit " : "View ") + entry.name, !readable, data("json"), () => openJson(entry)));
    }
    actions.append(
      actionButton("Share", "Share " + entry.name, !readable, data("share"), () => share(entry)),
      actionButton("Delete", "Delete " + entry.name, !can("write", entry.path), data("delete"), () => deleteFile(entry))
    );
    row.append(
      el("td", { class: "name" }, name),
      el("td", { class: "size" }, formatBytes(entry.size)),
      el("td", { class: "date" }, el("time", { datetime: entry.modified }, formatDate(entry.modified))),
      actions
    );
    return row;
  }

  function actionButton(text, label, disabled, data, handler) {
    return el("button", Object.assign({ type: "button", "aria-label": label, disabled, on: { click: handler } }, data), text);
  }

  // -- sorting and filtering -------------------------------------------------------------------

  for (const button of document.querySelectorAll("th button[data-sort]")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
      for (const th of document.querySelectorAll("#listing th")) th.removeAttribute("aria-sort");
      button.parentElement.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
      refreshRows();
    });
  }

  $("filter").addEventListener("input", () => {
    state.filter = $("filter").value;
    refreshRows();
  });

  // -- download, share, delete -----------------------------------------------------------------

  async function signedUrl(path, seconds) {
    const response = await api("presign", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path, method: "GET", expires_in: seconds }),
    });
    if (!response.ok) throw new Error(await problemText(response));
    const body = await response.json();
    return { url: new URL(body.url, location.origin).href, expires: body.expires_at };
  }

  async function download(event, entry) {
    if (!state.token || event.ctrlKey || event.metaKey || event.shiftKey) return;
    // A link cannot carry the token, so with one the download goes through a short signed link.
    event.preventDefault();
    try {
      const link = await signedUrl(entry.path, 300);
      location.assign(link.url + "&download=1");
    } catch (error) {
      say("Download failed: " + error.message);
    }
  }

  async function share(entry) {
    const dialog = $("share-dialog");
    $("share-name").textContent = entry.name;
    $("share-url").value = "";
    $("share-message").textContent = "Creating the link…";
    dialog.showModal();
    try {
      const link = await signedUrl(entry.path, 7 * 24 * 3600);
      $("share-url").value = link.url;
      $("share-url").select();
      const until = "It works until " + formatDate(link.expires) + ".";
      try {
        await navigator.clipboard.writeText(link.url);
        $("share-message").textContent = "Copied to the clipboard. " + until;
      } catch (error) {
        $("share-message").textContent = "Copy it from the box above. " + until;
      }
    } catch (error) {
      $("share-message").textContent = "No link: " + error.message;
    }
  }

  $("share-copy").addEventListener("click", async () => {
    const url = $("share-url").value;
    if (!url) return;
    try {
      await navigator.clipboard.writeText(url);
      $("share-message").textContent = "Copied to the clipboard.";
    } catch (error) {
      $("share-url").select();
      $("share-message").textContent = "Press Ctrl+C (or ⌘C) to copy the selected link.";
    }
  });
  $("share-close").addEventListener("click", () => $("share-dialog").close());

  async function deleteFile(entry) {
    if (!confirm("Delete " + entry.path + "? This cannot be undone.")) return;
    const response = await api("files/" + encodePath(entry.path), {
      method: "DELETE",
      headers: entry.etag ? { "If-Match": entry.etag } : {},
    });
    if (response.status === 204 || response.status === 404) {
      state.entries.delete("f:" + entry.name);
      refreshRows();
      say("Deleted " + entry.path + ".");
    } else if (response.status === 412) {
      say(entry.path + " changed since the list was loaded; it was not deleted. The list is reloaded.");
      load();
    } else {
      say("Could not delete " + entry.path + ": " + (await problemText(response)));
    }
  }

  function canDeleteFolder(entry) {
    return can("write", entry.path + "/x") && can("read", entry.path + "/x");
  }

  async function deleteFolder(entry) {
    const count = entry.count + (entry.count === 1 ? " file" : " files");
    if (!confirm("Delete the folder " + entry.path + " and the " + count + " in it? This cannot be undone.")) return;
    let failed = 0;
    let cursor = null;
    const keys = [];
    do {
      const query = new URLSearchParams({ prefix: entry.path + "/", limit: String(PAGE) });
      if (cursor) query.set("cursor", cursor);
      const response = await api("files?" + query);
      if (!response.ok) {
        say("Could not list " + entry.path + ": " + (await problemText(response)));
        return;
      }
      const body = await response.json();
      keys.push(...body.items.map((item) => item.path));
      cursor = body.next_cursor;
    } while (cursor);
    for (const [i, key] of keys.entries()) {
      say("Deleting " + (i + 1) + " of " + keys.length + "…");
      const response = await api("files/" + encodePath(key), { method: "DELETE" });
      if (response.status !== 204 && response.status !== 404) failed += 1;
    }
    say(failed ? failed + " files could not be deleted." : "Deleted " + entry.path + ".");
    load();
  }

  // -- the JSON viewer and editor --------------------------------------------------------------

  const editor = { entry: null, etag: null };

  async function openJson(entry) {
    editor.entry = entry;
    $("json-title").textContent = entry.path;
    $("json-text").value = "";
    $("json-message").textContent = "Loading…";
    const writable = can("write", entry.path);
    $("json-text").readOnly = !writable;
    $("json-save").disabled = true;
    $("json-dialog").showModal();
    await loadJson(writable);
  }

  async function loadJson(writable) {
    const entry = editor.entry;
    const response = await api("json/" + encodePath(entry.path));
    if (!response.ok) {
      $("json-message").textContent = "Could not open it: " + (await problemText(response));
      return;
    }
    editor.etag = response.headers.get("ETag");
    $("json-text").value = await response.text();
    $("json-save").disabled = !writable;
    $("json-message").textContent = writable ? "" : "This token may only read this document.";
  }

  $("json-reload").addEventListener("click", () => loadJson(can("write", editor.entry.path)));
  $("json-close").addEventListener("click", () => $("json-dialog").close());
  $("json-format").addEventListener("click", () => {
    try {
      $("json-text").value = JSON.stringify(JSON.parse($("json-text").value), null, 2);
      $("json-message").textContent = "";
    } catch (error) {
      $("json-message").textContent = "Not valid JSON: " + error.message;
    }
  });

  $("json-save").addEventListener("click", async () => {
    const entry = editor.entry;
    const text = $("json-text").value;
    try {
      JSON.parse(text);
    } catch (error) {
      $("json-message").textContent = "Not saved: this is not valid JSON (" + error.message + ").";
      return;
    }
    $("json-message").textContent = "Saving…";
    const response = await api("json/" + encodePath(entry.path), {
      method: "PUT",
      headers: { "Content-Type": "application/json", "If-Match": editor.etag || "*" },
      body: text,
    });
    if (response.ok) {
      const info = await response.json();
      editor.etag = response.headers.get("ETag") || info.etag;
      Object.assign(entry, { size: info.size, modified: info.modified, etag: info.etag });
      refreshRows();
      $("json-message").textContent = "Saved.";
    } else if (response.status === 412) {
      $("json-message").textContent =
        "Not saved: someone changed this document after you opened it. Your text is still " +
        "here; copy what you need, then press Reload to see their version.";
    } else {
      $("json-message").textContent = "Not saved: " + (await problemText(response));
    }
  });

  // -- uploads with tus ------------------------------------------------------------------------

  const endpoint = new URL(API + "uploads", location.href).href;

  function fingerprint(target) {
    // tus-js-client's default fingerprint ignores where the file goes; ours includes it.
    return (file) => Promise.resolve(["tus-br", endpoint, target, file.name, file.type, file.size, file.lastModified].join("|"));
  }

  function responseProblem(error) {
    const response = error && error.originalResponse;
    if (!response) return {};
    try {
      return JSON.parse(response.getBody()) || {};
    } catch (e) {
      return {};
    }
  }
  const responseCode = (error) => responseProblem(error).code || "";
  const responseDetail = (error) => responseProblem(error).detail || "";

  function enqueue(picked) {
    if (!picked.length) return;
    let refused = 0;
    for (const { file, relative } of picked) {
      const target = join(state.folder, relative);
      if (!can("write", target)) {
        refused += 1;
        continue;
      }
      const upload = { file, target, sent: 0, total: file.size, status: "queued", message: "Waiting", samples: [], tus: null, overwrite: false };
      upload.node = uploadNode(upload);
      state.uploads.push(upload);
      $("upload-list").append(upload.node.item);
    }
    if (refused) say(refused + " files were not uploaded: this token may not write there.");
    $("uploads").hidden = !state.uploads.length;
    pump();
    showUploads();
    showPaused();
  }

  function pump() {
    const running = state.uploads.filter((u) => u.status === "uploading" || u.status === "retrying").length;
    let free = PARALLEL - running;
    for (const upload of state.uploads) {
      if (free <= 0) break;
      if (upload.status === "queued") {
        startUpload(upload);
        free -= 1;
      }
    }
  }

  function startUpload(upload) {
    upload.status = "uploading";
    upload.message = "Starting";
    upload.samples = [{ t: performance.now(), bytes: upload.sent }];
    const metadata = { path: upload.target, filename: upload.file.name, filetype: upload.file.type || "application/octet-stream" };
    if (upload.overwrite) metadata.overwrite = "true";
    const tusUpload = new tus.Upload(upload.file, {
      endpoint,
      chunkSize: CHUNK_BYTES,
      retryDelays: RETRY_DELAYS,
      metadata,
      headers: authHeaders(),
      fingerprint: fingerprint(upload.target),
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onProgress(sent, total) {
        upload.sent = sent;
        upload.total = total;
        upload.status = "uploading";
        upload.samples.push({ t: performance.now(), bytes: sent });
        showUploads();
      },
      onShouldRetry(error, attempt) {
        const response = error.originalResponse;
        const status = response ? response.getStatus() : 0;
        if (responseCode(error) === "exists") return false;
        const retry = status === 0 || status >= 500 || status === 409 || status === 423;
        if (retry && navigator.onLine !== false) {
          upload.status = "retrying";
          upload.message = (status ? "Server error " + status : "Connection lost") + "; trying again (" + (attempt + 1) + ")";
          showUploads();
          return true;
        }
        return false;
      },
      onError(error) {
        upload.tus = null;
        if (upload.status === "cancelled") return;
        upload.status = "failed";
        const code = responseCode(error);
        if (code === "exists") {
          upload.status = "exists";
          upload.message = upload.target + " exists already";
        } else if (navigator.onLine === false) {
          upload.message = "Offline: it continues when the connection is back";
          window.addEventListener("online", () => retryUpload(upload), { once: true });
        } else {
          const response = error.originalResponse;
          upload.message = response ? "Failed: " + (responseDetail(error) || "HTTP " + response.getStatus()) : "Failed: the server cannot be reached";
        }
        showUploads();
        pump();
      },
      onSuccess() {
        upload.tus = null;
        upload.status = "done";
        upload.sent = upload.total;
        upload.message = "Done";
        showUploads();
        pump();
        uploaded(upload.target);
      },
    });
    upload.tus = tusUpload;
    tusUpload.findPreviousUploads().then((previous) => {
      const match = previous.find((p) => p.metadata && p.metadata.path === upload.target);
      if (match) tusUpload.resumeFromPreviousUpload(match);
      if (upload.status !== "cancelled") tusUpload.start();
    });
  }

  function retryUpload(upload) {
    if (upload.status !== "failed" && upload.status !== "exists") return;
    upload.status = "queued";
    upload.message = "Waiting";
    showUploads();
    pump();
  }

  function cancelUpload(upload) {
    const wasRunning = upload.tus;
    upload.status = "cancelled";
    upload.message = "Cancelled";
    if (wasRunning) wasRunning.abort(true).catch(() => {});
    showUploads();
    pump();
  }

  function cancelOrDismiss(upload) {
    if (["queued", "uploading", "retrying"].includes(upload.status)) {
      cancelUpload(upload);
      return;
    }
    // A failed upload leaves the list; its partial upload stays resumable.
    upload.status = "cancelled";
    upload.node.item.remove();
    state.uploads = state.uploads.filter((u) => u !== upload);
    $("uploads").hidden = !state.uploads.length;
    showUploads();
  }

  async function uploaded(target) {
    const prefix = state.folder ? state.folder + "/" : "";
    if (!target.startsWith(prefix) || !can("read", target)) return;
    const response = await api("meta/" + encodePath(target));
    if (!response.ok) return;
    const info = await response.json();
    if (folderFromHash() !== state.folder || !info.path.startsWith(prefix)) return;
    if (info.path.slice(prefix.length).includes("/")) {
      const name = info.path.slice(prefix.length).split("/")[0];
      if (!state.entries.has("d:" + name)) addItem(info, prefix);
      else {
        const folder = state.entries.get("d:" + name);
        folder.count += 1;
        folder.size += info.size;
      }
    } else {
      addItem(info, prefix);
    }
    refreshRows();
  }

  function uploadNode(upload) {
    const label = "Upload of " + upload.target;
    const progress = el("progress", { max: 1, value: 0, "aria-label": label });
    const text = el("span", { class: "detail" });
    const cancel = el("button", { type: "button", "aria-label": "Cancel " + label, on: { click: () => cancelOrDismiss(upload) } }, "Cancel");
    const retry = el("button", { type: "button", "aria-label": "Retry " + label, hidden: true, on: { click: () => retryUpload(upload) } }, "Retry");
    const replace = el("button", {
      type: "button",
      "aria-label": "Replace " + upload.target,
      hidden: true,
      on: {
        click: () => {
          upload.overwrite = true;
          retryUpload(upload);
        },
      },
    }, "Replace");
    const item = el("li", { class: "upload" }, el("span", { class: "target" }, upload.target), progress, text, el("span", { class: "buttons" }, retry, replace, cancel));
    return { item, progress, text, cancel, retry, replace };
  }

  function speedOf(upload) {
    const now = performance.now();
    const recent = upload.samples.filter((s) => now - s.t < 5000);
    upload.samples = recent.length ? recent : upload.samples.slice(-1);
    if (recent.length < 2) return 0;
    const first = recent[0];
    const last = recent[recent.length - 1];
    return last.t > first.t ? ((last.bytes - first.bytes) * 1000) / (last.t - first.t) : 0;
  }

  let uploadsQueued = false;
  function showUploads() {
    if (uploadsQueued) return;
    uploadsQueued = true;
    requestAnimationFrame(() => {
      uploadsQueued = false;
      drawUploads();
    });
  }

  function drawUploads() {
    let sent = 0;
    let total = 0;
    let speed = 0;
    let active = 0;
    for (const upload of state.uploads) {
      const node = upload.node;
      const fraction = upload.total ? upload.sent / upload.total : upload.status === "done" ? 1 : 0;
      node.progress.value = fraction;
      let detail = upload.message;
      if (upload.status === "uploading") {
        const rate = speedOf(upload);
        detail = Math.floor(fraction * 100) + "% of " + formatBytes(upload.total);
        if (rate > 0) detail += " · " + formatBytes(rate) + "/s · " + formatSeconds((upload.total - upload.sent) / rate) + " left";
        speed += rate;
      }
      node.text.textContent = detail;
      node.item.dataset.status = upload.status;
      const live = ["queued", "uploading", "retrying"].includes(upload.status);
      node.cancel.hidden = !live && upload.status !== "failed" && upload.status !== "exists";
      node.cancel.textContent = live ? "Cancel" : "Dismiss";
      node.cancel.setAttribute("aria-label", (live ? "Cancel upload of " : "Dismiss upload of ") + upload.target);
      node.retry.hidden = upload.status !== "failed";
      node.replace.hidden = upload.status !== "exists";
      if (upload.status !== "cancelled") {
        sent += upload.sent;
        total += upload.total;
      }
      if (live) active += 1;
    }
    const done = state.uploads.filter((u) => u.status === "done").length;
    $("uploads-progress").value = total ? sent / total : 0;
    let summary = done + " of " + state.uploads.filter((u) => u.status !== "cancelled").length + " done · " + formatBytes(sent) + " of " + formatBytes(total);
    if (active && speed > 0) summary += " · " + formatBytes(speed) + "/s · " + formatSeconds((total - sent) / speed) + " left";
    $("uploads-total").textContent = summary;
  }

  $("uploads-clear").addEventListener("click", () => {
    state.uploads = state.uploads.filter((u) => {
      const keep = !["done", "cancelled"].includes(u.status);
      if (!keep) u.node.item.remove();
      return keep;
    });
    $("uploads").hidden = !state.uploads.length;
    showUploads();
  });

  // Uploads left unfinished by an earlier visit: tus-js-client kept their URLs.
  async function showPaused() {
    const list = $("paused-list");
    let stored = [];
    try {
      stored = await tus.defaultOptions.urlStorage.findAllUploads();
    } catch (error) {
      stored = [];
    }
    // Those being uploaded again now are shown with the uploads instead.
    const current = new Set(state.uploads.filter((u) => u.status !== "cancelled").map((u) => u.target));
    const mine = stored.filter((s) => s.urlStorageKey.includes(endpoint) && s.metadata && s.metadata.path && !current.has(s.metadata.path));
    list.replaceChildren(
      ...mine.map((s) => {
        const forget = el("button", {
          type: "button",
          "aria-label": "Forget the upload of " + s.metadata.path,
          on: {
            click: async () => {
              await tus.defaultOptions.urlStorage.removeUpload(s.urlStorageKey);
              fetch(s.uploadUrl, { method: "DELETE", headers: authHeaders({ "Tus-Resumable": "1.0.0" }) }).catch(() => {});
              showPaused();
            },
          },
        }, "Forget");
        return el("li", {}, el("span", { class: "target" }, s.metadata.path), el("span", { class: "detail" }, formatBytes(s.size)), forget);
      })
    );
    $("paused").hidden = !mine.length;
  }

  // -- picking and dropping files and folders --------------------------------------------------

  $("upload-files").addEventListener("change", (event) => {
    enqueue(Array.from(event.target.files, (file) => ({ file, relative: file.name })));
    event.target.value = "";
  });
  $("upload-folder").addEventListener("change", (event) => {
    enqueue(Array.from(event.target.files, (file) => ({ file, relative: file.webkitRelativePath || file.name })));
    event.target.value = "";
  });

  function readEntries(reader) {
    return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
  }

  async function walk(entry, out) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, relative: entry.fullPath.replace(/^\/+/, "") });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await readEntries(reader); // at most 100 at a time: read until empty
        if (!batch.length) break;
        for (const child of batch) await walk(child, out);
      }
    }
  }

  let dragDepth = 0;
  const hasFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    $("drop").hidden = !canWriteHere();
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = canWriteHere() ? "copy" : "none";
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) $("drop").hidden = true;
  });
  document.addEventListener("drop", async (event) => {
    event.preventDefault();
    dragDepth = 0;
    $("drop").hidden = true;
    if (!event.dataTransfer) return;
    if (!canWriteHere()) {
      say("This token may not upload here.");
      return;
    }
    // The drop's items are readable only now, before the first await.
    const items = Array.from(event.dataTransfer.items || []).filter((item) => item.kind === "file");
    const entries = items.map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
    const files = Array.from(event.dataTransfer.files || []);
    const picked = [];
    if (entries.length && entries.every(Boolean)) {
      for (const entry of entries) await walk(entry, picked);
    } else {
      for (const file of files) picked.push({ file, relative: file.name });
    }
    enqueue(picked);
  });

  window.addEventListener("beforeunload", (event) => {
    if (state.uploads.some((u) => ["queued", "uploading", "retrying"].includes(u.status))) {
      event.preventDefault(); // uploads resume later, but warn before leaving mid-way
    }
  });

  // -- start -----------------------------------------------------------------------------------

  state.folder = folderFromHash();
  showCrumbs();
  whoami().then((ok) => {
    if (ok) {
      load();
      showPaused();
    }
  });
})();
