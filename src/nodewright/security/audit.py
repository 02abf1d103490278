"""The audit log: who did what to which target, and how it ended. Never a secret."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewright.db.models import AuditEvent
from nodewright.security.redaction import redact


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit row to the caller's transaction, so it commits (or not) with the change.

    Values are cut to their column sizes: PostgreSQL refuses longer ones, and an audit row that
    cannot be written would fail the change it records (an actor is ``user:<64>/token:<64>``).
    """
    event = AuditEvent(
        actor=actor[:128],
        action=action[:64],
        target=target[:256],
        outcome=outcome[:32],
        detail=redact(detail or {}),
    )
    session.add(event)
    return event


def list_events(
    session: Session, *, limit: int = 100, before_id: int | None = None, action: str | None = None
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return list(session.scalars(query))
