"""Final writes of an attempt: success, retry, failure, cancel, hand-back. All fenced.

Each is one transaction of two statements: the fenced update (which also takes the next event
number) and the event insert; PostgreSQL workers elsewhere are woken by ``pg_notify`` in the same
transaction, since a finished job may unblock the next one of its resource.

A final write that fails because its connection broke ("terminating connection", a restarted
server) is retried on a fresh connection for as long as the fence still holds (``_durably``): the
attempt's side effects are done, and losing the write would leave the job ``running`` until its lease
ran out and then fail it as ``worker_lost``. The fence makes the retry safe: once another attempt
took the job over, the retry gets ``LeaseLost``. When the broken connection had in fact committed
the first try, the retry finds the job already in the state it was writing and reports that.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import JSON, bindparam, null, select, text
from sqlalchemy import Connection as SAConnection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from nodewright.db.database import Database
from nodewright.db.types import utcnow
from nodewright.jobs import fastpath, metrics
from nodewright.jobs.backoff import next_run_after
from nodewright.jobs.claim import ClaimedJob
from nodewright.jobs.connections import Connections, as_connections
from nodewright.jobs.errors import JobError, LeaseLost
from nodewright.jobs.events import insert_event, jsonable
from nodewright.jobs.fencing import JOBS, fence_params, fenced_update, run_fenced
from nodewright.jobs.notify import CHANNEL, notify_local
from nodewright.jobs.registry import JobKind
from nodewright.jobs.states import JobState
from nodewright.security.redaction import redact
from nodewright.security.text import clean_value

_NOTIFY = text("SELECT pg_notify(:channel, '')")
T = TypeVar("T")
log = logging.getLogger(__name__)
# How long a final write keeps retrying a broken connection. Past the lease the fence decides: a
# sweep that requeued the job makes the retry raise LeaseLost; if no sweep ran, the write still lands.
FINAL_WRITE_PATIENCE_SECONDS = 60.0


def _connection_broke(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
    )


def _durably(
    connections: Connections, claimed: ClaimedJob, landed: tuple[str, ...], write: Callable[[], T]
) -> T | str:
    """Run ``write`` until it lands, retrying only a broken connection (see the module docstring).

    ``landed``: the states this write produces; found after a broken try (which may have committed),
    the write is taken as done and that state is returned.
    """
    delay, deadline, broke = 0.05, time.monotonic() + FINAL_WRITE_PATIENCE_SECONDS, False
    while True:
        try:
            return write()
        except LeaseLost:
            if broke:
                state = _landed_state(connections, claimed, landed)
                if state is not None:
                    return state
            raise
        except DBAPIError as exc:
            if not _connection_broke(exc) or time.monotonic() > deadline:
                raise
            broke = True
            log.warning(
                "job %s attempt %s: final write hit a broken connection; retrying on a fresh one",
                claimed.id,
                claimed.attempt,
            )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _landed_state(connections: Connections, claimed: ClaimedJob, landed: tuple[str, ...]) -> str | None:
    try:
        with connections.begin() as conn:
            row = conn.execute(
                select(JOBS.c.state, JOBS.c.attempt).where(JOBS.c.id == claimed.id)
            ).one_or_none()
    except DBAPIError:
        return None
    if row is not None and row.attempt == claimed.attempt and row.state in landed:
        return str(row.state)
    return None


def _final(state: str, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "state": state,
        "updated_at": bindparam("now", type_=JOBS.c.updated_at.type),
        "lease_expires_at": None,
        "event_seq": JOBS.c.event_seq + 1,
    }
    values.update(extra)
    return fenced_update(values)


_NOW = JOBS.c.finished_at.type
_SUCCEEDED = _final(
    JobState.SUCCEEDED.value,
    result=bindparam("result", type_=JSON(none_as_null=True)),
    error=null(),
    finished_at=bindparam("now", type_=_NOW),
)
_CANCELED = _final(JobState.CANCELED.value, finished_at=bindparam("now", type_=_NOW))
_FAILED = _final(
    JobState.FAILED.value,
    error=bindparam("error", type_=JSON()),
    finished_at=bindparam("now", type_=_NOW),
)
_CANCELED_WITH_ERROR = _final(
    JobState.CANCELED.value,
    error=bindparam("error", type_=JSON()),
    finished_at=bindparam("now", type_=_NOW),
)
_RETRY = _final(
    JobState.RETRY_WAIT.value,
    error=bindparam("error", type_=JSON()),
    run_after=bindparam("run_after", type_=JOBS.c.run_after.type),
)
_HAND_BACK = _final(
    JobState.QUEUED.value, lease_owner=None, run_after=bindparam("now", type_=JOBS.c.run_after.type)
)
_HAND_BACK_CANCELED = _final(
    JobState.CANCELED.value, lease_owner=None, finished_at=bindparam("now", type_=_NOW)
)
_PEEK_CANCEL = fenced_update({"updated_at": bindparam("now", type_=JOBS.c.updated_at.type)})


def _others(connections: Connections, claimed: ClaimedJob) -> str | None:
    """SQLite: the URL to wake other processes' workers with, when this job's end may unblock
    another (it held a resource key); PostgreSQL wakes them with pg_notify in the transaction."""
    if connections.is_sqlite and claimed.resource_key is not None:
        return connections.database.url
    return None


def _wake(conn: SAConnection, connections: Connections) -> None:
    if not connections.is_sqlite:
        conn.execute(_NOTIFY, {"channel": CHANNEL})


def _run_seconds(claimed: ClaimedJob, now: dt.datetime) -> float:
    return max(0.0, (now - claimed.started_at).total_seconds())


def finish_succeeded(source: Database | Connections, claimed: ClaimedJob, result: Any) -> None:
    connections = as_connections(source)
    _durably(
        connections,
        claimed,
        (JobState.SUCCEEDED.value,),
        lambda: _finish_succeeded(connections, claimed, result),
    )


def _finish_succeeded(connections: Connections, claimed: ClaimedJob, result: Any) -> None:
    now = utcnow()
    value = jsonable(result) if result is not None else None
    if value is not None and not isinstance(value, dict):
        value = {"value": value}
    if not connections.is_sqlite:
        with connections.single() as conn:
            row = conn.execute(
                fastpath.SUCCEED,
                {
                    **fence_params(claimed.fence),
                    "now": now,
                    "result": None if value is None else json.dumps(redact(value)),
                },
            ).one_or_none()
        if row is None:
            raise LeaseLost(f"job {claimed.id} attempt {claimed.attempt} is no longer ours")
        notify_local(_others(connections, claimed))
        metrics.RUN_TIME.labels(kind=claimed.kind, outcome="succeeded").observe(_run_seconds(claimed, now))
        return
    with connections.begin(write=True) as conn:
        touch = run_fenced(conn, _SUCCEEDED, claimed.fence, {"now": now, "result": redact(value)})
        insert_event(
            conn,
            claimed.id,
            touch.event_seq,
            type="state",
            message="succeeded",
            data={"state": JobState.SUCCEEDED.value},
            attempt=claimed.attempt,
        )
        _wake(conn, connections)
    notify_local(_others(connections, claimed))
    metrics.RUN_TIME.labels(kind=claimed.kind, outcome="succeeded").observe(_run_seconds(claimed, now))


def finish_canceled(source: Database | Connections, claimed: ClaimedJob, message: str = "canceled") -> None:
    connections = as_connections(source)
    _durably(
        connections,
        claimed,
        (JobState.CANCELED.value,),
        lambda: _finish_canceled(connections, claimed, message),
    )


def _finish_canceled(connections: Connections, claimed: ClaimedJob, message: str) -> None:
    now = utcnow()
    with connections.begin(write=True) as conn:
        touch = run_fenced(conn, _CANCELED, claimed.fence, {"now": now})
        insert_event(
            conn,
            claimed.id,
            touch.event_seq,
            type="state",
            message=message,
            data={"state": JobState.CANCELED.value},
            attempt=claimed.attempt,
        )
        _wake(conn, connections)
    notify_local(_others(connections, claimed))
    metrics.RUN_TIME.labels(kind=claimed.kind, outcome="canceled").observe(_run_seconds(claimed, now))


def finish_failed(
    source: Database | Connections, claimed: ClaimedJob, error: JobError, spec: JobKind | None
) -> str:
    """Record a failed attempt: ``retry_wait`` while it is retryable and attempts remain, else ``failed``.

    A job whose cancel was requested is canceled instead of retried. Returns the new state.
    """
    connections = as_connections(source)
    landed = (JobState.CANCELED.value, JobState.RETRY_WAIT.value, JobState.FAILED.value)
    return _durably(connections, claimed, landed, lambda: _finish_failed(connections, claimed, error, spec))


def _finish_failed(
    connections: Connections, claimed: ClaimedJob, error: JobError, spec: JobKind | None
) -> str:
    now = utcnow()
    # jsonable: a NaN retry_after must not fail the write; clean_value: the message may be node text.
    error_json = jsonable(clean_value(redact(error.to_dict())))
    with connections.begin(write=True) as conn:
        peek = run_fenced(conn, _PEEK_CANCEL, claimed.fence, {"now": now})
        params: dict[str, Any] = {"now": now, "error": error_json}
        if peek.cancel_requested:
            state, statement = JobState.CANCELED.value, _CANCELED_WITH_ERROR
            message = f"canceled after error {error.code}"
        elif error.retryable and claimed.attempt < claimed.max_attempts:
            state, statement = JobState.RETRY_WAIT.value, _RETRY
            run_after = next_run_after(
                now,
                claimed.attempt,
                base=spec.backoff_base if spec else 2.0,
                cap=spec.backoff_cap if spec else 600.0,
                retry_after=error.retry_after,
            )
            params["run_after"] = run_after
            message = f"attempt {claimed.attempt} failed ({error.code}); retrying at {run_after.isoformat()}"
        else:
            state, statement = JobState.FAILED.value, _FAILED
            message = f"failed: {error.code}"
        touch = run_fenced(conn, statement, claimed.fence, params)
        insert_event(
            conn,
            claimed.id,
            touch.event_seq,
            type="state",
            level="error" if state == JobState.FAILED.value else "warning",
            message=message,
            data={"state": state, "error": error_json},
            attempt=claimed.attempt,
        )
        _wake(conn, connections)
    notify_local(_others(connections, claimed))
    metrics.FAILURES.labels(kind=claimed.kind, code=error.code).inc()
    metrics.RUN_TIME.labels(kind=claimed.kind, outcome=state).observe(_run_seconds(claimed, now))
    return state


def hand_back(source: Database | Connections, claimed: ClaimedJob, reason: str) -> None:
    """Give a running job back to the queue (shutdown timeout); a canceling one becomes canceled."""
    connections = as_connections(source)
    landed = (JobState.CANCELED.value, JobState.QUEUED.value)
    _durably(connections, claimed, landed, lambda: _hand_back(connections, claimed, reason))


def _hand_back(connections: Connections, claimed: ClaimedJob, reason: str) -> None:
    now = utcnow()
    with connections.begin(write=True) as conn:
        peek = run_fenced(conn, _PEEK_CANCEL, claimed.fence, {"now": now})
        canceled = peek.cancel_requested
        state = JobState.CANCELED.value if canceled else JobState.QUEUED.value
        touch = run_fenced(conn, _HAND_BACK_CANCELED if canceled else _HAND_BACK, claimed.fence, {"now": now})
        insert_event(
            conn,
            claimed.id,
            touch.event_seq,
            type="state",
            level="warning",
            message=f"{state}: {reason}",
            data={"state": state},
            attempt=claimed.attempt,
        )
        _wake(conn, connections)
    notify_local(connections.database.url if connections.is_sqlite else None)
