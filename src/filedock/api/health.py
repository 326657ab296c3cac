"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from ..context import get_storage
from ..errors import problem

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def get_healthz() -> Any:
    """The process answers."""
    return {"status": "ok"}


@bp.get("/readyz")
def get_readyz() -> Any:
    """The store can be written and read back."""
    try:
        get_storage().check()
    except Exception:
        return problem(503, "not-ready", "the store is not reachable or not writable")
    return {"status": "ready"}
