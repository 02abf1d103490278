"""Read and cancel jobs: what the API, dashboard and CLI call (they never touch job SQL directly)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, delete, func, select, update
from sqlalchemy.orm import Session

from nodewright.db.models.jobs import Job, JobEvent, JobStep
from nodewright.db.types import utcnow
from nodewright.jobs.events import insert_event
from nodewright.jobs.states import CLAIMABLE, TERMINAL, JobState

# Every state a cancel can still change: waiting ones end at once, holding ones are asked to stop.
# (A job already ``canceling`` is left alone: the request stands, and no second event is written.)
CANCELABLE: tuple[str, ...] = (*CLAIMABLE, JobState.RUNNING.value)


class JobNotFound(LookupError):
    pass


class JobAlreadyFinished(Exception):
    """Cancel of a job that already reached a terminal state."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} already {job.state}")
        self.job_id = job.id
        self.state = job.state


@dataclass(frozen=True)
class JobPage:
    items: list[Job]
    total: int


def list_jobs(
    session: Session,
    *,
    states: Sequence[str] | None = None,
    kind: str | None = None,
    resource_key: str | None = None,
    created_by: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> JobPage:
    """Newest first, filtered; ``total`` counts every match (for pagination)."""
    conditions: list[ColumnElement[bool]] = []
    if states:
        conditions.append(Job.state.in_(list(states)))
    if kind:
        conditions.append(Job.kind == kind)
    if resource_key:
        conditions.append(Job.resource_key == resource_key)
    if created_by:
        conditions.append(Job.created_by == created_by)
    total = session.execute(select(func.count()).select_from(Job).where(*conditions)).scalar_one()
    rows = session.scalars(select(Job).where(*conditions).order_by(Job.id.desc()).limit(limit).offset(offset))
    return JobPage(items=list(rows), total=int(total))


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def list_steps(session: Session, job_id: int) -> list[JobStep]:
    return list(session.scalars(select(JobStep).where(JobStep.job_id == job_id).order_by(JobStep.id)))


def list_events(session: Session, job_id: int, *, after: int = 0, limit: int = 500) -> list[JobEvent]:
    """Events with ``seq > after`` in order; seq is dense per job, so a reader resumes without gaps."""
    stmt = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.seq > after)
        .order_by(JobEvent.seq)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def request_cancel(session: Session, job_id: int, *, actor: str | None = None) -> Job:
    """Cancel: a waiting job is canceled at once; a running one goes to ``canceling`` and its handler
    stops at its next step boundary or cancellation check. Idempotent while the job is canceling.

    Raises ``JobNotFound`` or ``JobAlreadyFinished``. The decision is one conditional ``UPDATE`` whose
    new state is computed from the row's *current* state (``CASE``), never two statements: between
    two updates a job can leave ``running`` (a retryable failure, a lease requeue, a shutdown
    hand-back) and match neither, which silently dropped the cancel. PostgreSQL re-evaluates both the
    ``WHERE`` and the ``CASE`` on the newest row version after waiting for a concurrent writer, so
    whatever state the job reached in the meantime, the cancel applies to it.
    """
    job = get_job(session, job_id)
    now = utcnow()
    who = f" by {actor}" if actor else ""
    waiting = Job.state.in_(CLAIMABLE)
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(CANCELABLE))
        .values(
            state=case((waiting, JobState.CANCELED.value), else_=JobState.CANCELING.value),
            cancel_requested_at=func.coalesce(Job.cancel_requested_at, now),
            finished_at=case((waiting, now), else_=Job.finished_at),
            updated_at=now,
            event_seq=Job.event_seq + 1,
        )
        .returning(Job.state, Job.event_seq, Job.attempt)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is not None:
        canceled = row.state == JobState.CANCELED.value
        insert_event(
            session,
            job_id,
            row.event_seq,
            type="state",
            message=f"canceled{who}" if canceled else f"cancel requested{who}",
            data={"state": row.state, "actor": actor},
            attempt=row.attempt,
        )
    session.refresh(job)
    if row is None and job.state in TERMINAL:
        raise JobAlreadyFinished(job)
    return job


def prune_finished(session: Session, *, finished_before: dt.datetime, limit: int = 500) -> int:
    """Delete up to ``limit`` finished jobs that ended before ``finished_before``, with their steps and
    events (explicitly, not by cascade, so it holds whatever the database's foreign-key settings)."""
    ids = list(
        session.scalars(
            select(Job.id)
            .where(Job.state.in_(list(TERMINAL)), Job.finished_at < finished_before)
            .order_by(Job.id)
            .limit(limit)
        )
    )
    if ids:
        session.execute(delete(JobEvent).where(JobEvent.job_id.in_(ids)))
        session.execute(delete(JobStep).where(JobStep.job_id.in_(ids)))
        session.execute(delete(Job).where(Job.id.in_(ids)))
    return len(ids)
