"""Liveness, readiness and Prometheus metrics. Unauthenticated by design: they reveal no data."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from nodewright.api.deps import ContextDep
from nodewright.api.problems import PROBLEM_RESPONSES, problem_response
from nodewright.api.routing import OneHopRoute
from nodewright.db import migrate
from nodewright.jobs import metrics as job_metrics

router = APIRouter(tags=["service"], route_class=OneHopRoute)


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """On the event loop itself (it does no blocking work): liveness must not wait for a worker
    thread when the thread pool is busy, or a busy server would look dead."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable and migrated to head",
    responses={503: PROBLEM_RESPONSES[422] | {"description": "Not ready"}},
)
def readyz(ctx: ContextDep) -> JSONResponse:
    try:
        with ctx.database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = migrate.current_revision(ctx.database.engine)
    except Exception:
        return problem_response(
            503, "database_unavailable", "Not ready", "The database is not reachable.", retryable=True
        )
    head = migrate.head_revision()
    if current != head:
        return problem_response(
            503,
            "migrations_pending",
            "Not ready",
            f"The database schema is at {current or 'empty'}, the code expects {head}.",
            hint="Run `nodewright db upgrade`.",
            retryable=True,
        )
    return JSONResponse({"status": "ready", "database": ctx.database.dialect, "schema": head})


def refresh_collectors(ctx: ContextDep) -> None:
    """Gauges read from the database are refreshed at scrape time."""
    job_metrics.refresh_queue_depth(ctx.database)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(ctx: ContextDep) -> Response:
    refresh_collectors(ctx)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
