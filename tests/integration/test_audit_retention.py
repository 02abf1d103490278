"""Audit retention: the hourly periodic prune deletes audit rows older than the retention period."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from nodewright.db.database import Database
from nodewright.db.models import AuditEvent
from nodewright.db.types import utcnow
from nodewright.jobs.builtin import PRUNE_AUDIT
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.registry import registry
from nodewright.security import audit
from tests.support.jobs import job_row, run_next


def _row(database: Database, days_ago: float, target: str) -> None:
    with database.session(write=True) as session:
        event = audit.record(session, actor="user:x", action="t.test", target=target, outcome="ok")
        session.flush()
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.id == event.id)
            .values(at=utcnow() - dt.timedelta(days=days_ago))
        )


def test_prune_audit_deletes_only_rows_older_than_the_retention(database: Database) -> None:
    assert PRUNE_AUDIT in {s.kind for s in registry.schedules()}  # runs as a periodic singleton
    _row(database, 400, "old-1")
    _row(database, 366, "old-2")
    _row(database, 10, "recent")
    with database.session(write=True) as session:
        prune_id = int(enqueue(session, PRUNE_AUDIT, {"retention_days": 365}, registry=registry).id)
    assert run_next(database, registry=registry) == "succeeded"
    assert job_row(database, prune_id).result == {"deleted": 2, "retention_days": 365.0}
    with database.session() as session:
        targets = set(session.scalars(select(AuditEvent.target).where(AuditEvent.action == "t.test")))
    assert targets == {"recent"}
