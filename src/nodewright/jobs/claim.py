"""Claim the next runnable job: one statement, atomic on both databases.

PostgreSQL: the candidate is chosen with ``FOR UPDATE SKIP LOCKED``, so concurrent workers never wait
on each other's candidates. Two workers can still pick *different* jobs of the same resource (each
``NOT EXISTS`` check passes under READ COMMITTED); the partial unique index turns the loser's update
into a unique violation, and it simply tries again. SQLite: the same statement inside
``BEGIN IMMEDIATE`` (``Database.session(write=True)``), which serializes claimers outright.

Lease times: PostgreSQL computes them on the database's clock (see ``fencing``), so workers on
several machines do not depend on their own clocks; on SQLite, where every process runs on one
machine and reads the same clock, they are Python-side UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from nodewright.db.database import Database
from nodewright.db.types import utcnow
from nodewright.jobs import fastpath
from nodewright.jobs.connections import Connections, as_connections
from nodewright.jobs.events import insert_event
from nodewright.jobs.fencing import JOBS, Fence
from nodewright.jobs.states import CLAIMABLE, HOLDING, JobState

MAX_CLAIM_RACES = 8


def _claim_statement(for_update: bool) -> Any:
    """Built once per dialect; the kinds list is an expanding bind parameter."""
    candidate = JOBS.alias("candidate")
    holder = JOBS.alias("holder")
    resource_busy = exists().where(
        holder.c.resource_key == candidate.c.resource_key, holder.c.state.in_(HOLDING)
    )
    pick = (
        select(candidate.c.id)
        .where(
            candidate.c.state.in_(CLAIMABLE),
            candidate.c.run_after <= bindparam("now", type_=JOBS.c.run_after.type),
            candidate.c.kind.in_(bindparam("kinds", expanding=True)),
            or_(candidate.c.resource_key.is_(None), ~resource_busy),
        )
        .order_by(candidate.c.priority.desc(), candidate.c.id)
        .limit(1)
    )
    if for_update:
        pick = pick.with_for_update(skip_locked=True, of=candidate)
    return (
        update(JOBS)
        .where(JOBS.c.id == pick.scalar_subquery())
        .values(
            state=JobState.RUNNING.value,
            lease_owner=bindparam("owner"),
            attempt=JOBS.c.attempt + 1,
            lease_expires_at=bindparam("expires", type_=JOBS.c.lease_expires_at.type),
            started_at=bindparam("now", type_=JOBS.c.started_at.type),
            updated_at=bindparam("now", type_=JOBS.c.updated_at.type),
            event_seq=JOBS.c.event_seq + 1,
        )
        .returning(
            JOBS.c.id,
            JOBS.c.kind,
            JOBS.c.args,
            JOBS.c.attempt,
            JOBS.c.max_attempts,
            JOBS.c.resource_key,
            JOBS.c.created_at,
            JOBS.c.run_after,
            JOBS.c.event_seq,
        )
    )


_CLAIM_SQLITE = _claim_statement(for_update=False)
_ANY_DUE = (
    select(JOBS.c.id)
    .where(
        JOBS.c.state.in_(CLAIMABLE),
        JOBS.c.run_after <= bindparam("now", type_=JOBS.c.run_after.type),
        JOBS.c.kind.in_(bindparam("kinds", expanding=True)),
    )
    .limit(1)
)


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
    lease_seconds: float = 30.0

    @property
    def fence(self) -> Fence:
        return Fence(self.id, self.owner, self.attempt, self.lease_seconds)

    @property
    def wait_seconds(self) -> float:
        """Time from when the job became runnable to when it started (the claim latency)."""
        ready = max(self.created_at, self.run_after)
        return max(0.0, (self.started_at - ready).total_seconds())


def claim_next(
    database: Database | Connections, owner: str, kinds: Sequence[str], lease_seconds: float
) -> ClaimedJob | None:
    """Claim one job of ``kinds`` for ``owner``, or return None when nothing is runnable."""
    if not kinds:
        return None
    connections = as_connections(database)
    for _ in range(MAX_CLAIM_RACES):
        try:
            return _claim_once(connections, owner, list(kinds), lease_seconds)
        except IntegrityError:
            continue  # lost a same-resource race to another worker; pick again
    return None


def _claim_once(
    connections: Connections, owner: str, kinds: list[str], lease_seconds: float
) -> ClaimedJob | None:
    if not connections.is_sqlite:
        with connections.single() as conn:
            row = conn.execute(
                fastpath.CLAIM, {"owner": owner, "kinds": kinds, "lease_seconds": lease_seconds}
            ).one_or_none()
        return None if row is None else _claimed(row, owner, row.started_at, lease_seconds)
    now = utcnow()
    params = {
        "now": now,
        "owner": owner,
        "kinds": kinds,
        "expires": now + dt.timedelta(seconds=lease_seconds),
    }
    # SQLite has one write lock for the whole database: idle workers look before they take it.
    with connections.begin() as conn:
        if conn.execute(_ANY_DUE, params).first() is None:
            return None
    with connections.begin(write=True) as conn:
        row = conn.execute(_CLAIM_SQLITE, params).one_or_none()
        if row is None:
            return None
        claimed = _claimed(row, owner, now, lease_seconds)
        insert_event(
            conn,
            claimed.id,
            row.event_seq,
            type="state",
            message=f"running (attempt {claimed.attempt} of {claimed.max_attempts})",
            data={"state": JobState.RUNNING.value, "worker": owner},
            attempt=claimed.attempt,
        )
        return claimed


def _claimed(row: Any, owner: str, now: dt.datetime, lease_seconds: float) -> ClaimedJob:
    return ClaimedJob(
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
        lease_seconds=lease_seconds,
    )
