"""The production server: filedock's app under gunicorn with threaded workers."""

from __future__ import annotations

import errno
import html
import ipaddress
import json
import os
import queue
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker
from prometheus_client import multiprocess

from . import tokenstore
from .app import create_app
from .config import Settings
from .errors import problem_body
from .metrics import MULTIPROC_ENV
from .storage import open_storage

# A gthread worker's main loop heartbeats the arbiter while its threads serve requests, so this
# timeout bounds a hung worker, never the length of an upload or download.
WORKER_TIMEOUT_SECONDS = 60
# On SIGTERM / Ctrl-C, requests in flight (an upload being committed) get this long to finish.
GRACEFUL_TIMEOUT_SECONDS = 30
# gunicorn's default access line, then the request id (the response's X-Request-ID, so a
# generated id is logged too) and the worker's pid.
ACCESS_LOG_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
    "request_id=%({x-request-id}o)s worker=%(p)s"
)


class ServeError(RuntimeError):
    """The server refuses to start, with the reason for the user."""


def is_loopback(host: str) -> bool:
    """Is host an address (or name) that only this machine can reach?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to open a server with no tokens beyond loopback unless explicitly allowed."""
    if settings.tokens or settings.allow_anonymous or is_loopback(settings.host):
        return
    if tokenstore.holds_tokens(open_storage(settings)):
        return
    raise ServeError(
        f"refusing to listen on {settings.host}: no tokens are configured, so anyone who can "
        "reach it could read and write the store. Create a token with "
        "'filedock token create --config FILE --scope read,write' and pass --config FILE "
        "(or keep it in the store: 'filedock token create --store STORE ...'), "
        "or pass --allow-anonymous to serve it open on purpose."
    )


def check_address(settings: Settings) -> None:
    """Refuse, with the reason, an address the server cannot listen on (a port in use, a
    name that does not resolve, an address not on this host): gunicorn itself would retry
    for five seconds and exit with log lines instead. It binds the same way (an IPv6 socket
    for an IPv6 address, else IPv4, with SO_REUSEADDR)."""
    bare = settings.host.strip("[]")
    family = socket.AF_INET6 if util.is_ipv6(bare) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bare, settings.port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            where = f"{settings.host} port {settings.port}"
            raise ServeError(f"cannot listen on {where}: {reason}") from None


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """gunicorn settings for filedock."""
    bare = settings.host.strip("[]")  # ::1 and [::1] both name the IPv6 loopback
    host = f"[{bare}]" if ":" in bare else bare

    def when_ready(server: Any) -> None:
        for listener in server.LISTENERS:
            name = listener.sock.getsockname()
            address = f"[{name[0]}]" if ":" in name[0] else name[0]
            print(f"filedock: serving {settings.store} at http://{address}:{name[1]}/", flush=True)

    return {
        "post_fork": remember_arbiter,
        "post_worker_init": exit_if_stopped_while_booting,
        "child_exit": forget_worker_metrics,
        "bind": [f"{host}:{settings.port}"],
        "workers": settings.workers,
        "worker_class": f"{__name__}.Worker",
        "threads": settings.threads,
        "timeout": WORKER_TIMEOUT_SECONDS,
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
        "keepalive": 5,
        # gunicorn's default (4094 bytes) is shorter than some valid requests: a listing with
        # a 1024-byte prefix percent-encoded (up to 3072 characters) and the cursor after a
        # 1024-byte path. Those got gunicorn's own HTML 414; 8190 is gunicorn's maximum.
        "limit_request_line": 8190,
        # gunicorn's control socket lives under ~/.gunicorn/ and is shared by every server
        # of the user: two filedock servers would fight over it.
        "control_socket_disable": True,
        "when_ready": when_ready,
        # One line per request on stdout; under load the line costs more than a small JSON
        # answer does (threads queue for the log handler's lock), hence the setting.
        "accesslog": "-" if settings.access_log else None,
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "proc_name": "filedock",
    }


STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


def remember_arbiter(server: Any, worker: Any) -> None:
    """In a new worker: keep the arbiter object this process inherited."""
    worker.filedock_arbiter = server


def forget_worker_metrics(server: Any, worker: Any) -> None:
    """In the arbiter, when a worker has exited: let prometheus-client drop what only a
    live process reports (its counts stay, and /metrics keeps adding them up)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(worker.pid, path)  # type: ignore[no-untyped-call]


def exit_if_stopped_while_booting(worker: Any) -> None:
    """A stop signal that reaches a worker between fork() and the moment it installs its own
    handlers runs the arbiter's inherited handler, which only queues it in this process's copy
    of the arbiter: the worker would then serve on until graceful_timeout ends it. Look there
    once the worker's handlers are in place, and stop as the signal asked."""
    arbiter = getattr(worker, "filedock_arbiter", None)
    if arbiter is None:
        return
    pending = []
    with suppress(queue.Empty):
        while True:
            pending.append(arbiter.SIG_QUEUE.get_nowait())
    if STOP_SIGNALS.intersection(pending):
        worker.alive = False


