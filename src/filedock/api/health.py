"""Operations endpoints: liveness and readiness probes, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from .. import access
from ..context import get_storage
from ..errors import problem
from ..metrics import CONTENT_TYPE_LATEST, get_metrics
from ..storage import StoreUnavailable

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
    except StoreUnavailable as exc:  # says what failed: no connection, no bucket, no access
        return problem(503, "not-ready", str(exc))
    except Exception:
        return problem(503, "not-ready", "the store is not reachable or not writable")
    return {"status": "ready"}


@bp.get("/metrics")
@access.deferred("admin")
def get_metrics_text() -> Response:
    """Prometheus text exposition of every worker's counts; with tokens configured it needs
    an admin token that covers the whole store (the counts describe all of it)."""
    access.require("admin", None)
    return Response(get_metrics().exposition(), content_type=CONTENT_TYPE_LATEST)
