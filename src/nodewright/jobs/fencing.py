"""Fencing: every write a running job makes proves it still holds the lease.

The proof is ``UPDATE jobs ... WHERE id=? AND lease_owner=? AND attempt=? AND state IN (running,
canceling)`` affecting exactly one row, in the same transaction as the write it guards. On
PostgreSQL the update also row-locks the job until commit, so a maintainer cannot requeue it halfway
through. Zero rows means a newer attempt (or nobody) owns the job: raise ``LeaseLost``.

Lease times: on PostgreSQL every lease computation uses the database's clock (``clock_timestamp()``:
the claim's and each renewal's new deadline, and the sweep's "expired" test), so a worker whose clock
is off cannot make a job look expired, or alive, to another; the Python-side ``now`` is used only for
informational columns. SQLite runs on one machine, where every process reads the same clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Float, Table, bindparam, func, literal_column, update
from sqlalchemy.orm import Session

from nodewright.db.models.jobs import Job
from nodewright.db.types import utcnow
from nodewright.jobs.errors import LeaseLost
from nodewright.jobs.states import HOLDING

Executor = Connection | Session
JOBS: Table = Job.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Fence:
    job_id: int
    owner: str
    attempt: int
    # When set, every fenced write also renews the lease in place: the write proves the attempt
    # alive, and on PostgreSQL it holds the row lock the worker's renewal would have to skip.
    lease_seconds: float = 0.0


@dataclass(frozen=True)
class Touch:
    event_seq: int
    cancel_requested: bool


def fenced_update(values: dict[str, Any]) -> Any:
    """``UPDATE jobs SET <values> WHERE <fence>`` returning the event seq and the cancel request."""
    return (
        update(JOBS)
        .where(
            JOBS.c.id == bindparam("f_id"),
            JOBS.c.lease_owner == bindparam("f_owner"),
            JOBS.c.attempt == bindparam("f_attempt"),
            JOBS.c.state.in_(HOLDING),
        )
        .values(values)
        .returning(JOBS.c.event_seq, JOBS.c.cancel_requested_at)
    )


def fence_params(fence: Fence) -> dict[str, Any]:
    return {"f_id": fence.job_id, "f_owner": fence.owner, "f_attempt": fence.attempt}


_TOUCH = fenced_update({"updated_at": bindparam("now")})
_TOUCH_SEQ = fenced_update({"updated_at": bindparam("now"), "event_seq": JOBS.c.event_seq + 1})
_RENEW = fenced_update({"updated_at": bindparam("now"), "lease_expires_at": bindparam("expires")})
_SEQ = {"event_seq": JOBS.c.event_seq + 1}


def db_lease_deadline() -> Any:
    """PostgreSQL: ``clock_timestamp() + :lease_seconds`` seconds, on the database's clock."""
    return func.clock_timestamp() + literal_column("interval '1 second'") * bindparam(
        "lease_seconds", type_=Float()
    )


_RENEW_DB_CLOCK = fenced_update({"updated_at": bindparam("now"), "lease_expires_at": db_lease_deadline()})
# Touches that also renew: [bump_seq][on the database clock]
_TOUCH_RENEW = {
    (False, False): _RENEW,
    (True, False): fenced_update(
        {"updated_at": bindparam("now"), "lease_expires_at": bindparam("expires"), **_SEQ}
    ),
    (False, True): _RENEW_DB_CLOCK,
    (True, True): fenced_update(
        {"updated_at": bindparam("now"), "lease_expires_at": db_lease_deadline(), **_SEQ}
    ),
}


def _is_sqlite(executor: Executor) -> bool:
    bind = executor.get_bind() if isinstance(executor, Session) else executor
    return bind.dialect.name == "sqlite"


def renew_lease(executor: Executor, fence: Fence, lease_seconds: float) -> Touch:
    """Push the attempt's lease ``lease_seconds`` ahead (fenced), on the database's clock where
    there is one (see the module docstring)."""
    now = utcnow()
    if _is_sqlite(executor):
        expires = now + dt.timedelta(seconds=lease_seconds)
        return run_fenced(executor, _RENEW, fence, {"now": now, "expires": expires})
    return run_fenced(executor, _RENEW_DB_CLOCK, fence, {"now": now, "lease_seconds": lease_seconds})


def run_fenced(executor: Executor, statement: Any, fence: Fence, params: dict[str, Any]) -> Touch:
    row = executor.execute(statement, {**fence_params(fence), **params}).one_or_none()
    if row is None:
        raise LeaseLost(f"job {fence.job_id} attempt {fence.attempt} is no longer held by {fence.owner}")
    return Touch(event_seq=int(row[0]), cancel_requested=row[1] is not None)


def fenced_touch(
    executor: Executor,
    fence: Fence,
    *,
    bump_seq: bool = False,
    lease_expires_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Touch:
    """Assert ownership (raising ``LeaseLost``), optionally taking the next event number or renewing."""
    params: dict[str, Any] = {"now": now or utcnow()}
    if lease_expires_at is not None:
        if bump_seq:
            raise ValueError("renew and bump separately")
        params["expires"] = lease_expires_at
        return run_fenced(executor, _RENEW, fence, params)
    if fence.lease_seconds > 0:
        if _is_sqlite(executor):
            params["expires"] = params["now"] + dt.timedelta(seconds=fence.lease_seconds)
            return run_fenced(executor, _TOUCH_RENEW[(bump_seq, False)], fence, params)
        params["lease_seconds"] = fence.lease_seconds
        return run_fenced(executor, _TOUCH_RENEW[(bump_seq, True)], fence, params)
    return run_fenced(executor, _TOUCH_SEQ if bump_seq else _TOUCH, fence, params)
