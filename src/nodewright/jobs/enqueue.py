"""Enqueue inside the caller's transaction: the job commits or rolls back with the rows it acts on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nodewright.db.models.jobs import Job
from nodewright.db.types import utcnow
from nodewright.jobs.events import append_event, jsonable
from nodewright.jobs.notify import notify_on_commit
from nodewright.jobs.plaintext import contains_secret
from nodewright.jobs.registry import Registry, load_handler_modules
from nodewright.jobs.registry import registry as default_registry
from nodewright.jobs.states import PENDING, JobState


def find_pending_by_dedup(session: Session, dedup_key: str) -> Job | None:
    stmt = select(Job).where(Job.dedup_key == dedup_key, Job.state.in_(PENDING))
    return session.execute(stmt).scalar_one_or_none()


def enqueue(
    session: Session,
    kind: str,
    args: Mapping[str, Any] | None = None,
    *,
    resource_key: str | None = None,
    dedup_key: str | None = None,
    priority: int = 0,
    run_after: dt.datetime | None = None,
    max_attempts: int | None = None,
    created_by: str | None = None,
    registry: Registry | None = None,
) -> Job:
    """Add a ``queued`` job to ``session``'s transaction and return it (flushed, so it has an id).

    With ``dedup_key``, while a job with that key is still pending (queued, retry_wait or running)
    the existing job is returned instead; the partial unique index settles concurrent enqueues.
    Nothing is visible to workers until the caller commits; a rollback leaves no trace.
    """
    if dedup_key is not None:
        existing = find_pending_by_dedup(session, dedup_key)
        if existing is not None:
            return existing
    reg = registry or default_registry
    if max_attempts is None and reg is default_registry and reg.get(kind) is None:
        # An API-only process may not have imported the handler modules yet; the kind's own
        # max_attempts must not silently fall back to the default.
        load_handler_modules()
    stored_args = jsonable(dict(args or {}))
    if contains_secret(stored_args):
        # The caller's bug, found before anything is written: its transaction can still roll back.
        raise ValueError(f"job args of {kind!r} contain a secret; pass the id of an encrypted secret")
    now = utcnow()
    job = Job(
        kind=kind,
        args=stored_args,
        state=JobState.QUEUED.value,
        resource_key=resource_key,
        dedup_key=dedup_key,
        priority=priority,
        run_after=run_after or now,
        attempt=0,
        max_attempts=max_attempts or reg.max_attempts_for(kind),
        created_by=created_by,
        event_seq=0,
        created_at=now,
        updated_at=now,
    )
    if dedup_key is not None:
        try:
            with session.begin_nested():
                session.add(job)
                session.flush()
        except IntegrityError:
            existing = find_pending_by_dedup(session, dedup_key)
            if existing is not None:
                return existing
            raise
    else:
        session.add(job)
        session.flush()
    append_event(session, job.id, type="state", message="queued", data={"state": JobState.QUEUED.value})
    session.expire(job, ["event_seq"])
    notify_on_commit(session)
    return job
