"""The production server: filedock's app under gunicorn with threaded workers."""

from __future__ import annotations

import errno
import html
import io
import ipaddress
import json
import logging
import os
import queue
import re
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.http import wsgi
from gunicorn.http.body import LengthReader
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker
from prometheus_client import multiprocess

from . import accesslog, hotpath, mainloop, tokenstore
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
        "logger_class": f"{accesslog.__name__}.AccessLogger",
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


class _BodyBudget(threading.local):
    """The time the request served on this thread may still take to send its body: after
    `grace` seconds from its first read, at least `rate` bytes a second on average (as
    Apache's mod_reqtimeout MinRate). Kept per thread: a gthread thread serves one request
    at a time, and a socket object cannot carry attributes of its own."""

    grace: float = 60.0
    rate: int = 0
    started: float | None = None
    received: int = 0

    def reset(self) -> None:
        """A new request starts on this thread."""
        self.started, self.received = None, 0

    def seconds_left(self) -> float | None:
        """How long the next read may wait; None: no limit."""
        if not self.rate:
            return None
        now = time.monotonic()
        if self.started is None:
            self.started = now
        return self.started + self.grace + self.received / self.rate - now


_budget = _BodyBudget()


class _SendfileSource:
    """A file handed to socket.sendfile, noting where it ends: socket.sendfile seeks the file
    to the end of what it sent, also when the client breaks off (gunicorn seeks back)."""

    def __init__(self, file: Any, offset: int) -> None:
        self._file, self.position = file, offset

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        """Note the position; move the file there too if it can."""
        self.position = position
        seek = getattr(self._file, "seek", None)
        return int(seek(position, whence)) if seek is not None else position

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class GuardedSocket(socket.socket):
    """A client connection that may not stall. In blocking mode (gunicorn's threads read and
    write that way) each read, and each write of a chunk, waits at most `seconds` for the
    client, then fails as a reset connection: what gunicorn and the app already do for a client
    that left (the request ends, a partial upload is removed, the thread is free again). Reads
    also keep to the thread's body budget (`body_min_rate`)."""

    __slots__ = ()
    seconds: float = 60.0

    def setblocking(self, flag: bool) -> None:
        """Blocking means: with the stall timeout."""
        self.settimeout(self.seconds if flag else 0.0)

    def settimeout(self, value: float | None) -> None:
        """socket.settimeout, skipped when nothing changes: each call is an ioctl(), and a
        request's path sets the same timeout several times."""
        if value != self.gettimeout():
            super().settimeout(value)

    def recv(self, *args: Any) -> bytes:
        with self._stalls(), self._budgeted():
            data = super().recv(*args)
        _budget.received += len(data)
        return data

    def recv_into(self, *args: Any) -> int:
        with self._stalls(), self._budgeted():
            count = super().recv_into(*args)
        _budget.received += count
        return count

    def sendall(self, *args: Any) -> None:
        with self._stalls():
            super().sendall(*args)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """socket.sendfile, counting what was sent for the access log even if it fails."""
        source = _SendfileSource(file, offset)
        try:
            with self._stalls():
                return super().sendfile(source, offset, count)
        finally:
            accesslog.add_sendfile_bytes(source.position - offset)

    @contextmanager
    def _budgeted(self) -> Iterator[None]:
        timeout = self.gettimeout()
        left = _budget.seconds_left() if timeout != 0 else None
        if left is None or (timeout is not None and timeout <= left):
            yield
            return
        if left <= 0:
            detail = f"the client sent its body slower than {_budget.rate} bytes/s"
            raise ConnectionResetError(errno.ECONNRESET, detail)
        self.settimeout(left)
        try:
            yield
        except TimeoutError:
            detail = f"the client sent its body slower than {_budget.rate} bytes/s"
            raise ConnectionResetError(errno.ECONNRESET, detail) from None
        finally:
            self.settimeout(timeout)

    @contextmanager
    def _stalls(self) -> Iterator[None]:
        try:
            yield
        except TimeoutError:
            detail = f"the client stalled for over {self.seconds:g} s"
            raise ConnectionResetError(errno.ECONNRESET, detail) from None


