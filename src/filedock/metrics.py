"""Prometheus metrics: requests by route, bytes in and out, upload durations.

Under `filedock serve` every worker writes its counts to memory-mapped files in the private
folder named by PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), and
`GET /metrics` adds up the files of all workers, live and dead. Without that variable (Flask's
test client, gunicorn run by hand) the counts live in this process, one registry per app.

Per request the cost is a few dictionary look-ups and counter increments: the metric objects
and their labelled children are made once, and the response body is never wrapped (that would
cost gunicorn its sendfile path), so bytes sent are taken from Content-Length."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from flask import Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

# prometheus-client's own variable (it reads it too): not a filedock setting.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXTENSION = "filedock.metrics"
STARTED_KEY = "filedock.started"
UNMATCHED = "unmatched"
OTHER_METHOD = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The endpoints that take an upload, by (endpoint, method).
UPLOADS = frozenset(
    {
        ("files.put_file", "PUT"),
        ("files.post_files", "POST"),
        ("documents.put_document", "PUT"),
        ("documents.patch_document", "PATCH"),
        ("tus.post_upload", "POST"),
        ("tus.patch_upload", "PATCH"),
        ("tus.post_upload_override", "POST"),
        ("compat.upload_files", "POST"),
    }
)
UPLOAD_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip


class Metrics:
    """The metric objects of one app, made once."""

    def __init__(self, multiproc_dir: str | None) -> None:
        self.multiproc_dir = multiproc_dir
        if multiproc_dir:
            _use_multiprocess_values()
            # Values go to the folder's files; /metrics reads them all back.
            owner = None
            self.registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
        else:
            owner = self.registry = CollectorRegistry()
        self.requests = Counter(
            "filedock_requests",
            "Requests answered, by URL rule, method and status.",
            ["route", "method", "status"],
            registry=owner,
        )
        self.received = Counter(
            "filedock_received_bytes",
            "Request body bytes read by the handlers.",
            registry=owner,
        )
        self.sent = Counter(
            "filedock_sent_bytes",
            "Response body bytes, as declared by Content-Length.",
            registry=owner,
        )
        self.upload_seconds = Histogram(
            "filedock_upload_seconds",
            "Time from the start of an upload request to its response, by URL rule.",
            ["route"],
            buckets=UPLOAD_BUCKETS_SECONDS,
            registry=owner,
        )
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._uploads: dict[str, Any] = {}

    def count_request(self, route: str, method: str, status: int) -> None:
        """One more request with these labels (children cached: labels() takes a lock)."""
        key = (route, method, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(route, method, str(status))
        child.inc()

    def count_answer(self, route: str, method: str, status: int, sent: int) -> None:
        """One more request with these labels, and the body bytes its answer sends."""
        self.count_request(route, method, status)
        if sent:
            self.sent.inc(sent)

    def observe_upload(self, route: str, seconds: float) -> None:
        """One upload request took this long."""
        child = self._uploads.get(route)
        if child is None:
            child = self._uploads[route] = self.upload_seconds.labels(route)
        child.observe(seconds)

    def record(self, response: Response) -> Response:
        """after_request: count the request by route and status, the body bytes it sends,
        and time it if it is an upload."""
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        rule = req.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        method = req.method if req.method in METHODS else OTHER_METHOD
        self.count_answer(route, method, response.status_code, sent_bytes(method, response))
        if rule is not None and (rule.endpoint, method) in UPLOADS:
            started = req.environ.get(STARTED_KEY)
            if started is not None:
                self.observe_upload(route, time.perf_counter() - started)
        return response

    def exposition(self) -> bytes:
        """The Prometheus text format of every count (of all workers in multiprocess mode)."""
        return generate_latest(self.registry)


def _use_multiprocess_values() -> None:
    """prometheus-client picks its value class when it is first imported; if that happened
    before the folder was named (in the process that later forked this one), pick again so
    that the values go to the folder's files."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class CountingInput:
    """The WSGI input stream, counting the body bytes the handlers read."""

    def __init__(self, stream: IO[bytes], counter: Any) -> None:
        self._stream = stream
        self._counter = counter

    def _count(self, data: bytes) -> bytes:
        if data:
            self._counter.inc(len(data))
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Read and count."""
        return self._count(self._stream.read(-1 if size is None else size))

    def readline(self, size: int | None = -1) -> bytes:
        """Read a line and count it."""
        return self._count(self._stream.readline(-1 if size is None else size))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read lines and count them."""
        lines = self._stream.readlines(-1 if hint is None else hint)
        self._counter.inc(sum(len(line) for line in lines))
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        """Close the underlying stream if it can be."""
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _instrument(wsgi_app: WsgiApp, metrics: Metrics) -> WsgiApp:
    """Note when each request started, and count the body bytes read from it."""

    def instrumented(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ[STARTED_KEY] = time.perf_counter()
        if environ.get("CONTENT_LENGTH", "0") not in ("", "0") or environ.get(
            "HTTP_TRANSFER_ENCODING"
        ):
            environ["wsgi.input"] = CountingInput(environ["wsgi.input"], metrics.received)
        return wsgi_app(environ, start_response)

    return instrumented


def sent_bytes(method: str, response: Response) -> int:
    """The body bytes this response sends, from its Content-Length (ranges included)."""
    length = response.headers.get("Content-Length")
    if not length or method == "HEAD" or response.status_code in (204, 304):
        return 0
    try:
        return max(int(length), 0)
    except ValueError:
        return 0


def get_metrics() -> Metrics:
    """The metrics of the current app."""
    metrics: Metrics = current_app.extensions[EXTENSION]
    return metrics


def init_app(app: Flask) -> None:
    """Make the app's metric objects and count every request."""
    metrics = Metrics(os.environ.get(MULTIPROC_ENV) or None)
    app.extensions[EXTENSION] = metrics
    app.wsgi_app = _instrument(app.wsgi_app, metrics)  # type: ignore[method-assign, assignment]
    app.after_request(metrics.record)


__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "get_metrics", "init_app"]
