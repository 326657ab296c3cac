"""X-Request-ID: one id per request, taken from the client when sane, echoed on every response
and carried by every line the `filedock` logger writes while the request is served."""

from __future__ import annotations

import logging
import random
import re
import sys

from flask import Flask, Response, has_request_context, request

HEADER = "X-Request-ID"
ENVIRON_KEY = "filedock.request_id"
# 1-128 visible ASCII characters; no space, quote or backslash, so the id can stand
# unquoted in a log line and never splits or escapes a field.
SANE_ID = re.compile(r"[!#-\[\]-~]{1,128}")
NO_REQUEST = "-"
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] [%(request_id)s] %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


def sane(value: str | None) -> str | None:
    """The client's id if it is one we can log and echo as it is, else None."""
    if value is None or SANE_ID.fullmatch(value) is None:
        return None
    return value


def new_id() -> str:
    """A random (version 4) UUID as 32 hex digits, from the process's own generator (which
    Python reseeds in each forked worker) rather than the system's: an id must be unique, not
    secret, and a system call per request costs a threaded worker a turn at the GIL."""
    value = random.getrandbits(128)
    value = (value & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    return f"{value:032x}"


def current() -> str:
    """The id of the request being served, decided once: the client's, or a new uuid4."""
    environ = request._get_current_object().environ  # type: ignore[attr-defined]
    request_id: str | None = environ.get(ENVIRON_KEY)
    if request_id is None:
        request_id = sane(environ.get("HTTP_X_REQUEST_ID")) or new_id()
        environ[ENVIRON_KEY] = request_id
    return request_id


def echo(response: Response) -> Response:
    """after_request: every response carries the id (errors, 401s, 404s and 405s too)."""
    response.headers.add(HEADER, current())  # no response has one before this
    return response


class RequestIdFilter(logging.Filter):
    """Gives each log record a `request_id` attribute: the request's id, or '-' outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the attribute; never drops a record."""
        if not hasattr(record, "request_id"):
            record.request_id = current() if has_request_context() else NO_REQUEST
        return True


class RequestIdFormatter(logging.Formatter):
    """Puts the request id on every line of a record, a traceback's lines included."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as text; continuation lines carry the id too."""
        text = super().format(record)
        if "\n" not in text:
            return text
        prefix = f"[{getattr(record, 'request_id', NO_REQUEST)}] "
        first, *rest = text.split("\n")
        return "\n".join([first, *(prefix + line for line in rest)])


FILTER = RequestIdFilter()


def configure_logging() -> None:
    """Make the `filedock` logger tag records with the request id, and give it a handler
    that prints the id when nothing up the hierarchy would print its records (as Flask
    does for its own logger); a handler configured by the user is left as it is."""
    logger = logging.getLogger("filedock")
    if FILTER not in logger.filters:
        logger.addFilter(FILTER)
    if _has_handler(logger):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(FILTER)  # also tags records of child loggers (Flask's app.logger)
    handler.setFormatter(RequestIdFormatter(LOG_FORMAT, LOG_DATE_FORMAT))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def _has_handler(logger: logging.Logger) -> bool:
    current: logging.Logger | None = logger
    while current is not None:
        if current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False


def init_app(app: Flask) -> None:
    """Echo the id on every response and tag the app's log lines with it."""
    app.after_request(echo)
    configure_logging()
