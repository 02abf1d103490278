"""Final writes of an attempt: success, retry, failure, cancel, hand-back. All fenced."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from nodewright.db.database import Database
from nodewright.db.models.jobs import Job
from nodewright.db.types import utcnow
from nodewright.jobs import metrics
from nodewright.jobs.backoff import next_run_after
from nodewright.jobs.claim import ClaimedJob
from nodewright.jobs.errors import JobError
from nodewright.jobs.events import append_event, jsonable
from nodewright.jobs.fencing import Fence, fenced_touch
from nodewright.jobs.notify import notify_on_commit
from nodewright.jobs.registry import JobKind
from nodewright.jobs.states import HOLDING, JobState
from nodewright.security.redaction import redact


def _fenced_update(session: Session, fence: Fence, values: dict[str, Any]) -> None:
    from nodewright.jobs.errors import LeaseLost

    stmt = (
        update(Job)
        .where(
            Job.id == fence.job_id,
            Job.lease_owner == fence.owner,
            Job.attempt == fence.attempt,
            Job.state.in_(HOLDING),
        )
        .values(values)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).one_or_none() is None:
        raise LeaseLost(f"job {fence.job_id} attempt {fence.attempt} is no longer ours")


def _run_seconds(claimed: ClaimedJob, now: dt.datetime) -> float:
    return max(0.0, (now - claimed.started_at).total_seconds())


def finish_succeeded(database: Database, claimed: ClaimedJob, result: Any) -> None:
    now = utcnow()
    value = jsonable(result) if result is not None else None
    if value is not None and not isinstance(value, dict):
        value = {"value": value}
    with database.session(write=True) as session:
        _fenced_update(
            session,
            claimed.fence,
            {
                "state": JobState.SUCCEEDED.value,
                "result": redact(value),
                "error": None,
                "finished_at": now,
                "updated_at": now,
                "lease_expires_at": None,
            },
        )
        append_event(
            session,
            claimed.id,
            type="state",
            message="succeeded",
            data={"state": JobState.SUCCEEDED.value},
            attempt=claimed.attempt,
        )
        notify_on_commit(session)
    metrics.RUN_TIME.labels(kind=claimed.kind, outcome="succeeded").observe(_run_seconds(claimed, now))


def finish_canceled(database: Database, claimed: ClaimedJob, message: str = "canceled") -> None:
    now = utcnow()
    with database.session(write=True) as session:
        _fenced_update(
            session,
            claimed.fence,
            {
                "state": JobState.CANCELED.value,
                "finished_at": now,
                "updated_at": now,
                "lease_expires_at": None,
            },
        )
        append_event(
            session,
            claimed.id,
            type="state",
            message=message,
            data={"state": JobState.CANCELED.value},
            attempt=claimed.attempt,
        )
        notify_on_commit(session)
    metrics.RUN_TIME.labels(kind=claimed.kind, outcome="canceled").observe(_run_seconds(claimed, now))


def finish_failed(database: Database, claimed: ClaimedJob, error: JobError, spec: JobKind | None) -> str:
    """Record a failed attempt: ``retry_wait`` while it is retryable and attempts remain, else ``failed``.

    A job whose cancel was requested is canceled instead of retried. Returns the new state.
    """
    now = utcnow()
    error_json = redact(error.to_dict())
    with database.session(write=True) as session:
        touch = fenced_touch(session, claimed.fence)
        if touch.cancel_requested:
            state = JobState.CANCELED.value
            values: dict[str, Any] = {"state": state, "error": error_json, "finished_at": now}
            message = f"canceled after error {error.code}"
        elif error.retryable and claimed.attempt < claimed.max_attempts:
            state = JobState.RETRY_WAIT.value
            run_after = next_run_after(
                now,
                claimed.attempt,
                base=spec.backoff_base if spec else 2.0,
                cap=spec.backoff_cap if spec else 600.0,
                retry_after=error.retry_after,
            )
            values = {"state": state, "error": error_json, "run_after": run_after}
            message = f"attempt {claimed.attempt} failed ({error.code}); retrying at {run_after.isoformat()}"
        else:
            state = JobState.FAILED.value
            values = {"state": state, "error": error_json, "finished_at": now}
            message = f"failed: {error.code}"
        values.update(updated_at=now, lease_expires_at=None)
        _fenced_update(session, claimed.fence, values)
        append_event(
            session,
            claimed.id,
            type="state",
            level="error" if state == JobState.FAILED.value else "warning",
            message=message,
            data={"state": state, "error": error_json},
            attempt=claimed.attempt,
        )
        notify_on_commit(session)
    metrics.FAILURES.labels(kind=claimed.kind, code=error.code).inc()
    metrics.RUN_TIME.labels(kind=claimed.kind, outcome=state).observe(_run_seconds(claimed, now))
    return state


def hand_back(database: Database, claimed: ClaimedJob, reason: str) -> None:
    """Give a running job back to the queue (shutdown timeout); a canceling one becomes canceled."""
    now = utcnow()
    with database.session(write=True) as session:
        touch = fenced_touch(session, claimed.fence)
        state = JobState.CANCELED.value if touch.cancel_requested else JobState.QUEUED.value
        values: dict[str, Any] = {
            "state": state,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if state == JobState.CANCELED.value:
            values["finished_at"] = now
        _fenced_update(session, claimed.fence, values)
        append_event(
            session,
            claimed.id,
            type="state",
            level="warning",
            message=f"{state}: {reason}",
            data={"state": state},
            attempt=claimed.attempt,
        )
        notify_on_commit(session)
