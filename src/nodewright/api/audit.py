"""``GET /api/audit``: the audit log, newest first (admin only)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from nodewright.api.deps import Admin, DatabaseDep
from nodewright.api.problems import PROBLEM_RESPONSES, field_problem
from nodewright.api.routing import OneHopRoute
from nodewright.security import audit

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=PROBLEM_RESPONSES, route_class=OneHopRoute)


class AuditEntry(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]
    count: int = Field(1, description="How many identical events this row stands for (throttled floods).")


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before_id: int | None


@router.get("", summary="List audit events, newest first")
def list_audit(
    _caller: Admin,
    database: DatabaseDep,
    limit: int = Query(100, ge=1, le=500),
    before_id: int | None = Query(None, ge=1, le=2**31 - 1),
    action: str | None = Query(
        None, max_length=64, description="An action, or a kind ending in `.` (`node.`)."
    ),
    actor: str | None = Query(None, max_length=128),
    target: str | None = Query(None, max_length=200, description="A target, or a prefix ending in `:`."),
    outcome: str | None = Query(None, max_length=32),
    since: dt.datetime | None = Query(None, description="Only events at or after this time (ISO 8601)."),
) -> AuditPage:
    if since is not None:
        try:  # a time without a zone is read as UTC; one the database cannot hold is refused
            since = since.replace(tzinfo=dt.UTC) if since.tzinfo is None else since.astimezone(dt.UTC)
        except OverflowError:
            raise field_problem("since", "is out of the range of dates the audit log holds") from None
    with database.session() as session:
        rows = audit.list_events(
            session, limit=limit, before_id=before_id, action=action, actor=actor, target=target,
            outcome=outcome, since=since,
        )  # fmt: skip
        items = [
            AuditEntry(
                id=r.id,
                at=r.at,
                actor=r.actor,
                action=r.action,
                target=r.target,
                outcome=r.outcome,
                detail=r.detail,
                count=r.count,
            )
            for r in rows
        ]
    return AuditPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)
