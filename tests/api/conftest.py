"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask, request_started


@pytest.fixture
def app_requests(app: Flask) -> Iterator[list[str]]:
    """The paths of the requests the Flask app itself handled."""
    seen: list[str] = []

    def started(sender: Flask, **extra: object) -> None:
        from flask import request

        seen.append(request.full_path)

    request_started.connect(started, app)
    yield seen
    request_started.disconnect(started, app)
