"""Fencing: every write a running job makes proves it still holds the lease.

The proof is ``UPDATE jobs ... WHERE id=? AND lease_owner=? AND attempt=? AND state IN (running,
canceling)`` affecting exactly one row, in the same transaction as the write it guards. On
PostgreSQL the update also row-locks the job until commit, so a maintainer cannot requeue it halfway
through. Zero rows means a newer attempt (or nobody) owns the job: raise ``LeaseLost``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from nodewright.db.models.jobs import Job
from nodewright.db.types import utcnow
from nodewright.jobs.errors import LeaseLost
from nodewright.jobs.states import HOLDING


@dataclass(frozen=True)
class Fence:
    job_id: int
    owner: str
    attempt: int


@dataclass(frozen=True)
class Touch:
    event_seq: int
    cancel_requested: bool


def fenced_touch(
    session: Session,
    fence: Fence,
    *,
    bump_seq: bool = False,
    lease_expires_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Touch:
    """Assert ownership (raising ``LeaseLost``), optionally taking the next event number or renewing."""
    values: dict[str, object] = {"updated_at": now or utcnow()}
    if bump_seq:
        values["event_seq"] = Job.event_seq + 1
    if lease_expires_at is not None:
        values["lease_expires_at"] = lease_expires_at
    stmt = (
        update(Job)
        .where(
            Job.id == fence.job_id,
            Job.lease_owner == fence.owner,
            Job.attempt == fence.attempt,
            Job.state.in_(HOLDING),
        )
        .values(values)
        .returning(Job.event_seq, Job.cancel_requested_at)
        .execution_options(synchronize_session=False)
    )
    row = session.execute(stmt).one_or_none()
    if row is None:
        raise LeaseLost(f"job {fence.job_id} attempt {fence.attempt} is no longer held by {fence.owner}")
    return Touch(event_seq=int(row[0]), cancel_requested=row[1] is not None)