class _Response(wsgi.Response):  # type: ignore[misc]
    """gunicorn's HTTP/1 response, sending its head with the first bytes of the body (or with
    the end of a body-less answer) in one write. gunicorn writes them separately: each write
    releases the GIL, and with 16 threads getting it back is where a small answer's time went."""

    headers_sent: bool

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.head = b""
        self.direct = False  # the head goes out on its own (before a sendfile)

    def default_headers(self) -> list[str]:
        """gunicorn's status line and headers, the Date made once a second, not per answer."""
        connection = "close" if self.should_close() else "keep-alive"
        if self.upgrade:
            connection = "upgrade"
        version = self.req.version
        headers = [
            f"HTTP/{version[0]}.{version[1]} {self.status}\r\n",
            f"Server: {self.version}\r\n",
            f"Date: {http_date()}\r\n",
            f"Connection: {connection}\r\n",
        ]
        if self.chunked:
            headers.append("Transfer-Encoding: chunked\r\n")
        return headers

    def send_headers(self) -> None:
        """Build the head; keep it for the first write unless it must go out now."""
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend([f"{name}: {value}\r\n" for name, value in self.headers])
        lines.append("\r\n")
        self.head = "".join(lines).encode("latin-1")
        self.headers_sent = True
        if self.direct:
            self.flush_head()

    def flush_head(self) -> None:
        """Send a head kept back."""
        head, self.head = self.head, b""
        if head:
            self.sock.sendall(head)

    def _emit_body(self, data: bytes) -> None:
        if self.chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        if self.head and len(data) <= COALESCE_BYTES:
            data, self.head = self.head + data, b""
        self.flush_head()
        self.sock.sendall(data)

    def sendfile(self, respiter: Any) -> bool:
        """gunicorn's sendfile, the head sent first."""
        self.direct = True
        self.flush_head()
        return bool(super().sendfile(respiter))

    def close(self) -> None:
        """End the answer: the head if still kept back, and the last chunk, in one write."""
        if not self.headers_sent:
            self.send_headers()
        tail = b"0\r\n\r\n" if self.chunked else b""
        data, self.head = self.head + tail, b""
        if data:
            self.sock.sendall(data)


