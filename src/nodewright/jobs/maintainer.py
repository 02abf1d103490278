"""Sweeps every worker pool runs periodically: expired leases, periodic jobs, stale worker rows.

Every sweep is safe to run concurrently on many workers: each change is a conditional update (it
applies only if the row is still in the state the sweep saw) and periodic enqueue relies on the
dedup partial unique index, so no leader election is needed.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import delete, func, select, update

from nodewright.db.database import Database
from nodewright.db.models.jobs import Job, WorkerRecord
from nodewright.db.types import utcnow
from nodewright.jobs import local, metrics
from nodewright.jobs.enqueue import enqueue, find_pending_by_dedup
from nodewright.jobs.errors import WORKER_LOST, JobError
from nodewright.jobs.events import append_event
from nodewright.jobs.notify import notify_on_commit
from nodewright.jobs.registry import Registry
from nodewright.jobs.states import HOLDING, JobState

log = logging.getLogger(__name__)


def _lease_clock(database: Database) -> Any:
    """What "now" is for a lease: the database's clock on PostgreSQL (see ``fencing``)."""
    return utcnow() if database.is_sqlite else func.clock_timestamp()


def requeue_expired(database: Database) -> list[int]:
    """Jobs whose lease ran out go back to ``queued`` (the next claim is attempt + 1).

    A job out of attempts fails with ``worker_lost``; a job being canceled becomes ``canceled``.
    Returns the ids that changed. On SQLite an expired lease is not enough: the owner's liveness file
    (``local``) must also say it no longer holds the attempt, since there a renewal can only be as
    timely as the database-wide write lock lets it be.
    """
    changed: list[int] = []
    with database.session() as session:  # cheap read first: most sweeps find nothing
        if (
            session.execute(
                select(Job.id)
                .where(Job.state.in_(HOLDING), Job.lease_expires_at < _lease_clock(database))
                .limit(1)
            ).first()
            is None
        ):
            return changed
    directory = local.trusted_dir(database.url)
    with database.session(write=True) as session:
        now = utcnow()
        clock = _lease_clock(database)
        expired = session.execute(
            select(Job.id, Job.kind, Job.state, Job.attempt, Job.max_attempts, Job.lease_owner)
            .where(Job.state.in_(HOLDING), Job.lease_expires_at < clock)
            .order_by(Job.id)
            # PostgreSQL: skip a job whose row another transaction holds (a handler's long
            # ctx.transaction()): waiting would stall this worker's monitor, and with it the lease
            # renewals of all its own jobs. A later sweep takes it. (SQLite: already serialized.)
            .with_for_update(skip_locked=True)
        ).all()
        lost_kinds: list[str] = []
        for job_id, kind, state, attempt, max_attempts, owner in expired:
            if local.attempt_alive(directory, owner, job_id, attempt):
                continue  # its worker lives and renews; it was starved of the write lock, not dead
            values: dict[str, object] = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
            if state == JobState.CANCELING.value:
                values.update(state=JobState.CANCELED.value, finished_at=now)
                message = "canceled (the worker stopped responding)"
            elif attempt >= max_attempts:
                error = JobError(
                    WORKER_LOST,
                    f"the worker running attempt {attempt} stopped responding and no attempts remain",
                    retryable=False,
                )
                values.update(state=JobState.FAILED.value, finished_at=now, error=error.to_dict())
                message = f"failed: {WORKER_LOST} (worker {owner})"
            else:
                # Runnable again from now (claim latency counts from here, not from the first enqueue).
                values.update(state=JobState.QUEUED.value, run_after=now)
                message = f"lease of attempt {attempt} expired (worker {owner}); requeued"
            row = session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.attempt == attempt,
                    Job.state.in_(HOLDING),
                    Job.lease_expires_at < clock,
                )
                .values(values)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            ).one_or_none()
            if row is None:
                continue
            append_event(
                session,
                job_id,
                type="state",
                level="warning",
                message=message,
                data={"state": values["state"]},
                attempt=attempt,
            )
            changed.append(job_id)
            if state != JobState.CANCELING.value:
                lost_kinds.append(kind)
        if changed:
            notify_on_commit(session)
    for kind in lost_kinds:  # a lost attempt is a failed one, like those finish_failed counts
        metrics.FAILURES.labels(kind=kind, code=WORKER_LOST).inc()
    if changed:
        log.warning("requeued or closed jobs with expired leases: %s", changed)
    return changed


def enqueue_periodic(database: Database, registry: Registry) -> list[int]:
    """Make sure each periodic kind has exactly one pending instance, due one interval after the last."""
    created: list[int] = []
    for schedule in registry.schedules():
        with database.session() as session:
            if find_pending_by_dedup(session, schedule.dedup_key) is not None:
                continue
        with database.session(write=True) as session:
            if find_pending_by_dedup(session, schedule.dedup_key) is not None:
                continue
            last = session.execute(
                select(Job.created_at, Job.finished_at)
                .where(Job.dedup_key == schedule.dedup_key)
                .order_by(Job.id.desc())
                .limit(1)
            ).one_or_none()
            now = utcnow()
            if last is None:
                run_after = now
            else:
                anchor = last.finished_at or last.created_at
                run_after = max(now, anchor + dt.timedelta(seconds=schedule.interval_seconds))
            job = enqueue(
                session,
                schedule.kind,
                dict(schedule.args),
                resource_key=schedule.dedup_key,
                dedup_key=schedule.dedup_key,
                priority=schedule.priority,
                run_after=run_after,
                created_by="periodic",
                registry=registry,
            )
            created.append(job.id)
    return created


def prune_workers(database: Database, stale_after_seconds: float) -> int:
    """Forget worker rows whose heartbeat stopped (their jobs are recovered by lease expiry)."""
    cutoff = utcnow() - dt.timedelta(seconds=stale_after_seconds)
    with database.session(write=True) as session:
        result = session.execute(
            delete(WorkerRecord).where(WorkerRecord.heartbeat_at < cutoff).returning(WorkerRecord.id)
        )
        return len(result.all())


def run_maintenance(database: Database, registry: Registry, lease_seconds: float) -> None:
    requeue_expired(database)
    enqueue_periodic(database, registry)
    prune_workers(database, stale_after_seconds=max(60.0, lease_seconds * 4))
