"""Side-by-side benchmark: filedock against nginx, uploadserver, copyparty and the original app.

Each server is started alone on loopback, the same workloads run against each, and the
table gives medians of N runs and the ratio of filedock to each reference (above 1: filedock
is faster, or uses less memory for the RSS rows).

    python bench/run.py            # full run: 1 GiB transfers, 10 s wrk runs, 3 runs each
    python bench/run.py --quick    # every workload at small sizes, one run (CI keeps it alive)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import mmap
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MIB = 1 << 20
LABELS = (ROOT / "examples" / "labelsFile.json").read_bytes()


@dataclass
class Sizes:
    big: int
    small: int
    small_count: int
    wrk_seconds: int
    runs: int
    # cost against work (the "scaling" group): JSON document sizes, objects in a listing,
    # concurrent upload clients and the small files each of them uploads
    doc_sizes: tuple[int, ...] = (1 << 10, 100 << 10, 10 << 20)
    list_counts: tuple[int, ...] = (1_000, 10_000, 100_000)
    clients: tuple[int, ...] = (1, 4, 16)
    client_files: int = 32
    slow_clients_everywhere: bool = True  # else only against filedock (keeps --quick short)


FULL = Sizes(big=1 << 30, small=100 << 10, small_count=200, wrk_seconds=10, runs=3)
QUICK = Sizes(big=16 << 20, small=100 << 10, small_count=20, wrk_seconds=2, runs=1,
              doc_sizes=(1 << 10, 100 << 10, 1 << 20), list_counts=(100, 1_000), client_files=4,
              slow_clients_everywhere=False)  # fmt: skip


# -- process helpers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def tree_rss(pid: int) -> int:
    """Resident memory of a process tree, in bytes."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


class RssSampler:
    """Peak RSS of a process tree while a block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()

    def __enter__(self) -> RssSampler:
        self.idle = tree_rss(self.pid)
        self.peak = self.idle
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, tree_rss(self.pid))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A server under test and how each workload addresses it (None: not supported)."""

    name: str
    command: Callable[[Path, int], tuple[list[str], dict[str, str]]]
    root: Callable[[Path], Path]  # the folder it serves, under the work dir
    put: Callable[[str], str] | None = None  # object name -> URL for a raw PUT
    multipart: tuple[str, str] | None = None  # (path, file field)
    form: tuple[str, ...] = ()  # extra -F fields sent before the files
    download: Callable[[str], str] | None = None
    json_get: str | None = None
    json_pointer: str | None = None
    tus: str | None = None
    syncs: bool = False  # answers a write only once it is on disk (fsynced)
    setup: Callable[[Path, int], None] | None = None
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self, work: Path) -> None:
        root = self.root(work)
        root.mkdir(parents=True, exist_ok=True)
        (root / "labelsFile.json").write_bytes(LABELS)
        self.port = free_port()
        if self.setup:
            self.setup(work, self.port)
        argv, env = self.command(work, self.port)
        log = open(work / f"{self.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=log, env={**os.environ, **env}, start_new_session=True
        )
        wait_for_port(self.port, self.proc)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


PY = sys.executable
BIN = Path(sys.executable).parent
WORKERS = 2 * (os.cpu_count() or 1)  # filedock's default, given to every Python server
THREADS = 16