# gunicorn's own error page, for a request it refuses before the app sees it.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
_MESSAGE = re.compile(rb"</h1>\s*(.*?)\s*</body>", re.DOTALL)
# The problem code of each status gunicorn answers with itself.
GUNICORN_CODES = {403: "forbidden", 414: "too-large", 431: "too-large", 500: "internal"}


class _Capture:
    """The client socket, but what is written to it is kept instead of sent."""

    def __init__(self, sock: Any) -> None:
        self.sock, self.data = sock, b""

    def gettimeout(self) -> float:
        return 0.0  # already non-blocking: gunicorn writes straight to sendall()

    def sendall(self, data: bytes) -> None:
        self.data += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def problem_page(page: bytes) -> bytes:
    """gunicorn's HTML error response, as the application/problem+json the API promises."""
    status_line = _STATUS_LINE.match(page)
    status = int(status_line.group(1)) if status_line else 400
    message = _MESSAGE.search(page)
    detail = html.unescape(message.group(1).decode("latin-1")) if message else ""
    title = page.split(b"\r\n", 1)[0].split(b" ", 2)[-1].decode("latin-1")
    code = GUNICORN_CODES.get(status, "bad-request")
    body = json.dumps(problem_body(status, code, detail, title)).encode()
    head = (
        f"HTTP/1.1 {status} {title}\r\nConnection: close\r\n"
        f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class GuardedSocket(socket.socket):
    """A client connection that may not stall. In blocking mode (gunicorn's threads read and
    write that way) each read, and each write of a chunk, waits at most `seconds` for the
    client, then fails as a reset connection: what gunicorn and the app already do for a client
    that left (the request ends, a partial upload is removed, the thread is free again)."""

    __slots__ = ()
    seconds: float = 60.0

    def setblocking(self, flag: bool) -> None:
        """Blocking means: with the stall timeout."""
        if flag:
            self.settimeout(self.seconds)
        else:
            super().setblocking(False)

    def recv(self, *args: Any) -> bytes:
        with self._stalls():
            return super().recv(*args)

    def recv_into(self, *args: Any) -> int:
        with self._stalls():
            return super().recv_into(*args)

    def sendall(self, *args: Any) -> None:
        with self._stalls():
            super().sendall(*args)

    def sendfile(self, *args: Any, **kwargs: Any) -> int:
        with self._stalls():
            return super().sendfile(*args, **kwargs)

    @contextmanager
    def _stalls(self) -> Iterator[None]:
        try:
            yield
        except TimeoutError:
            detail = f"the client stalled for over {self.seconds:g} s"
            raise ConnectionResetError(errno.ECONNRESET, detail) from None


class Worker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, with two changes.

    - A client may not hold a thread by stalling: gunicorn only bounds the wait for a new
      connection's first bytes; here every read and write of a request is bounded by
      `client_timeout` (GuardedSocket). Without it, `threads` clients that send half a request,
      or never read a download, leave the worker unable to answer anyone.
    - The requests gunicorn refuses itself (a malformed request line or header, a line over
      the limit) are answered in problem+json like the rest of the API, not in HTML. gunicorn
      still decides the status, logs and counts the request."""

    def init_process(self) -> None:
        """Take the stall timeout from filedock's settings, then run."""
        GuardedSocket.seconds = self.app.settings.client_timeout
        super().init_process()

    def handle(self, conn: Any) -> Any:
        """Serve a connection through a GuardedSocket."""
        if type(conn.sock) is socket.socket:
            conn.sock.__class__ = GuardedSocket
        return super().handle(conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Let gunicorn write its page to a capture, then send it as a problem."""
        capture = _Capture(client)
        super().handle_error(req, capture, addr, exc)
        if capture.data:
            with suppress(OSError):
                util.write_nonblock(client, problem_page(capture.data))


class Server(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured from Settings, loading create_app(settings) in each worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        """Apply filedock's options to gunicorn's config."""
        for name, value in gunicorn_options(self.settings).items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        """The WSGI app of each worker."""
        return create_app(self.settings)


def serve(settings: Settings) -> None:
    """Run the server until SIGTERM or Ctrl-C."""
    check_exposure(settings)
    check_address(settings)
    try:
        create_app(settings)  # fail here, with a clear message, if the store cannot be opened
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "not a folder"  # makedirs() met a file where a folder should be
        if exc.filename and os.path.abspath(exc.filename) != os.path.abspath(settings.store):
            reason = f"{exc.filename}: {reason}"
        raise ServeError(f"cannot open the store {settings.store}: {reason}") from None
    sys.argv = sys.argv[:1]  # gunicorn must not parse filedock's own flags
    # The workers' metrics meet in a folder of this server's own, made before they fork and
    # removed when it stops, so no count of an earlier server is ever added in.
    metrics_dir = tempfile.mkdtemp(prefix="filedock-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    arbiter_pid = os.getpid()
    try:
        Server(settings).run()
    finally:
        # A worker leaves run() through here too (its SystemExit climbs out of the fork):
        # only the arbiter, once every worker is gone, removes the folder.
        if os.getpid() == arbiter_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
