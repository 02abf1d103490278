"""Claim the next runnable job: one statement, atomic on both databases.

PostgreSQL: the candidate is chosen with ``FOR UPDATE SKIP LOCKED``, so concurrent workers never wait
on each other's candidates. Two workers can still pick *different* jobs of the same resource (each
``NOT EXISTS`` check passes under READ COMMITTED); the partial unique index turns the loser's update
into a unique violation, and it simply tries again. SQLite: the same statement inside
``BEGIN IMMEDIATE`` (``Database.session(write=True)``), which serializes claimers outright.

Times are Python-side UTC on both databases, so lease arithmetic is identical everywhere (workers on
several machines need synchronized clocks, as any lease system does).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from nodewright.db.database import Database
from nodewright.db.models.jobs import Job
from nodewright.db.types import utcnow
from nodewright.jobs.events import append_event
from nodewright.jobs.fencing import Fence
from nodewright.jobs.states import CLAIMABLE, HOLDING, JobState

MAX_CLAIM_RACES = 8


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    resource_key: str | None
    owner: str
    created_at: dt.datetime
    run_after: dt.datetime
    started_at: dt.datetime

    @property
    def fence(self) -> Fence:
        return Fence(self.id, self.owner, self.attempt)

    @property
    def wait_seconds(self) -> float:
        """Time from when the job became runnable to when it started (the claim latency)."""
        ready = max(self.created_at, self.run_after)
        return max(0.0, (self.started_at - ready).total_seconds())


def claim_next(
    database: Database, owner: str, kinds: Sequence[str], lease_seconds: float
) -> ClaimedJob | None:
    """Claim one job of ``kinds`` for ``owner``, or return None when nothing is runnable."""
    if not kinds:
        return None
    for _ in range(MAX_CLAIM_RACES):
        try:
            return _claim_once(database, owner, list(kinds), lease_seconds)
        except IntegrityError:
            continue  # lost a same-resource race to another worker; pick again
    return None


def _claim_once(database: Database, owner: str, kinds: list[str], lease_seconds: float) -> ClaimedJob | None:
    with database.session(write=True) as session:
        now = utcnow()
        candidate = aliased(Job)
        holder = aliased(Job)
        resource_busy = exists().where(
            holder.resource_key == candidate.resource_key, holder.state.in_(HOLDING)
        )
        pick = (
            select(candidate.id)
            .where(
                candidate.state.in_(CLAIMABLE),
                candidate.run_after <= now,
                candidate.kind.in_(kinds),
                or_(candidate.resource_key.is_(None), ~resource_busy),
            )
            .order_by(candidate.priority.desc(), candidate.id)
            .limit(1)
        )
        if not database.is_sqlite:
            pick = pick.with_for_update(skip_locked=True, of=candidate)
        stmt = (
            update(Job)
            .where(Job.id == pick.scalar_subquery())
            .values(
                state=JobState.RUNNING.value,
                lease_owner=owner,
                attempt=Job.attempt + 1,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                started_at=now,
                updated_at=now,
            )
            .returning(
                Job.id,
                Job.kind,
                Job.args,
                Job.attempt,
                Job.max_attempts,
                Job.resource_key,
                Job.created_at,
                Job.run_after,
            )
            .execution_options(synchronize_session=False)
        )
        row = session.execute(stmt).one_or_none()
        if row is None:
            return None
        claimed = ClaimedJob(
            id=row.id,
            kind=row.kind,
            args=dict(row.args or {}),
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            resource_key=row.resource_key,
            owner=owner,
            created_at=row.created_at,
            run_after=row.run_after,
            started_at=now,
        )
        append_event(
            session,
            claimed.id,
            type="state",
            message=f"running (attempt {claimed.attempt} of {claimed.max_attempts})",
            data={"state": JobState.RUNNING.value, "worker": owner},
            attempt=claimed.attempt,
        )
        return claimed