_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The HTTP date of this second (formatting it costs more than a small answer's headers)."""
    global _date
    now = int(time.time())
    second, text = _date
    if second != now:
        text = util.http_date(now)
        _date = (now, text)
    return text


# The largest body write sent together with the response head (a copy of both is made).
COALESCE_BYTES = 256 << 10


class _BodyUnreader(SocketUnreader):  # type: ignore[misc]
    """gunicorn's socket reader, but a large read goes straight to the socket for just that
    much, after taking what is buffered. gunicorn reads up to 1 MiB ahead into a BytesIO and
    copies what remains on every read: an upload read 256 KiB at a time was copied four or
    five times, and once anything was buffered (the start of a body that came with its head)
    every later read went that way."""

    buf: io.BytesIO

    def read(self, size: int | None = None, read_ahead: int | None = None) -> bytes:
        """size bytes (fewer at the end of the stream)."""
        if size is None or size < DIRECT_READ_BYTES:
            return bytes(super().read(size, read_ahead))
        self.buf.seek(0, os.SEEK_END)
        buffered = self.buf.tell()
        if buffered >= size:
            return bytes(super().read(size, read_ahead))
        parts: list[bytes] = []
        if buffered:
            parts.append(self.buf.getvalue())
            self.buf = io.BytesIO()
        got = buffered
        while got < size:
            more = self.sock.recv(size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return parts[0] if len(parts) == 1 else b"".join(parts)


# Reads of a request body at least this large skip gunicorn's read-ahead buffer.
DIRECT_READ_BYTES = 64 << 10


class _Head:
    """A request head being received by the worker's main loop. Each read is looked at once
    (a head sent a byte at a time must not cost its length squared)."""

    __slots__ = ("data", "deadline", "stall_deadline", "complete", "line_ended")

    def __init__(self, deadline: float, stall_deadline: float) -> None:
        self.data = bytearray()
        self.deadline, self.stall_deadline = deadline, stall_deadline
        self.complete = self.line_ended = False

    def add(self, data: bytes, max_line: int, max_head: int) -> None:
        """Append data; complete once the head has ended, or has gone so wrong that gunicorn
        can refuse it already (a bare LF, a line or a head over its limits)."""
        start = len(self.data)
        self.data += data
        view = self.data
        if view.find(b"\r\n\r\n", max(0, start - 3)) >= 0 or len(view) > max_head:
            self.complete = True
        elif view.count(b"\n", start) != view.count(b"\r\n", max(0, start - 1)):
            self.complete = True
        if not self.line_ended:
            self.line_ended = view.find(b"\r\n", max(0, start - 1)) >= 0
            self.complete = self.complete or (not self.line_ended and len(view) > max_line)


class _Linger:
    """A closing connection whose client may still be sending: read and dropped until it
    closes, or until LINGER_SECONDS or LINGER_BYTES, so the answer is not lost to a reset."""

    __slots__ = ("deadline", "left")

    def __init__(self, deadline: float) -> None:
        self.deadline, self.left = deadline, LINGER_BYTES


# How long, and how much, a closing connection is read from after the answer (nginx's
# lingering close reads for up to lingering_time, 30 s, waiting lingering_timeout, 5 s).
LINGER_SECONDS = 5.0
LINGER_BYTES = 64 << 20
# One non-blocking read of a request head (or of what a lingering client still sends).
HEAD_READ_BYTES = 64 << 10
# How often the main loop looks for connections past their deadlines.
DEADLINE_CHECK_SECONDS = 0.25


class Worker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, with these changes.

    - A thread is only given a connection whose request head has arrived whole: the main
      loop receives heads without blocking, alongside the kept-alive connections it already
      watches, so clients that send their headers slowly, or nothing, hold no thread. A head
      must arrive within `header_timeout` and never stall for `client_timeout`.
    - A client may not hold a thread by stalling: every read and write of a request is
      bounded by `client_timeout` (GuardedSocket), and a body must keep `body_min_rate`.
      Without it, `threads` clients that send half a request, or never read a download,
      leave the worker unable to answer anyone.
    - A connection is closed gracefully, in the main loop: the answer is sent, then what the
      client still sends is read and dropped for a while (LINGER_SECONDS), so a client
      uploading a body the server refused receives the answer instead of a reset.
    - A plain GET of a cached JSON document is answered by the main loop itself, without a
      thread (see mainloop.py): the hand-offs to and from a thread cost such a request more
      than its answer.
    - The requests gunicorn refuses itself (a malformed request line or header, a line over
      the limit) are answered in problem+json like the rest of the API, not in HTML. gunicorn
      still decides the status, logs and counts the request."""

    alive: bool

    def init_process(self) -> None:
        """Take the timeouts from filedock's settings, then run."""
        settings: Settings = self.app.settings
        GuardedSocket.seconds = settings.client_timeout
        self.header_timeout = settings.header_timeout
        _BodyBudget.grace = settings.client_timeout
        _BodyBudget.rate = settings.body_min_rate
        self.heads: dict[Any, _Head] = {}
        self.lingering: dict[Any, _Linger] = {}
        self.next_deadline_check = self.next_notify = self.next_parent_check = 0.0
        self.stop_deadline: float | None = None
        self.discard = bytearray(HEAD_READ_BYTES)
        # The longest head gunicorn reads before refusing it itself (414, 431).
        self.max_head = (
            self.cfg.limit_request_line
            + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2)
            + 4
        )
        super().init_process()

    def run(self) -> None:
        """gunicorn's main loop, the access lines the threads queued written as it turns."""
        if isinstance(self.log, accesslog.AccessLogger):
            self.log.batched = True
        try:
            super().run()
        finally:
            self.flush_access()

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """One turn of the main loop, then the access lines of the requests it finished."""
        super().wait_for_and_dispatch_events(timeout)
        self.flush_access()

    def flush_access(self) -> None:
        """Write the access lines queued by the threads."""
        if isinstance(self.log, accesslog.AccessLogger):
            self.log.flush_access()

    def notify(self) -> None:
        """Tell the arbiter this worker lives: at most once a second (gunicorn's main loop
        does it on every turn, a file-time update each, two per request)."""
        now = time.monotonic()
        if now >= self.next_notify:
            self.next_notify = now + 1.0
            super().notify()

    def is_parent_alive(self) -> bool:
        """gunicorn's check, at most once a second (it is made on every turn of the loop)."""
        now = time.monotonic()
        if now < self.next_parent_check:
            return True
        self.next_parent_check = now + 1.0
        return bool(super().is_parent_alive())

    def load_wsgi(self) -> None:
        """Load the app, then keep credentials out of its log lines too."""
        super().load_wsgi()
        accesslog.redact_handlers(logging.getLogger("filedock"))
        self.documents = self.documents_here()

    def documents_here(self) -> hotpath.DocumentGets | None:
        """The app's document GETs, if the main loop may answer them: the app answers plain
        GETs in front of Flask (no proxy fix-up in front of that), over plain HTTP/1 without
        the PROXY protocol or a SCRIPT_NAME, from a store whose stat() waits on no network."""
        gets = getattr(self.wsgi, "wsgi_app", None)
        if not isinstance(gets, hotpath.DocumentGets) or not gets.stat_is_local:
            return None
        if self.cfg.is_ssl or self.cfg.proxy_protocol not in (False, "off", None):
            return None
        if os.environ.get("SCRIPT_NAME"):
            return None
        # gunicorn picks the URL scheme from these (and refuses some mixes of them)
        self.declined = frozenset(
            name.upper() for name in (self.cfg.secure_scheme_headers or {})
        ) | {"FORWARDED"}
        return gets

    # -- receiving request heads in the main loop --------------------------------------------

    def accept(self, listener: Any) -> None:
        """Accept a connection and start receiving its request head."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        if type(sock) is socket.socket:
            sock.__class__ = GuardedSocket
        self.enqueue_req(TConn(self.cfg, sock, client, listener.getsockname()))

    def enqueue_req(self, conn: Any) -> None:
        """Hand conn to a thread once its request head is complete; until then the main loop
        receives it. (gunicorn calls this for new, kept-alive and pipelining connections.)"""
        if self.cfg.is_ssl or negotiation.prior_knowledge_allowed(self.cfg, conn.client):
            super().enqueue_req(conn)  # TLS and HTTP/2 start in a thread, as in gunicorn
            return
        buffered = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        now = time.monotonic()
        conn.sock.setblocking(False)
        head = _Head(now + self.header_timeout, now + GuardedSocket.seconds)
        self.heads[conn] = head
        if buffered:
            head.add(buffered, self.cfg.limit_request_line, self.max_head)
        if head.complete:
            self.dispatch(conn)
        else:
            self.receive_head(conn, registered=False)

    def receive_head(self, conn: Any, registered: bool = True) -> None:
        """Read what has arrived of conn's head (the socket is non-blocking)."""
        head = self.heads[conn]
        try:
            data = socket.socket.recv(conn.sock, HEAD_READ_BYTES)  # no stall timeout here
        except (BlockingIOError, InterruptedError):
            if not registered:
                self.poller.register(
                    conn.sock, selectors.EVENT_READ, partial(self.on_head_readable, conn)
                )
            return
        except OSError:
            data = b""
        if not data:
            self.drop_head(conn, registered)
            return
        head.add(data, self.cfg.limit_request_line, self.max_head)
        head.stall_deadline = time.monotonic() + GuardedSocket.seconds
        if head.complete:
            if registered:
                self.poller.unregister(conn.sock)
            self.dispatch(conn)
        elif not registered:
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_head_readable, conn)
            )

    def on_head_readable(self, conn: Any, sock: Any) -> None:
        """Poller callback: more of conn's head has arrived."""
        self.receive_head(conn)

    def dispatch(self, conn: Any) -> None:
        """The head is here: answer it here if it is a plain GET of a cached document, else
        give the connection to a thread."""
        head = bytes(self.heads.pop(conn).data)
        here = self.documents is not None and head.startswith(b"GET /")
        if here and self.answer_here(conn, head):
            return
        conn.filedock_head = head
        super().enqueue_req(conn)

    # -- answering plain document GETs in the main loop (see mainloop.py) ----------------

    def answer_here(self, conn: Any, head: bytes) -> bool:
        """Answer a plain GET of a cached document without a thread; False: not one."""
        assert self.documents is not None
        if not self.alive or self.nr + 1 >= self.max_requests:
            return False  # this answer says Connection: close: a thread writes it
        if len(self.keepalived_conns) >= self.max_keepalived:
            return False
        cfg = self.cfg
        get = mainloop.plain_get(
            head,
            cfg.limit_request_line,
            cfg.limit_request_field_size,
            cfg.limit_request_fields,
            self.declined,
        )
        if get is None:
            return False
        started = datetime.now()
        environ = mainloop.environ_of(get, conn.client, conn.server)
        try:
            found = self.documents.answer(environ, cached_only=True)
        except Exception:  # the main loop must go on: a thread and the app answer it
            self.log.exception("a document GET could not be answered in the main loop")
            return False
        if found is None:
            return False
        headers, body = found
        self.nr += 1
        answer_head = mainloop.response_head(headers, http_date())
        request, response = mainloop.Logged(get.headers), mainloop.Logged(headers)
        try:
            sent = socket.socket.sendmsg(conn.sock, [answer_head, body])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.log.access(response, request, environ, datetime.now() - started)
            self.nr_conns -= 1
            conn.close()
            return True
        if sent == len(answer_head) + len(body):
            response.sent = len(body)
            self.log.access(response, request, environ, datetime.now() - started)
            conn.set_timeout()
            self.keepalived_conns.append(conn)
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
            )
            return True
        # the rest without copying the body: what is left of the head, then of the body
        rest = [memoryview(answer_head)[sent:], memoryview(body)[max(0, sent - len(answer_head)) :]]
        future = self.tpool.submit(
            self.send_rest, conn, rest, len(body), request, response, environ, started
        )
        future.add_done_callback(
            lambda done: self.method_queue.defer(self.finish_request, conn, done)
        )
        return True

    def send_rest(
        self,
        conn: Any,
        rest: list[memoryview],
        body_length: int,
        request: mainloop.Logged,
        response: mainloop.Logged,
        environ: dict[str, Any],
        started: datetime,
    ) -> bool:
        """In a thread: send what the socket did not take of an answer made in the main loop,
        bounded by client_timeout as any answer; True: keep the connection."""
        _budget.reset()
        conn.init()  # the parser the connection needs from here on, as a thread makes it
        if type(conn.parser.unreader) is SocketUnreader:
            conn.parser.unreader.__class__ = _BodyUnreader
        conn.sock.setblocking(True)
        unsent = sum(len(part) for part in rest)
        try:
            for part in rest:
                if part:
                    conn.sock.sendall(part)
                    unsent -= len(part)
            return True
        except OSError:
            return False
        finally:
            response.sent = body_length - min(body_length, unsent)
            self.log.access(response, request, environ, datetime.now() - started)

    def drop_head(self, conn: Any, registered: bool) -> None:
        """Close a connection whose head never came."""
        del self.heads[conn]
        if registered:
            with suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Also close heads past their deadlines and end lingering closes that are done."""
        super().murder_pending()
        now = time.monotonic()
        if now < self.next_deadline_check and self.alive:
            return
        self.next_deadline_check = now + DEADLINE_CHECK_SECONDS
        if not self.alive and self.stop_deadline is None:
            self.stop_deadline = now + STOP_KEEPALIVE_LINGER
        for conn, head in list(self.heads.items()):
            if not self.alive and not head.data:
                self.drop_head(conn, registered=True)  # stopping: no request has begun
            elif min(head.deadline, head.stall_deadline, self.stop_deadline or now + 1) <= now:
                self.drop_head(conn, registered=True)
        for conn, linger in list(self.lingering.items()):
            if linger.deadline <= now:
                self.end_linger(conn)

    # -- serving a request in a thread -----------------------------------------------------

    def handle(self, conn: Any) -> Any:
        """Serve the connection's request, its head already received."""
        _budget.reset()
        accesslog.reset_sendfile_bytes()
        head = conn.__dict__.pop("filedock_head", None)
        if head is not None:
            conn.sock.setblocking(True)
            conn.init()
            if type(conn.parser.unreader) is SocketUnreader:
                conn.parser.unreader.__class__ = _BodyUnreader
            conn.parser.unreader.unread(head)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """gunicorn's handle_request (gthread, HTTP/1), writing through _Response."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(
                req, conn.sock, conn.client, conn.server, self.cfg, response_class=_Response
            )
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if not self.alive or not self.cfg.keepalive:
                resp.force_close()
            elif len(self.keepalived_conns) >= self.max_keepalived:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            if resp.should_close():
                return False
        except OSError:
            raise
        except (Exception, SystemExit):
            if resp and resp.headers_sent:
                # the answer has begun: a 500 written now would corrupt it
                self.log.exception("Error handling request")
                util.close_graceful(conn.sock)
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        return True

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        """gunicorn's check that the body was read before the connection is kept, skipped
        when the whole body (often none) was taken off the socket already: it sets the
        socket's timeout twice, an ioctl() each, for nothing to read."""
        body = getattr(conn.parser.mesg, "body", None)
        reader = getattr(body, "reader", None)
        if keepalive and isinstance(reader, LengthReader) and reader.length == 0:
            return not getattr(body, "failed", False)
        return bool(super()._keepalive_after(conn, keepalive))

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Let gunicorn write its page to a capture, then send it as a problem."""
        capture = _Capture(client)
        super().handle_error(req, capture, addr, exc)
        if capture.data:
            with suppress(OSError):
                util.write_nonblock(client, problem_page(capture.data))

    # -- closing gracefully ------------------------------------------------------------------

    def finish_request(self, conn: Any, fs: Any) -> None:
        """As gunicorn, but a connection to close lingers in the main loop."""
        try:
            keep = fs.result() if not fs.cancelled() else False
        except Exception:
            keep = False
        if keep is False or keep is None:
            self.linger(conn)
        else:
            super().finish_request(conn, fs)

    def linger(self, conn: Any) -> None:
        """Send FIN after the answer, then drop what the client still sends until it closes
        (gunicorn's own graceful close blocks the main loop for it, for at most 64 KiB)."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.nr_conns -= 1
            conn.close()
            return
        self.lingering[conn] = _Linger(time.monotonic() + LINGER_SECONDS)
        if not self.drain(conn):
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_linger_readable, conn)
            )

    def drain(self, conn: Any) -> bool:
        """Read and drop what has arrived; True once the connection is closed."""
        linger = self.lingering[conn]
        while True:
            try:
                count = socket.socket.recv_into(conn.sock, self.discard)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                count = 0
            linger.left -= count
            if count == 0 or linger.left <= 0:
                self.end_linger(conn, registered=False)
                return True

    def on_linger_readable(self, conn: Any, sock: Any) -> None:
        """Poller callback: a lingering client sent more, or closed."""
        if self.drain(conn):
            with suppress(KeyError, ValueError, OSError):
                self.poller.unregister(sock)

    def end_linger(self, conn: Any, registered: bool = True) -> None:
        """Close a lingering connection for good."""
        del self.lingering[conn]
        if registered:
            with suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        util.close(conn.sock)


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
