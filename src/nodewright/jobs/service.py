"""Read and cancel jobs: what the API, dashboard and CLI call (they never touch job SQL directly)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from nodewright.db.models.jobs import Job, JobEvent, JobStep
from nodewright.db.types import utcnow
from nodewright.jobs.events import append_event
from nodewright.jobs.states import CLAIMABLE, TERMINAL, JobState


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

    Raises ``JobNotFound`` or ``JobAlreadyFinished``. Both transitions are conditional updates, so a
    cancel racing a claim resolves to exactly one of them.
    """
    job = get_job(session, job_id)
    now = utcnow()
    who = f" by {actor}" if actor else ""
    canceled = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(CLAIMABLE))
        .values(state=JobState.CANCELED.value, cancel_requested_at=now, finished_at=now, updated_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if canceled is not None:
        append_event(
            session,
            job_id,
            type="state",
            message=f"canceled{who}",
            data={"state": JobState.CANCELED.value, "actor": actor},
            attempt=job.attempt,
        )
    else:
        requested = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING.value)
            .values(state=JobState.CANCELING.value, cancel_requested_at=now, updated_at=now)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if requested is not None:
            append_event(
                session,
                job_id,
                type="state",
                message=f"cancel requested{who}",
                data={"state": JobState.CANCELING.value, "actor": actor},
                attempt=job.attempt,
            )
    session.refresh(job)
    if job.state in TERMINAL and canceled is None:
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
