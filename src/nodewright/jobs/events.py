"""Append-only job events. Messages and data are redacted and cleaned of control characters
(``security.text``) before they reach the database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Table, bindparam, insert, update

from nodewright.db.models.jobs import JobEvent
from nodewright.db.types import utcnow
from nodewright.jobs.fencing import JOBS, Executor, Fence, fenced_touch
from nodewright.security.redaction import redact, redact_text
from nodewright.security.text import clean, clean_value

LEVELS = ("debug", "info", "warning", "error")
EVENTS: Table = JobEvent.__table__  # type: ignore[assignment]

_BUMP = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"))
    .values(event_seq=JOBS.c.event_seq + 1)
    .returning(JOBS.c.event_seq)
)
_INSERT = insert(EVENTS)


def jsonable(value: Any) -> Any:
    """Round-trip through JSON so a JSON column never sees a datetime, a Path or a set.

    NaN and the infinities become null: JSON has no literal for them, PostgreSQL refuses them and
    SQLite would store them, so a job would behave differently on the two databases.
    """
    return json.loads(json.dumps(value, default=str), parse_constant=lambda _constant: None)


def insert_event(
    executor: Executor,
    job_id: int,
    seq: int,
    *,
    type: str,
    message: str = "",
    level: str = "info",
    data: dict[str, Any] | None = None,
    attempt: int = 0,
) -> None:
    """Insert an event whose ``seq`` the caller already took from the job row."""
    executor.execute(
        _INSERT,
        {
            "job_id": job_id,
            "seq": seq,
            "at": utcnow(),
            "type": type,
            "level": level if level in LEVELS else "info",
            # str() first: redact() leaves a non-string (an exception passed as the message) as it is.
            # Cleaned too: a message may carry a node's output, terminal escapes and all.
            "message": clean(redact_text(str(message))),
            "data": clean_value(redact(jsonable(data))) if data else {},
            "attempt": attempt,
        },
    )


def append_event(
    executor: Executor,
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
    if fence is not None:
        seq = fenced_touch(executor, fence, bump_seq=True).event_seq
    else:
        seq = int(executor.execute(_BUMP, {"job_id": job_id}).scalar_one())
    insert_event(executor, job_id, seq, type=type, message=message, level=level, data=data, attempt=attempt)
    return seq
