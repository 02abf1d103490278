"""Maintenance pauses: a node, or every node matching a label selector, until an end time.

While a pause covers a node its checks still run and are recorded (marked paused) but have no
consequences: no transition, no alert, no remediation. Ending a pause early sets its end to now,
so the record stays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewright.db.models import MaintenanceWindow, Node
from nodewright.db.types import utcnow
from nodewright.security import audit

MAX_DURATION = dt.timedelta(days=90)


class MaintenanceError(ValueError):
    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class PauseRequest:
    reason: str
    ends_at: dt.datetime
    node_id: int | None = None
    selector: Mapping[str, str] | None = None


def matches(window: MaintenanceWindow, node: Node) -> bool:
    if window.node_id is not None:
        return window.node_id == node.id
    labels = node.labels or {}
    return bool(window.selector) and all(labels.get(k) == v for k, v in (window.selector or {}).items())


def active_windows(session: Session, now: dt.datetime) -> list[MaintenanceWindow]:
    return list(
        session.scalars(
            select(MaintenanceWindow)
            .where(MaintenanceWindow.starts_at <= now, MaintenanceWindow.ends_at > now)
            .order_by(MaintenanceWindow.id)
        )
    )


def active_for(session: Session, node: Node, now: dt.datetime) -> MaintenanceWindow | None:
    return covering(active_windows(session, now), node)


def covering(windows: Iterable[MaintenanceWindow], node: Node) -> MaintenanceWindow | None:
    return next((w for w in windows if matches(w, node)), None)


def create(session: Session, request: PauseRequest, *, actor: str) -> MaintenanceWindow:
    now = utcnow()
    if (request.node_id is None) == (not request.selector):
        raise MaintenanceError("node_id", "give exactly one of node_id and selector")
    if request.node_id is not None and session.get(Node, request.node_id) is None:
        raise MaintenanceError("node_id", f"node {request.node_id} does not exist")
    if request.ends_at <= now:
        raise MaintenanceError("ends_at", "must be in the future")
    if request.ends_at - now > MAX_DURATION:
        raise MaintenanceError("ends_at", "must be at most 90 days away")
    window = MaintenanceWindow(
        node_id=request.node_id,
        selector=dict(request.selector) if request.selector else None,
        reason=request.reason,
        starts_at=now,
        ends_at=request.ends_at,
        created_by=actor[:128],
        created_at=now,
    )
    session.add(window)
    session.flush()
    audit.record(session, actor=actor, action="maintenance.start", target=f"maintenance:{window.id}",
                 outcome="ok", detail={"node_id": request.node_id, "selector": window.selector,
                                       "ends_at": request.ends_at.isoformat()})  # fmt: skip
    return window


def end(session: Session, window_id: int, *, actor: str) -> MaintenanceWindow | None:
    window = session.get(MaintenanceWindow, window_id)
    if window is None:
        return None
    now = utcnow()
    if window.ends_at > now:
        window.ends_at = max(now, window.starts_at)
        audit.record(session, actor=actor, action="maintenance.end", target=f"maintenance:{window.id}",
                     outcome="ok")  # fmt: skip
    return window


def list_windows(session: Session, *, active_only: bool, limit: int = 200) -> list[MaintenanceWindow]:
    now = utcnow()
    stmt = select(MaintenanceWindow).order_by(MaintenanceWindow.id.desc()).limit(limit)
    if active_only:
        stmt = stmt.where(MaintenanceWindow.ends_at > now)
    return list(session.scalars(stmt))
