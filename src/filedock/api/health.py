"""Operations endpoints: liveness and readiness probes, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from .. import access
from ..context import get_storage
from ..errors import problem
from ..metrics import CONTENT_TYPE_LATEST, get_metrics
from ..openapi import problem_response
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


def _status_body(value: str) -> dict[str, Any]:
    schema = {"type": "object", "required": ["status"], "properties": {"status": {"const": value}}}
    return {"application/json": {"schema": schema, "example": {"status": value}}}


OPENAPI_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "getHealthz",
            "summary": "Liveness: the process answers",
            "tags": ["operations"],
            "security": [],
            "responses": {"200": {"description": "Alive.", "content": _status_body("ok")}},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "getReadyz",
            "summary": "Readiness: a small record can be written to the store and read back",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": {"description": "Ready.", "content": _status_body("ready")},
                "503": problem_response("`not-ready`: the store cannot be reached or written"),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "getMetrics",
            "summary": "Prometheus metrics, summed over every worker",
            "description": (
                "The Prometheus text format. With tokens configured it needs an `admin` token "
                "without a prefix; without tokens it is open."
            ),
            "tags": ["operations"],
            "responses": {
                "200": {
                    "description": "The metrics.",
                    "content": {
                        "text/plain": {
                            "schema": {"type": "string"},
                            "example": "filedock_requests_total{"
                            'route="/healthz",method="GET",status="200"} 3.0\n',
                        }
                    },
                },
                "401": problem_response("No token, or an unknown one: `unauthorized`"),
                "403": problem_response("Not an admin token for the whole store: `forbidden`"),
            },
        }
    },
}
