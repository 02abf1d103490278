"""``/api/maintenance`` (pauses of watching's consequences), ``/api/nodes/{id}/health`` (with the
node's remediation steps) and ``/api/brakes`` (the fleet brake per provider connection)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from nodewright.api.deps import ContextDep, Operator, Viewer
from nodewright.api.ids import MaintenanceId, NodeId
from nodewright.api.problems import PROBLEM_RESPONSES, FieldError, ProblemError, not_found, problem_doc
from nodewright.api.routing import OneHopRoute
from nodewright.db.models import MaintenanceWindow, Node
from nodewright.watching import brake, history, maintenance, remediation
from nodewright.watching import service as watch_service

router = APIRouter(prefix="/api", tags=["watching"], responses=PROBLEM_RESPONSES, route_class=OneHopRoute)


class MaintenanceCreateBody(BaseModel):
    """Pause one node (``node_id``) or every node whose labels match ``selector`` until ``ends_at``
    (or for ``duration_seconds``): checks have no consequences, no alerts, no remediation."""

    model_config = ConfigDict(extra="forbid")
    node_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    selector: dict[str, str] | None = Field(default=None, min_length=1, max_length=16)
    reason: str = Field(min_length=1, max_length=500)
    ends_at: AwareDatetime | None = None
    duration_seconds: int | None = Field(default=None, ge=60, le=90 * 86400)

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        from nodewright.api.nodes import LABEL_KEY, LABEL_VALUE

        for key, val in (value or {}).items():
            if not LABEL_KEY.match(key) or not LABEL_VALUE.match(val):
                raise ValueError(f"{key[:16]!r}={val[:16]!r} is not a valid label")
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError("must be one line of text")
        return value.strip()


class MaintenanceOut(BaseModel):
    id: int
    node_id: int | None
    selector: dict[str, str] | None
    reason: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    active: bool
    created_by: str


class MaintenanceListOut(BaseModel):
    items: list[MaintenanceOut]


class CheckOut(BaseModel):
    id: int
    at: dt.datetime
    ok: bool
    seconds: float
    paused: bool
    health: str
    results: list[dict[str, Any]]


class DayOut(BaseModel):
    day: str
    passed: int
    failed: int
    seconds: float


class NodeHealthOut(BaseModel):
    health: str = Field(description="unknown, passing, failing, degraded, or unwatched (not ready)")
    consecutive_failures: int
    consecutive_successes: int
    last_check_at: dt.datetime | None
    next_check_at: dt.datetime | None
    failing_since: dt.datetime | None
    degraded_since: dt.datetime | None
    last_failure: list[dict[str, Any]]
    maintenance: MaintenanceOut | None


class RemediationOut(BaseModel):
    id: int
    action: str = Field(
        description="reboot, reprovision, replace, or exhausted (the ladder or budget ran out)"
    )
    attempt: int = Field(description="the step's place in the ladder of this degraded episode (1-based)")
    state: str = Field(
        description="queued, running, waiting (done; the checks decide), succeeded, failed, held (the "
        "fleet brake was engaged), skipped, canceled, exhausted"
    )
    reason: str
    job_id: int | None
    old_server_id: int | None
    new_server_id: int | None
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class NodeHealthHistoryOut(BaseModel):
    node_id: int
    health: NodeHealthOut
    checks: list[CheckOut]
    days: list[DayOut]
    remediations: list[RemediationOut] = Field(description="the node's remediation steps, newest first")


class BrakeOut(BaseModel):
    provider_id: int
    engaged: bool
    degraded: int
    watched: int
    threshold_percent: float
    reason: str
    engaged_at: dt.datetime | None
    released_at: dt.datetime | None


class BrakeListOut(BaseModel):
    items: list[BrakeOut]


def maintenance_out(window: MaintenanceWindow) -> MaintenanceOut:
    now = dt.datetime.now(dt.UTC)
    return MaintenanceOut(
        id=window.id,
        node_id=window.node_id,
        selector=window.selector,
        reason=window.reason,
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        active=window.starts_at <= now < window.ends_at,
        created_by=window.created_by,
    )


def health_out(view: watch_service.HealthView) -> NodeHealthOut:
    return NodeHealthOut(
        health=view.health,
        consecutive_failures=view.consecutive_failures,
        consecutive_successes=view.consecutive_successes,
        last_check_at=view.last_check_at,
        next_check_at=view.next_check_at,
        failing_since=view.failing_since,
        degraded_since=view.degraded_since,
        last_failure=view.last_failure,
        maintenance=maintenance_out(view.maintenance) if view.maintenance is not None else None,
    )


@router.get("/maintenance", summary="Maintenance pauses (active ones unless all=true)")
def list_maintenance(
    _caller: Viewer, ctx: ContextDep, all_: Annotated[bool, Query(alias="all")] = False
) -> MaintenanceListOut:
    with ctx.database.session() as session:
        windows = maintenance.list_windows(session, active_only=not all_)
        return MaintenanceListOut(items=[maintenance_out(w) for w in windows])


@router.post(
    "/maintenance",
    status_code=status.HTTP_201_CREATED,
    summary="Pause a node or a label selector: checks have no consequences, no alerts, no remediation",
)
def create_maintenance(body: MaintenanceCreateBody, caller: Operator, ctx: ContextDep) -> MaintenanceOut:
    if (body.ends_at is None) == (body.duration_seconds is None):
        message = "give exactly one of ends_at and duration_seconds"
        raise ProblemError(422, "invalid_request", "Invalid request", f"ends_at: {message}",
                           errors=[FieldError(field="ends_at", message=message)])  # fmt: skip
    ends_at = body.ends_at or dt.datetime.now(dt.UTC) + dt.timedelta(seconds=body.duration_seconds or 0)
    request = maintenance.PauseRequest(
        reason=body.reason, ends_at=ends_at, node_id=body.node_id, selector=body.selector
    )
    try:
        with ctx.database.session(write=True) as session:
            window = maintenance.create(session, request, actor=caller.actor)
            return maintenance_out(window)
    except maintenance.MaintenanceError as exc:
        raise ProblemError(exc.status, "invalid_request", "Invalid request", f"{exc.field}: {exc.message}",
                           errors=[FieldError(field=exc.field, message=exc.message)]) from None  # fmt: skip


@router.delete(
    "/maintenance/{maintenance_id}",
    summary="End a maintenance pause now (the record is kept)",
    responses={404: problem_doc("No such maintenance window")},
)
def end_maintenance(caller: Operator, ctx: ContextDep, maintenance_id: MaintenanceId) -> MaintenanceOut:
    with ctx.database.session(write=True) as session:
        window = maintenance.end(session, maintenance_id, actor=caller.actor)
        if window is None:
            raise not_found("Maintenance window", maintenance_id)
        return maintenance_out(window)


@router.get("/nodes/{node_id}/health", summary="A node's health, its recent checks and daily roll-up")
def node_health(
    _caller: Viewer,
    ctx: ContextDep,
    node_id: NodeId,
    limit: Annotated[int, Query(ge=1, le=history.HISTORY_KEEP)] = 100,
) -> NodeHealthHistoryOut:
    with ctx.database.session() as session:
        node = session.get(Node, node_id)
        if node is None:
            raise not_found("Node", node_id)
        view = watch_service.health_of(session, [node])[node.id]
        return NodeHealthHistoryOut(
            node_id=node.id,
            health=health_out(view),
            checks=[CheckOut(id=c.id, at=c.at, ok=c.ok, seconds=c.seconds, paused=c.paused, health=c.health,
                             results=list(c.results or [])) for c in history.recent(session, node.id, limit)],
            days=[DayOut(day=d.day, passed=d.passed, failed=d.failed, seconds=d.seconds)
                  for d in history.days(session, node.id)],
            remediations=[RemediationOut(**remediation.as_dict(r))
                          for r in remediation.history(session, node.id)],
        )  # fmt: skip


@router.get(
    "/brakes", summary="The fleet brake of each provider connection (engaged: no automatic remediation)"
)
def list_brakes(_caller: Viewer, ctx: ContextDep) -> BrakeListOut:
    with ctx.database.session() as session:
        return BrakeListOut(items=[BrakeOut(**brake.as_dict(row)) for row in brake.all_brakes(session)])
