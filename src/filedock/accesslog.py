"""The server's log lines: one access line per request, and no credential in any line.

A signed link carries its signature in the query string, and a token may arrive as a query
parameter or in a Referer: every URL written to the access or error log has those values
replaced, and no Authorization header is ever written."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from gunicorn import glogging

REDACTED = "[redacted]"
# Query parameters whose values are credentials: filedock's signed links, the usual token
# parameters, S3-style presigned URLs.
SECRET_PARAMETERS = (
    "signature",
    "sig",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "password",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
)
_SECRET_QUERY = re.compile(
    r"(?i)((?:^|[?&;])(?:" + "|".join(map(re.escape, SECRET_PARAMETERS)) + r")=)[^&;#\s\"]*"
)
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def redact(text: str) -> str:
    """text with the value of every credential query parameter replaced."""
    if "=" not in text:
        return text
    return _SECRET_QUERY.sub(r"\1" + REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with its credentials redacted (for error log handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the formatted message; always keep the record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


REDACTING_FILTER = RedactingFilter()


def redact_handlers(logger: logging.Logger) -> None:
    """Add the redacting filter to every handler of logger (once)."""
    for handler in logger.handlers:
        if REDACTING_FILTER not in handler.filters:
            handler.addFilter(REDACTING_FILTER)


# Bytes a download sent with sendfile(2), which gunicorn's response does not count: the
# worker's socket adds them here for the request its thread is serving.
_sent = threading.local()


def reset_sendfile_bytes() -> None:
    """A new request starts on this thread."""
    _sent.bytes = 0


def add_sendfile_bytes(count: int) -> None:
    """count more bytes of the current request's answer went out through sendfile(2)."""
    _sent.bytes = getattr(_sent, "bytes", 0) + count


def sendfile_bytes() -> int:
    """Bytes of the current request's answer sent with sendfile(2)."""
    return int(getattr(_sent, "bytes", 0))


class _Pid:
    """This process's id as the access line writes it, looked up again after a fork."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """After a fork: the id is another."""
        self.pid, self.text = 0, ""

    @property
    def value(self) -> str:
        """<pid>"""
        if not self.pid:
            self.pid = os.getpid()
            self.text = f"<{self.pid}>"
        return self.text


_PID = _Pid()
os.register_at_fork(after_in_child=_PID.forget)


class _Atoms(Mapping[str, str]):
    """gunicorn's log atoms, each computed when the format asks for it, URLs redacted."""

    def __init__(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        self.resp, self.req, self.environ, self.request_time = resp, req, environ, request_time

    def __getitem__(self, name: str) -> str:
        value = self._atom(name.lower() if name.startswith("{") else name)
        return "-" if value is None else str(value)

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0

    def _atom(self, name: str) -> Any:
        environ = self.environ
        if name == "r":
            uri = redact(environ.get("RAW_URI", ""))
            return f"{environ['REQUEST_METHOD']} {uri} {environ['SERVER_PROTOCOL']}"
        if name in ("b", "B"):
            return (getattr(self.resp, "sent", 0) or 0) + sendfile_bytes()
        if name == "s":
            return str(self.resp.status).split(None, 1)[0]
        simple = {
            "h": ("REMOTE_ADDR",),
            "m": ("REQUEST_METHOD",),
            "u": (),  # from Authorization, which is never logged
            "l": (),
            "U": ("PATH_INFO",),
            "q": ("QUERY_STRING",),
            "H": ("SERVER_PROTOCOL",),
            "f": ("HTTP_REFERER",),
            "a": ("HTTP_USER_AGENT",),
        }
        if name in simple:
            keys = simple[name]
            value = environ.get(keys[0]) if keys else None
            return redact(value) if isinstance(value, str) else value
        if name == "t":
            return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
        if name == "p":
            return _PID.value
        elapsed = self.request_time
        if name == "T":
            return elapsed.seconds
        if name == "D":
            return elapsed.seconds * 1_000_000 + elapsed.microseconds
        if name == "M":
            return elapsed.seconds * 1000 + elapsed.microseconds // 1000
        if name == "L":
            return f"{elapsed.seconds}.{elapsed.microseconds:06d}"
        if name.startswith("{") and len(name) > 3:
            header, kind = name[1:-2], name[-1]
            if header in _SECRET_HEADERS:
                return REDACTED if kind in "io" else None
            if kind == "i":
                return self._header(getattr(self.req, "headers", ()), header)
            if kind == "o":
                return self._header(getattr(self.resp, "headers", ()), header)
            if kind == "e":
                value = environ.get(header.upper())
                return redact(value) if isinstance(value, str) else value
        return None

    @staticmethod
    def _header(headers: Any, wanted: str) -> str | None:
        for key, value in headers:
            if key.lower() == wanted:
                return redact(value)
        return None


class AccessLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger: the access line counts the bytes of sendfile(2) downloads and
    leaves out credentials; error lines are redacted too.

    In filedock's worker the request's thread only queues its access line; the worker's main
    loop writes what has queued up in one write (flush_access). Written by each thread, the
    line cost a small request a quarter of its time: the threads queued on the log handler's
    lock while its holder waited to get the GIL back after its write."""

    batched = False  # set by the worker that calls flush_access()

    def setup(self, cfg: Any) -> None:
        """gunicorn's handlers, with the redacting filter on the error log's."""
        self.pending: deque[str] = deque()
        super().setup(cfg)
        redact_handlers(self.error_log)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """Log one request."""
        if not self.access_log_enabled:
            return
        try:
            line = self.cfg.access_log_format % _Atoms(resp, req, environ, request_time)
        except Exception:
            self.exception("the access log line could not be written")
            return
        if self.batched:
            self.pending.append(line)
        else:
            self.access_log.info(line)

    def flush_access(self) -> None:
        """Write the queued access lines: in one write to the stream when the access log is
        the plain stream gunicorn sets up, else one record each as gunicorn would."""
        if not self.pending:
            return
        lines = []
        with suppress(IndexError):
            while True:
                lines.append(self.pending.popleft())
        if not lines:
            return
        handlers = self.access_log.handlers
        plain = (
            len(handlers) == 1
            and type(handlers[0]) is logging.StreamHandler
            and getattr(handlers[0].formatter, "_fmt", None) == self.access_fmt == "%(message)s"
        )
        if not plain:
            for line in lines:
                self.access_log.info(line)
            return
        handler = handlers[0]
        handler.acquire()
        try:
            handler.stream.write("\n".join(lines) + "\n")
            handler.flush()
        except Exception:
            handler.handleError(logging.makeLogRecord({"msg": lines[0]}))
        finally:
            handler.release()
