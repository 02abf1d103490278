"""The hourly prune job deletes old finished jobs with their steps and events, and nothing else."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update

from nodewright.db.database import Database
from nodewright.db.models.jobs import Job, JobEvent, JobStep
from nodewright.db.types import utcnow
from nodewright.jobs.builtin import PRUNE
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.events import append_event
from nodewright.jobs.registry import registry
from nodewright.jobs.states import JobState
from tests.support.jobs import job_row, run_next


def _job(database: Database, state: JobState, finished_days_ago: float | None) -> int:
    with database.session(write=True) as session:
        job = enqueue(session, "nodewright.noop", {}, registry=registry)
        job_id = int(job.id)
        finished = utcnow() - dt.timedelta(days=finished_days_ago) if finished_days_ago is not None else None
        session.execute(update(Job).where(Job.id == job_id).values(state=state.value, finished_at=finished))
        append_event(session, job_id, type="log", message="hello", data={}, attempt=1)
        now = utcnow()
        session.add(
            JobStep(job_id=job_id, name="s", attempt=1, output={"value": 1}, started_at=now, completed_at=now)
        )
    return job_id


def _count(database: Database, model: type[Job] | type[JobEvent] | type[JobStep], job_id: int) -> int:
    column = model.id if model is Job else model.job_id  # type: ignore[union-attr]
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(column == job_id)) or 0)


def test_prune_deletes_only_old_finished_jobs(database: Database) -> None:
    assert PRUNE in {s.kind for s in registry.schedules()}  # runs as a periodic singleton
    old_done = _job(database, JobState.SUCCEEDED, 40)
    old_failed = _job(database, JobState.FAILED, 31)
    recent_done = _job(database, JobState.SUCCEEDED, 1)
    old_running = _job(database, JobState.RUNNING, None)
    with database.session(write=True) as session:
        session.execute(
            update(Job).where(Job.id == old_running).values(created_at=utcnow() - dt.timedelta(days=90))
        )
        prune_id = int(enqueue(session, PRUNE, {"retention_days": 30}, registry=registry).id)

    assert run_next(database, registry=registry) == "succeeded"
    assert job_row(database, prune_id).result == {"deleted": 2, "retention_days": 30.0}
    for gone in (old_done, old_failed):
        assert (
            _count(database, Job, gone),
            _count(database, JobEvent, gone),
            _count(database, JobStep, gone),
        ) == (
            0,
            0,
            0,
        )
    for kept in (recent_done, old_running):
        assert _count(database, Job, kept) == 1
        assert _count(database, JobEvent, kept) >= 1 and _count(database, JobStep, kept) == 1
