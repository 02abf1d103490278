"""Append-only job events. Messages and data are redacted before they reach the database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from nodewright.db.models.jobs import Job, JobEvent
from nodewright.db.types import utcnow
from nodewright.jobs.fencing import Fence, fenced_touch
from nodewright.security.redaction import redact

LEVELS = ("debug", "info", "warning", "error")


def jsonable(value: Any) -> Any:
    """Round-trip through JSON so a JSON column never sees a datetime, a Path or a set."""
    return json.loads(json.dumps(value, default=str))


def append_event(
    session: Session,
    job_id: int,
    *,
    type: str,
    message: str = "",
    level: str = "info",
    data: dict[str, Any] | None = None,
    attempt: int = 0,
    fence: Fence | None = None,
) -> int:
    """Insert the job's next event and return its sequence number.

    With ``fence`` the write is refused (``LeaseLost``) unless the caller still holds the lease.
    Without it (enqueue, cancel, maintainer) the job row is bumped unconditionally.
    """
    if level not in LEVELS:
        level = "info"
    if fence is not None:
        seq = fenced_touch(session, fence, bump_seq=True).event_seq
    else:
        stmt = (
            update(Job)
            .where(Job.id == job_id)
            .values(event_seq=Job.event_seq + 1)
            .returning(Job.event_seq)
            .execution_options(synchronize_session=False)
        )
        seq = int(session.execute(stmt).scalar_one())
    session.add(
        JobEvent(
            job_id=job_id,
            seq=seq,
            at=utcnow(),
            type=type,
            level=level,
            message=str(redact(message)),
            data=redact(jsonable(data or {})),
            attempt=attempt,
        )
    )
    session.flush()
    return seq
