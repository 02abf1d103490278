"""The audit log: who did what to which target, and how it ended. Never a secret."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from nodewright.db.database import Database
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
    session: Session,
    *,
    limit: int = 100,
    before_id: int | None = None,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    outcome: str | None = None,
    since: dt.datetime | None = None,
) -> list[AuditEvent]:
    """Newest first. ``action`` ending in ``.`` (``node.``) matches every action of that kind;
    ``target`` matches exactly or as a prefix ending in ``:`` (``node:``)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if target is not None:
        query = query.where(
            AuditEvent.target.startswith(target, autoescape=True) if target.endswith(":")
            else AuditEvent.target == target
        )  # fmt: skip
    if outcome is not None:
        query = query.where(AuditEvent.outcome == outcome)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    if action is not None:
        query = query.where(
            AuditEvent.action.startswith(action, autoescape=True) if action.endswith(".")
            else AuditEvent.action == action
        )  # fmt: skip
    return list(session.scalars(query))


@dataclass
class _Run:
    row_id: int
    started: float
    count: int
    stored: int
    stored_at: float


class RefusalTally:
    """Counts repeated identical refusals (a throttled sign-in flood) instead of writing a row each.

    The first refusal of a key in a window writes one audit row; further ones only count in memory
    and the row's ``count`` is brought up to date at most every ``flush_seconds``. A flood thus costs
    one insert and a few updates per window, not one write per request. The last few seconds of a
    run may be lost if the process dies (the row still shows the run and most of its count).
    """

    def __init__(
        self,
        *,
        window_seconds: float,
        flush_seconds: float = 5.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = window_seconds
        self.flush_seconds = flush_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str, str, str], _Run] = {}

    def record(self, database: Database, *, actor: str, action: str, target: str, outcome: str) -> None:
        run_key = (actor[:128], action[:64], target[:256], outcome[:32])
        now = self._clock()
        with self._lock:
            run = self._runs.get(run_key)
            if run is not None and now - run.started < self.window_seconds:
                run.count += 1
                if now - run.stored_at < self.flush_seconds:
                    return
                run.stored, run.stored_at = run.count, now
                row_id, count = run.row_id, run.count
            else:
                row_id = 0
        if row_id:
            with database.session(write=True) as session:
                session.execute(update(AuditEvent).where(AuditEvent.id == row_id).values(count=count))
            return
        with database.session(write=True) as session:
            event = record(session, actor=actor, action=action, target=target, outcome=outcome)
            session.flush()
            new_id = event.id
        with self._lock:
            if len(self._runs) >= self.max_keys:
                self._forget_old(now)
            self._runs[run_key] = _Run(new_id, now, 1, 1, now)

    def _forget_old(self, now: float) -> None:
        for key, run in list(self._runs.items()):
            if now - run.started >= self.window_seconds:
                del self._runs[key]
        while len(self._runs) >= self.max_keys:
            del self._runs[next(iter(self._runs))]


def prune(session: Session, *, before: dt.datetime, limit: int = 1000) -> int:
    """Delete up to ``limit`` audit rows older than ``before``; returns how many went."""
    ids = list(session.scalars(select(AuditEvent.id).where(AuditEvent.at < before).limit(limit)))
    if not ids:
        return 0
    session.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids)))
    return len(ids)