def gunicorn_cmd(
    app: str, worker: str = "gthread"
) -> Callable[[Path, int], tuple[list[str], dict[str, str]]]:
    def command(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
        # the same gunicorn settings as `filedock serve`, access log included
        argv = [str(BIN / "gunicorn"), app, "-b", f"127.0.0.1:{port}", "-w", str(WORKERS),
                "--no-control-socket", "--timeout", "600", "--access-logfile", "-"]  # fmt: skip
        if worker == "gthread":
            argv += ["-k", "gthread", "--threads", str(THREADS)]
        else:
            argv += ["-k", "sync", "-w", str(WORKERS * 2)]
        return argv, {"FILEDOCK_STORE": str(work / "filedock"),
                      "BASELINE_FOLDER": str(work / "baseline"), "PYTHONPATH": str(HERE)}  # fmt: skip

    return command


def filedock_server(
    name: str, command: Callable[[Path, int], tuple[list[str], dict[str, str]]]
) -> Server:
    return Server(
        name=name,
        command=command,
        root=lambda w: w / "filedock",
        put=lambda n: f"/api/v1/files/{n}",
        multipart=("/api/v1/files", "file"),
        form=("overwrite=true",),
        download=lambda n: f"/api/v1/files/{n}",
        json_get="/api/v1/json/labelsFile.json",
        json_pointer="/api/v1/json/labelsFile.json?pointer=/thanos",
        tus="/api/v1/uploads",
        syncs=True,
    )


def filedock_serve(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
    return [str(BIN / "filedock"), "serve", "--store", str(work / "filedock"),
            "--port", str(port), "--workers", str(WORKERS)], {}  # fmt: skip


def granian_cmd(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
    return [str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(WORKERS), "--blocking-threads", str(THREADS),
            "wsgi_filedock:app"], {"FILEDOCK_STORE": str(work / "filedock"), "PYTHONPATH": str(HERE)}  # fmt: skip


def uwsgi_cmd(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
    # --http11-socket: keep-alive, as every other server here has (--http-socket closes after
    # each answer without saying so)
    return [str(BIN / "uwsgi"), "--http11-socket", f"127.0.0.1:{port}", "--master",
            "--processes", str(WORKERS), "--threads", str(THREADS), "--die-on-term",
            "--wsgi-file", str(HERE / "wsgi_filedock.py"), "--callable", "app",
            "--buffer-size", "32768", "--disable-logging"], {"FILEDOCK_STORE": str(work / "filedock")}  # fmt: skip


NGINX_CONF = """
worker_processes 2;
user root;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    types {{ application/json json; }}
    default_type application/octet-stream;
    client_body_temp_path {work}/nginx-tmp;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        root {work}/nginx;
        location / {{
            dav_methods PUT;
            create_full_put_path on;
        }}
    }}
}}
"""


def nginx_setup(work: Path, port: int) -> None:
    (work / "nginx-tmp").mkdir(exist_ok=True)
    (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=port))


def servers(selection: list[str]) -> list[Server]:
    catalogue = {
        "filedock": filedock_server("filedock", filedock_serve),
        "filedock-sync": filedock_server(
            "filedock-sync", gunicorn_cmd("wsgi_filedock:app", "sync")
        ),
        "filedock-granian": filedock_server("filedock-granian", granian_cmd),
        "filedock-uwsgi": filedock_server("filedock-uwsgi", uwsgi_cmd),
        "nginx": Server(
            name="nginx",
            command=lambda w, p: (["nginx", "-c", str(w / "nginx.conf"), "-p", str(w)], {}),
            root=lambda w: w / "nginx",
            setup=nginx_setup,
            put=lambda n: f"/{n}",
            download=lambda n: f"/{n}",
            json_get="/labelsFile.json",
        ),
        "uploadserver": Server(
            name="uploadserver",
            command=lambda w, p: (
                [
                    PY,
                    "-m",
                    "uploadserver",
                    "--allow-replace",
                    "-b",
                    "127.0.0.1",
                    "-d",
                    str(w / "uploadserver"),
                    str(p),
                ],
                {},
            ),  # fmt: skip
            root=lambda w: w / "uploadserver",
            multipart=("/upload", "files"),
            download=lambda n: f"/{n}",
            json_get="/labelsFile.json",
        ),
        "copyparty": Server(
            name="copyparty",
            command=lambda w, p: (
                [
                    str(BIN / "copyparty"),
                    "-q",
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(p),
                    "-v",
                    f"{w / 'copyparty'}::rw",
                    "--no-thumb",
                    "--hist",
                    str(w / "copyparty-hist"),
                ],
                {},
            ),  # fmt: skip
            root=lambda w: w / "copyparty",
            put=lambda n: f"/{n}",
            multipart=("/?act=bput", "f"),
            download=lambda n: f"/{n}",
            json_get="/labelsFile.json",
        ),
        "baseline": Server(
            name="baseline",
            command=gunicorn_cmd("baseline_app:app"),
            root=lambda w: w / "baseline",
            multipart=("/uploadFiles", "FILES_LIST"),
            json_get="/getJsonFromFile/labelsFile.json",
        ),
    }
    return [catalogue[name] for name in selection]


# -- workloads -------------------------------------------------------------------------------


def curl(*args: str) -> float:
    """Run curl, check it got a 2xx, and return the seconds it took."""
    start = time.perf_counter()
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\n", "-H", "Expect:", *args],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    codes = result.stdout.split()
    if result.returncode != 0 or not codes or not all(c.startswith("2") for c in codes):
        raise RuntimeError(
            f"curl {args[:3]}: exit {result.returncode} {codes[-3:]} {result.stderr[:200]}"
        )
    return elapsed


@dataclass
class Result:
    value: float
    unit: str  # "MiB/s", "req/s", "ms", "MiB"
    higher_is_better: bool = True


@dataclass
class Context:
    sizes: Sizes
    work: Path
    payload: Path
    smalls: list[Path] = field(default_factory=list)


def throughput(size: int, seconds: float) -> Result:
    return Result(size / MIB / seconds, "MiB/s")


def fsync_seconds(paths: list[Path]) -> float:
    """The time it takes to make what a server wrote durable: an fsync of each file, then of
    each folder that got one. Added to the time of a server that answers before its writes
    are on disk, so that it is compared like with like (filedock answers after both)."""
    start = time.perf_counter()
    for path in paths:
        if not path.is_file():
            raise RuntimeError(f"{path.name} is not where the server should have written it")
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in sorted({path.parent for path in paths}):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - start


def durable(
    s: Server,
    c: Context,
    label: str,
    seconds: float,
    paths: list[Path],
    result: Callable[[float], Result],
) -> list[tuple[str, Result]]:
    """The workload's result, on disk: as measured for a server that syncs; for one that does
    not, with the fsyncs of what it wrote added, and its answer-only time beside it."""
    if s.syncs:
        return [(label, result(seconds))]
    synced = seconds + fsync_seconds(paths)
    return [(label, result(synced)), (f"{label}, not synced", result(seconds))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by pid's process tree (live processes)."""
    ticks = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def w_put(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    if not s.put:
        return None
    assert s.proc is not None
    cpu = cpu_seconds(s.proc.pid)
    seconds = curl("-T", str(c.payload), s.url + s.put("big.bin"))
    cpu = cpu_seconds(s.proc.pid) - cpu
    out = durable(s, c, "raw PUT", seconds, [s.root(c.work) / "big.bin"],
                  lambda t: throughput(c.sizes.big, t))  # fmt: skip
    return out + [
        ("server CPU per GiB, raw PUT", Result(cpu * (1 << 30) / c.sizes.big, "s", False))
    ]


def w_multipart(s: Server, c: Context) -> Result | None:
    if not s.multipart:
        return None
    path, name = s.multipart
    fields = [a for f in s.form for a in ("-F", f)]
    return throughput(
        c.sizes.big, curl(*fields, "-F", f"{name}=@{c.payload};filename=mp.bin", s.url + path)
    )


def w_many_one_request(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    if not s.multipart:
        return None
    path, name = s.multipart
    args = [a for f in s.form for a in ("-F", f)] + [
        a for p in c.smalls for a in ("-F", f"{name}=@{p}")
    ]
    total = c.sizes.small * len(c.smalls)
    seconds = curl(*args, s.url + path)
    written = [s.root(c.work) / p.name for p in c.smalls]
    return durable(s, c, "small files, one request", seconds, written,
                   lambda t: throughput(total, t))  # fmt: skip


def w_many_per_request(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    """One request per file over one keep-alive connection: raw PUT where the server has it."""
    args: list[str] = []
    root = s.root(c.work)
    written = []
    for i, p in enumerate(c.smalls):
        if i:
            args.append("--next")
        if s.put:
            args += ["-T", str(p), s.url + s.put(f"small/{p.name}")]
            written.append(root / "small" / p.name)
        elif s.multipart:
            args += [a for f in s.form for a in ("-F", f)]
            args += ["-F", f"{s.multipart[1]}=@{p}", s.url + s.multipart[0]]
            written.append(root / p.name)
        else:
            return None
        args += ["-o", "/dev/null", "-w", "%{http_code}\n", "-H", "Expect:", "-sS"]
    count = len(c.smalls)
    return durable(s, c, "small files, one per request", curl(*args), written,
                   lambda t: Result(count / t, "files/s"))  # fmt: skip


def w_download(s: Server, c: Context) -> Result | None:
    if not s.download:
        return None
    return throughput(c.sizes.big, curl(s.url + s.download("dl.bin")))


def w_range(s: Server, c: Context) -> Result | None:
    if not s.download or s.name == "uploadserver":  # http.server ignores Range
        return None
    half = c.sizes.big // 2
    return throughput(c.sizes.big - half, curl("-r", f"{half}-", s.url + s.download("dl.bin")))


def w_tus(s: Server, c: Context) -> Result | None:
    if not s.tus:
        return None
    from tusclient import client as tus_client

    uploader = tus_client.TusClient(s.url + s.tus).uploader(
        str(c.payload), chunk_size=8 * MIB, metadata={"path": "tus.bin", "overwrite": "true"}
    )
    start = time.perf_counter()
    uploader.upload()
    return throughput(c.sizes.big, time.perf_counter() - start)


def w_tus_one_connection(s: Server, c: Context) -> Result | None:
    """The same tus upload from a client that keeps one connection and sends the chunks
    straight from the page cache: what the server's tus path costs without tuspy's per-chunk
    connection and copies (tuspy calls requests.patch without a session)."""
    if not s.tus:
        return None
    url = urllib.parse.urlsplit(s.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=600)
    tus = {"Tus-Resumable": "1.0.0"}
    with open(c.payload, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            start = time.perf_counter()
            target = base64.b64encode(b"tus-one.bin").decode()
            conn.request("POST", s.tus, headers=tus | {
                "Upload-Length": str(len(data)),
                "Upload-Metadata": f"path {target},overwrite {base64.b64encode(b'true').decode()}",
            })  # fmt: skip
            created = conn.getresponse()
            created.read()
            location, offset = created.getheader("Location") or "", 0
            while offset < len(data):
                # released however the request ends, or the mmap cannot close
                with memoryview(data)[offset : offset + 8 * MIB] as chunk:
                    conn.request("PATCH", location, body=chunk, headers=tus | {
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream",
                    })  # fmt: skip
                    answer = conn.getresponse()
                    answer.read()
                if answer.status != 204:
                    raise RuntimeError(f"PATCH answered {answer.status}")
                offset = int(answer.getheader("Upload-Offset") or 0)
            return throughput(len(data), time.perf_counter() - start)
        finally:
            conn.close()


def wrk(url: str, seconds: int) -> tuple[float, float, float]:
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return rps, pct("50"), pct("99")


def w_json(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    if not s.json_get:
        return None
    rps, p50, p99 = wrk(s.url + s.json_get, c.sizes.wrk_seconds)
    return [("json GET", Result(rps, "req/s")), ("json GET p50", Result(p50, "ms", False)),
            ("json GET p99", Result(p99, "ms", False))]  # fmt: skip


def w_json_compat(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    if not s.name.startswith("filedock"):
        return None
    rps, _, _ = wrk(s.url + "/getJsonFromFile/labelsFile.json", c.sizes.wrk_seconds)
    return [("json GET (original endpoint)", Result(rps, "req/s"))]


def w_pointer(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    if not s.json_pointer:
        return None
    rps, p50, p99 = wrk(s.url + s.json_pointer, c.sizes.wrk_seconds)
    return [
        ("json pointer GET", Result(rps, "req/s")),
        ("json pointer p99", Result(p99, "ms", False)),
    ]


def size_label(size: int) -> str:
    return f"{size >> 20} MiB" if size >= MIB else f"{size >> 10} KiB"


def json_document(size: int) -> bytes:
    """A JSON object of about size bytes: short string values, as configuration files have."""
    count = max(1, size // 40)
    return json.dumps({f"key{i:08d}": f"value {i:020d}" for i in range(count)}).encode()


def w_doc_sizes(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    """JSON GET req/s for documents of growing size."""
    if not s.json_get or "labelsFile.json" not in s.json_get:
        return None
    out = []
    for size in c.sizes.doc_sizes:
        name = f"doc{size}.json"
        path = s.root(c.work) / name
        if not path.exists():
            path.write_bytes(json_document(size))
        url = s.url + s.json_get.replace("labelsFile.json", name)
        rps, _, _ = wrk(url, max(1, c.sizes.wrk_seconds // 2))
        out.append((f"json GET, {size_label(size)} document", Result(rps, "req/s")))
    return out


def w_listing(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    """Time to list every object under a prefix (1000 a page), by number of objects."""
    if not s.name.startswith("filedock"):
        return None
    out = []
    for count in c.sizes.list_counts:
        folder = s.root(c.work) / f"list{count}"
        if not folder.exists():
            folder.mkdir()
            for i in range(count):
                (folder / f"o{i:07d}").write_bytes(b"x")
        seconds = []
        for _ in range(2):  # the first pass also computes the hand-placed files' hashes
            start, cursor, seen = time.perf_counter(), "", 0
            while True:
                query = f"prefix=list{count}/&limit=1000" + (f"&cursor={cursor}" if cursor else "")
                with urllib.request.urlopen(f"{s.url}/api/v1/files?{query}", timeout=600) as r:
                    page = json.load(r)
                seen += len(page["items"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            seconds.append(time.perf_counter() - start)
            if seen != count:
                raise RuntimeError(f"listing gave {seen} of {count} objects")
        out.append((f"listing, {count:,} objects", Result(seconds[-1] * 1000, "ms", False)))
    return out


def w_clients(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    """Small-file PUTs per second with 1, 4, 16 clients at once (one keep-alive connection
    each, every file its own request)."""
    if not s.put:
        return None
    body = os.urandom(c.sizes.small)
    url = urllib.parse.urlsplit(s.url)
    put = s.put

    def client(n: int, k: int) -> None:
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=600)
        try:
            for i in range(c.sizes.client_files):
                conn.request("PUT", put(f"c{n}-{k}-{i}.bin"), body=body)
                response = conn.getresponse()
                response.read()
                if response.status // 100 != 2:
                    raise RuntimeError(f"PUT answered {response.status}")
        finally:
            conn.close()

    out = []
    for n in c.sizes.clients:
        os.sync()
        with ThreadPoolExecutor(n) as pool:
            start = time.perf_counter()
            for future in [pool.submit(client, n, k) for k in range(n)]:
                future.result()
            seconds = time.perf_counter() - start
        files = n * c.sizes.client_files
        out.append((f"small-file PUTs, {n} clients", Result(files / seconds, "files/s")))
    return out


def w_slow_clients(s: Server, c: Context) -> list[tuple[str, Result]] | None:
    """Median time of a JSON GET while 256 connections are open that send nothing, or a
    request head a byte a second."""
    if not s.json_get or not (c.sizes.slow_clients_everywhere or s.name == "filedock"):
        return None
    clients: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(256):
            clients.append(socket.create_connection(("127.0.0.1", s.port), timeout=30))
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000

        def trickle() -> None:
            for byte in head:
                for sock in clients[:128]:
                    with contextlib.suppress(OSError):
                        sock.sendall(bytes([byte]))
                if stop.wait(1):
                    return

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(2)  # let the server take them all in
        seconds = []
        for _ in range(7):
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(s.url + s.json_get, timeout=5) as r:
                    r.read()
            except TimeoutError:
                raise RuntimeError("no answer within 5 s with 256 slow clients") from None
            seconds.append(time.perf_counter() - start)
    finally:
        stop.set()
        for sock in clients:
            sock.close()
    return [
        ("JSON GET with 256 slow clients", Result(statistics.median(seconds) * 1000, "ms", False)),
        ("JSON GET with 256 slow clients, slowest of 7", Result(max(seconds) * 1000, "ms", False)),
    ]


TRANSFERS: list[
    tuple[str, Callable[[Server, Context], Result | list[tuple[str, Result]] | None]]
] = [
    ("raw PUT", w_put),
    ("multipart upload", w_multipart),
    ("tus upload (8 MiB chunks)", w_tus),
    ("tus upload (8 MiB chunks), one connection", w_tus_one_connection),
    ("download", w_download),
    ("range download (2nd half)", w_range),
]
SMALL: list[tuple[str, Callable[[Server, Context], list[tuple[str, Result]] | None]]] = [
    ("small files, one request", w_many_one_request),
    ("small files, one per request", w_many_per_request),
]
RATES = [w_json, w_json_compat, w_pointer]
SCALING = [w_doc_sizes, w_listing, w_clients, w_slow_clients]


GROUPS = ("transfers", "small", "json", "scaling")
FAILURES: list[str] = []


def attempt(s: Server, label: str, fn: Callable[[Server, Context], T], c: Context) -> T | None:
    """Run one workload; a failure is reported with the results instead of ending the run."""
    try:
        return fn(s, c)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        errors = error_lines(c.work / f"{s.name}.log")
        FAILURES.append(
            f"{s.name}, {label}: {str(exc)[:300]}" + "".join(f"\n  {e}" for e in errors)
        )
        print(f"{s.name}: {label} failed: {exc}", *errors, sep="\n", file=sys.stderr, flush=True)
        return None


ERROR_ANSWER = re.compile(r'" [45]\d\d |Traceback|Error')


def error_lines(log: Path, most: int = 5) -> list[str]:
    """The last error answers and tracebacks in a server's log, to tell why a workload failed
    (the log goes with the work folder at the end of the run)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line[:300] for line in lines if ERROR_ANSWER.search(line)][-most:]


def run_server(
    s: Server, c: Context, runs: int, groups: tuple[str, ...] = GROUPS
) -> dict[str, list[Result]]:
    """Every workload against one server, `runs` times; RSS sampled during big transfers."""
    out: dict[str, list[Result]] = {}
    root = s.root(c.work)
    s.start(c.work)
    try:
        dl = root / "dl.bin"
        if not dl.exists():
            os.link(c.payload, dl)
        if s.download:
            curl(
                "-r", "0-0", s.url + s.download("dl.bin")
            )  # warm: hand-placed files get hashed once
        for _ in range(runs):
            for label, fn in TRANSFERS if "transfers" in groups else []:
                assert s.proc is not None
                os.sync()  # start every transfer with no other writes still pending on the disk
                with RssSampler(s.proc.pid) as rss:
                    result = attempt(s, label, fn, c)
                if result is None:
                    continue
                for name, value in [(label, result)] if isinstance(result, Result) else result:
                    out.setdefault(name, []).append(value)
                out.setdefault(f"peak RSS over idle, {label}", []).append(
                    Result((rss.peak - rss.idle) / MIB, "MiB", False)
                )
            for label, fn in SMALL if "small" in groups else []:
                for name, value in attempt(s, label, fn, c) or []:
                    out.setdefault(name, []).append(value)
            for scaling in SCALING if "scaling" in groups else []:
                for label, result in attempt(s, scaling.__name__, scaling, c) or []:
                    out.setdefault(label, []).append(result)
            for stale in ("big.bin", "mp.bin", "tus.bin", "tus-one.bin"):
                (root / stale).unlink(missing_ok=True)
            if not s.syncs:  # so that the next run writes new files, as the fsyncs assume
                shutil.rmtree(root / "small", ignore_errors=True)
                for p in c.smalls:
                    (root / p.name).unlink(missing_ok=True)
    finally:
        s.stop()
    return out


def interleaved_rates(
    selection: list[Server], c: Context, rounds: int
) -> dict[str, dict[str, list[Result]]]:
    """The small-request workloads (wrk) with every server running at once, taking turns:
    round after round, each server in turn. A shared machine's speed drifts over minutes
    (two identical 10 s runs a few minutes apart differed by up to 2× here); taking turns
    gives every server the same share of fast and slow moments, so the ratios compare the
    servers rather than the moments they were measured in."""
    out: dict[str, dict[str, list[Result]]] = {s.name: {} for s in selection}
    started: list[Server] = []
    try:
        for s in selection:
            s.start(c.work)
            started.append(s)
        for _ in range(rounds):
            for s in started:
                for rate in RATES:
                    for label, result in attempt(s, rate.__name__, rate, c) or []:
                        out[s.name].setdefault(label, []).append(result)
    finally:
        for s in started:
            s.stop()
    return out


# -- report ----------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}; client and server on the same machine over loopback")  # fmt: skip


def versions() -> str:
    def pip_version(name: str) -> str:
        try:
            from importlib.metadata import version

            return version(name)
        except Exception:
            return "?"

    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return ", ".join([
        nginx.replace("nginx version: ", ""),
        f"gunicorn {pip_version('gunicorn')}", f"uploadserver {pip_version('uploadserver')}",
        f"copyparty {pip_version('copyparty')}", f"granian {pip_version('granian')}",
        f"uwsgi {pip_version('uwsgi')}", f"Flask {pip_version('flask')}",
    ])  # fmt: skip


def fmt(r: Result | None) -> str:
    if r is None:
        return "–"
    return f"{r.value:,.0f} {r.unit}" if r.value >= 100 else f"{r.value:,.1f} {r.unit}"


def median(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.value for r in results), results[0].unit, results[0].higher_is_better
    )


def ratio(ours: Result | None, theirs: Result | None) -> float | None:
    if ours is None or theirs is None or not theirs.value or not ours.value:
        return None
    return ours.value / theirs.value if ours.higher_is_better else theirs.value / ours.value


def report(results: dict[str, dict[str, Result]], sizes: Sizes, names: list[str]) -> str:
    labels: list[str] = []
    for per in results.values():
        labels += [label for label in per if label not in labels]
    refs = [n for n in names if n != "filedock"]
    lines = ["| workload | " + " | ".join(names) + " | " + " | ".join(f"÷ {r}" for r in refs) + " |",
             "|---" * (1 + len(names) + len(refs)) + "|"]  # fmt: skip
    for label in labels:
        cells = [fmt(results[n].get(label)) for n in names]
        ours = results.get("filedock", {}).get(label)
        rs = [ratio(ours, results[r].get(label)) for r in refs]
        lines.append(f"| {label} | " + " | ".join(cells) + " | "
                     + " | ".join("–" if x is None else f"{x:.2f}×" for x in rs) + " |")  # fmt: skip
    size = f"{sizes.big / MIB:,.0f} MiB"
    head = (f"Transfers of {size}; {sizes.small_count} files of {sizes.small >> 10} KiB; JSON with "
            f"`wrk -t2 -c32 -d{sizes.wrk_seconds}s`, the servers running at once and taking "
            f"turns, median of {max(3, sizes.runs)} rounds; everything else median of "
            f"{sizes.runs} run(s), one server at a time. Ratios are "
            "filedock ÷ reference, oriented so that above 1× means filedock is better.")  # fmt: skip
    return head + "\n\n" + "\n".join(lines) + "\n"


def targets(results: dict[str, dict[str, Result]]) -> str:
    """The serving core's targets, each checked against the figures of this run."""
    fd = results.get("filedock", {})

    def get(server: str, label: str) -> Result | None:
        return results.get(server, {}).get(label)

    def at_least(
        label: str, ours: str, server: str, theirs: str, goal: float
    ) -> tuple[str, str, bool | None]:
        value = ratio(fd.get(ours), get(server, theirs))
        return (
            label,
            "–" if value is None else f"{value:.2f}×",
            None if value is None else value >= goal,
        )

    def at_most(
        label: str, ours: Result | None, limit: float, unit: str
    ) -> tuple[str, str, bool | None]:
        if ours is None:
            return label, "–", None
        return label, f"{ours.value:,.1f} {unit}", ours.value <= limit

    def p99(ref: str) -> tuple[str, str, bool | None]:
        ours, theirs = fd.get("json GET p99"), get(ref, "json GET p99")
        if ours is None or theirs is None:
            return f"JSON GET p99 no worse than {ref}'s", "–", None
        return (f"JSON GET p99 no worse than {ref}'s",
                f"{ours.value:.1f} ms against {theirs.value:.1f} ms", ours.value <= theirs.value)  # fmt: skip

    rss = [r.value for label, r in fd.items() if label.startswith("peak RSS over idle")]
    checks = [
        at_least("raw PUT ≥ 0.9× nginx (its PUT + fsync)", "raw PUT", "nginx", "raw PUT", 0.9),
        at_least(
            "raw PUT ≥ 1.0× copyparty (its PUT + fsync)", "raw PUT", "copyparty", "raw PUT", 1.0
        ),
        at_most(
            "server CPU per GiB uploaded ≤ 2 s", fd.get("server CPU per GiB, raw PUT"), 2.0, "s"
        ),
        at_least(
            "multipart ≥ 0.9× filedock's raw PUT", "multipart upload", "filedock", "raw PUT", 0.9
        ),
        at_least(
            "tus (8 MiB chunks) ≥ 0.8× filedock's raw PUT",
            "tus upload (8 MiB chunks)",
            "filedock",
            "raw PUT",
            0.8,
        ),  # fmt: skip
        at_least("JSON GET ≥ 1.0× copyparty", "json GET", "copyparty", "json GET", 1.0),
        at_least("JSON GET ≥ 2× the original handlers", "json GET", "baseline", "json GET", 2.0),
        p99("copyparty"),
        p99("baseline"),
        at_least(
            "small files, one request each (durable) ≥ 1.0× the original handlers (+ fsync)",
            "small files, one per request",
            "baseline",
            "small files, one per request",
            1.0,
        ),  # fmt: skip
        at_least(
            "small-file PUTs, 16 clients ≥ 0.5× copyparty (not synced)",
            "small-file PUTs, 16 clients",
            "copyparty",
            "small-file PUTs, 16 clients",
            0.5,
        ),  # fmt: skip
        at_least("download ≥ 0.95× nginx", "download", "nginx", "download", 0.95),
        at_most(
            "memory flat: peak RSS over idle during every transfer ≤ 32 MiB",
            Result(max(rss), "MiB") if rss else None,
            32,
            "MiB",
        ),  # fmt: skip
        at_most(
            "with 256 slow connections, the slowest of 7 GETs ≤ 1,000 ms",
            fd.get("JSON GET with 256 slow clients, slowest of 7"),
            1000,
            "ms",
        ),  # fmt: skip
    ]
    lines = ["| target | measured | met |", "|---|---|---|"]
    for label, shown, met in checks:
        lines.append(f"| {label} | {shown} | {'–' if met is None else ('yes' if met else 'no')} |")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, dict[str, Result]], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = [n for n in names if n != "filedock" and not n.startswith("filedock-")]
    labels = [label for label in results.get("filedock", {}) if not label.startswith("peak RSS")
              and "p50" not in label and "p99" not in label]  # fmt: skip
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(labels) * max(1, len(refs)) + 1.5))
    height = 0.8 / max(1, len(refs))
    for i, ref in enumerate(refs):
        values = [ratio(results["filedock"].get(lb), results[ref].get(lb)) or 0 for lb in labels]
        ys = [j + i * height for j in range(len(labels))]
        ax.barh(ys, values, height=height, label=ref)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.set_xlabel("filedock ÷ reference (above 1: filedock better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def scaling_chart(results: dict[str, dict[str, Result]], names: list[str], path: Path) -> None:
    """Cost against work: one panel per scaling workload, a line per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("json GET, ", "document size", "req/s"), ("listing, ", "objects", "ms"),
              ("small-file PUTs, ", "concurrent clients", "files/s")]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.5))
    for ax, (prefix, xlabel, unit) in zip(axes, panels, strict=True):
        for name in names:
            points = [(label[len(prefix):].rsplit(" ", 1)[0], r.value)
                      for label, r in results.get(name, {}).items() if label.startswith(prefix)]  # fmt: skip
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(unit)
        ax.set_title(prefix.rstrip(", "))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run")
    parser.add_argument(
        "--servers",
        default="filedock,nginx,uploadserver,copyparty,baseline,"
        "filedock-sync,filedock-granian,filedock-uwsgi",
    )
    parser.add_argument(
        "--only", default=",".join(GROUPS), help="workload groups: " + ",".join(GROUPS)
    )
    parser.add_argument(
        "--out", help="markdown report (default docs/benchmarks.md, or bench/results/ with --quick)"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    names = args.servers.split(",")
    out = Path(args.out) if args.out else (
        HERE / "results" / "quick.md" if args.quick else ROOT / "docs" / "benchmarks-results.md")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="filedock-bench-") as tmp:
        work = Path(tmp)
        payload = work / "payload.bin"
        with open(payload, "wb") as f:
            block = os.urandom(MIB)
            for i in range(sizes.big // MIB):
                f.write(block[i % 251 :] + block[: i % 251])
        smalls = []
        (work / "small").mkdir()
        for i in range(sizes.small_count):
            p = work / "small" / f"s{i:03d}.bin"
            p.write_bytes(os.urandom(sizes.small))
            smalls.append(p)
        context = Context(sizes, work, payload, smalls)
        groups = tuple(args.only.split(","))
        raws: dict[str, dict[str, list[Result]]] = {}
        if "json" in groups:
            t0 = time.perf_counter()
            raws = interleaved_rates(servers(names), context, max(3, sizes.runs))
            print(f"small requests: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        results: dict[str, dict[str, Result]] = {}
        for server in servers(names):
            t0 = time.perf_counter()
            raw = raws.get(server.name, {}) | run_server(server, context, sizes.runs, groups)
            results[server.name] = {label: median(rs) for label, rs in raw.items()}
            print(f"{server.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    table = report(results, sizes, names)
    goals = targets(results)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    counts = Counter(FAILURES)  # the same failure in every run is listed once
    failed = "".join(
        f"\n- failed{f' ({n} times)' if n > 1 else ''}: {line}" for line, n in counts.items()
    )
    text = f"Run {stamp} on {machine()}.\n\n{versions()}\n\n{table}\n{goals}{failed}\n"
    out.write_text(text)
    (out.with_suffix(".json")).write_text(json.dumps(
        {n: {lb: [r.value, r.unit] for lb, r in per.items()} for n, per in results.items()}, indent=1))  # fmt: skip
    chart(results, names, out.with_suffix(".png"))
    if any(label.startswith("listing, ") for per in results.values() for label in per):
        scaling_chart(results, names, out.with_name(out.stem + "-scaling.png"))
    print(text)


if __name__ == "__main__":
    if not shutil.which("curl") or not shutil.which("wrk") or not shutil.which("nginx"):
        sys.exit("bench needs curl, wrk and nginx: run `make bench`, which installs them")
    main()
