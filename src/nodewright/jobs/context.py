"""The handler API: named checkpointed steps, events, and cancellation.

A handler is written as a sequence of ``ctx.step(name, fn)`` calls. A step whose output was
checkpointed by an earlier attempt is not run again: its stored output is returned, so an attempt that
resumes after a crash reads back the server id or action id it must continue with. Each step begins
with a fenced write (its "started" event) that doubles as the cancellation check, and ends with a
fenced checkpoint before the next step may start. Steps run at least once: a step interrupted before
its checkpoint runs again, so every step must be idempotent (look up before create).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewright.db.database import Database
from nodewright.db.models.jobs import Job, JobStep
from nodewright.db.types import utcnow
from nodewright.jobs import processes
from nodewright.jobs.claim import ClaimedJob
from nodewright.jobs.errors import DEADLINE_EXCEEDED, JobCanceled, JobError, LeaseLost
from nodewright.jobs.events import append_event, jsonable
from nodewright.jobs.fencing import Fence, fenced_touch, renew_lease
from nodewright.jobs.logbuffer import BufferedLog, LogBudget, LogEntry
from nodewright.jobs.plaintext import refuse_secrets
from nodewright.jobs.states import HOLDING

T = TypeVar("T")

log = logging.getLogger(__name__)


class Flag(Protocol):
    """``threading.Event`` in thread mode, ``multiprocessing.Event`` in a job child process."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def load_steps(database: Database, job_id: int) -> dict[str, Any]:
    with database.session() as session:
        rows = session.execute(select(JobStep.name, JobStep.output).where(JobStep.job_id == job_id)).all()
    return {name: (output or {}).get("value") for name, output in rows}


class JobContext:
    def __init__(
        self,
        database: Database,
        claimed: ClaimedJob,
        *,
        cancel_flag: Flag,
        lost_flag: Flag | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        self._database = database
        self._claimed = claimed
        self._cancel_flag = cancel_flag
        self._lost_flag = lost_flag
        self._deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
        # A first attempt has no checkpoints yet: skip the query (it is on every job's path).
        self._steps: dict[str, Any] = load_steps(database, claimed.id) if claimed.attempt > 1 else {}
        self.logger = logging.getLogger(f"nodewright.jobs.{claimed.kind}")
        # The session of the ctx.transaction() open in this thread, if any (see log() and step()).
        self._open = threading.local()
        self._log_budget = LogBudget()  # node output this attempt may still write (docs/nodes.md)

    @property
    def database(self) -> Database:
        """For handlers that update their own rows (a node's state) in their own transactions."""
        return self._database

    @property
    def job_id(self) -> int:
        return self._claimed.id

    @property
    def kind(self) -> str:
        return self._claimed.kind

    @property
    def args(self) -> dict[str, Any]:
        return self._claimed.args

    @property
    def attempt(self) -> int:
        return self._claimed.attempt

    @property
    def max_attempts(self) -> int:
        return self._claimed.max_attempts

    @property
    def resource_key(self) -> str | None:
        return self._claimed.resource_key

    @property
    def fence(self) -> Fence:
        return self._claimed.fence

    def process_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment to start a subprocess with (``subprocess.run(..., env=ctx.process_env())``,
        ``ansible_runner.run(envvars=...)`` merges it): it marks the subprocess and all its
        descendants, setsid'd ones too, as this job's, so a lost, canceled or killed attempt's
        processes are killed with it. (In process mode the child's environment already carries the
        marker; passing this is still right.)"""
        return processes.process_env(
            processes.Marker.for_attempt(
                processes.database_tag(self._database.url), self.job_id, self.attempt
            ),
            extra,
        )

    @property
    def completed_steps(self) -> dict[str, Any]:
        """Outputs of the steps already checkpointed (by this or an earlier attempt)."""
        return dict(self._steps)

    @property
    def canceled(self) -> bool:
        """True once the job should stop: cancel requested, lease lost, or deadline passed.

        Cheap (no database round trip), so it suits ``cancel_callback=lambda: ctx.canceled`` of a
        subprocess runner; the worker's monitor keeps the flag fresh.
        """
        if self._cancel_flag.is_set():
            return True
        if self._lost_flag is not None and self._lost_flag.is_set():
            return True
        return self._deadline is not None and time.monotonic() > self._deadline

    def check_canceled(self) -> None:
        """Raise ``JobCanceled`` (or ``LeaseLost`` / a deadline ``JobError``) if the job must stop.

        Asks the database, so it also notices a cancel before the monitor does.
        """
        self._check_deadline()
        if self._cancel_flag.is_set():
            raise JobCanceled(f"job {self.job_id} was canceled")
        # A read, not a fenced write: handlers call this in tight polling loops, and on SQLite every
        # write takes the database-wide lock. Ownership is still verified; writes stay fenced.
        with self._database.session() as session:
            row = session.execute(
                select(Job.lease_owner, Job.attempt, Job.state, Job.cancel_requested_at).where(
                    Job.id == self.job_id
                )
            ).one_or_none()
        if row is None or row.lease_owner != self.fence.owner or row.attempt != self.attempt:
            raise LeaseLost(f"job {self.job_id} attempt {self.attempt} is no longer ours")
        if row.state not in HOLDING:
            raise LeaseLost(f"job {self.job_id} is {row.state}")
        if row.cancel_requested_at is not None:
            self._cancel_flag.set()
            raise JobCanceled(f"job {self.job_id} was canceled")

    def _check_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise JobError(DEADLINE_EXCEEDED, f"job {self.kind} exceeded its time limit", retryable=False)

    def step(self, name: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` once across all attempts; return its (JSON) output, stored before returning."""
        if name in self._steps:
            output: T = self._steps[name]
            return output
        if self._transaction_session() is not None:
            # Its writes would wait for the job-row lock this thread's own transaction holds.
            raise RuntimeError(f"ctx.step({name!r}) cannot run inside ctx.transaction(); end the block first")
        self._check_deadline()
        if self._cancel_flag.is_set():
            raise JobCanceled(f"job {self.job_id} was canceled")
        started = utcnow()
        with self._database.session(write=True) as session:
            touch = fenced_touch(session, self.fence)
            if touch.cancel_requested:
                self._cancel_flag.set()
            else:
                append_event(
                    session,
                    self.job_id,
                    type="step",
                    message=f"step {name} started",
                    data={"step": name, "status": "started"},
                    attempt=self.attempt,
                    fence=self.fence,
                )
        if touch.cancel_requested:
            raise JobCanceled(f"job {self.job_id} was canceled")
        value = jsonable(fn())
        refuse_secrets(value, f"the output of step {name!r}")
        with self._database.session(write=True) as session:
            fenced_touch(session, self.fence)
            session.add(
                JobStep(
                    job_id=self.job_id,
                    name=name,
                    attempt=self.attempt,
                    output={"value": value},
                    started_at=started,
                    completed_at=utcnow(),
                )
            )
            append_event(
                session,
                self.job_id,
                type="step",
                message=f"step {name} completed",
                data={"step": name, "status": "completed"},
                attempt=self.attempt,
                fence=self.fence,
            )
        self._steps[name] = value
        result: T = value
        return result

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction on the application's tables, fenced like the engine's own writes.

        Use it for the handler's domain rows (a node's state): if this attempt lost its lease the
        block raises ``LeaseLost`` and nothing in it commits, so a zombie cannot overwrite what
        the attempt that took over wrote. ``ctx.log()`` inside the block writes its event in this
        transaction (it commits or rolls back with the block); ``ctx.step()`` inside it is refused.
        The fenced write holds the job row's lock until the block ends, so keep the block short.
        The lease is renewed in place as the block ends: while the block held the row (PostgreSQL) or
        the write lock (SQLite), the worker's own renewal could not write, and a block longer than
        the lease must not hand the sweep an "expired" lease the moment it commits.
        """
        if self._transaction_session() is not None:
            raise RuntimeError("ctx.transaction() blocks do not nest")
        with self._database.session(write=True) as session:
            fenced_touch(session, self.fence)
            self._open.session = session
            try:
                yield session
            finally:
                self._open.session = None
            renew_lease(session, self.fence, self._claimed.lease_seconds)

    def _transaction_session(self) -> Session | None:
        session: Session | None = getattr(self._open, "session", None)
        return session

    def sleep(self, seconds: float) -> None:
        """Wait like ``time.sleep`` (between polls of a provider action), but raise ``JobCanceled``
        as soon as a cancel arrives (at once when the worker relays it, within a second otherwise)."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_canceled()  # also asks the database, in case no monitor relays the cancel
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cancel_flag.wait(min(remaining, 1.0))

    def buffered_log(self) -> BufferedLog:
        """A ``BufferedLog`` writing through ``log_many``. Its writer thread takes the job-row lock
        for each batch, so it is refused (``RuntimeError``) inside a ``transaction()`` block, whose
        thread holds that lock: waiting there for the writer would never end on PostgreSQL.

        Meant for node output: all buffered logs of one attempt share one ``LogBudget``
        (``output_limits.JOB_LOG_CAP``); past it, events are counted and the log's last event says
        how much was cut. ``ctx.log()`` (the handler's own lines) is not counted."""
        return BufferedLog(self.log_many, check_caller=self._refuse_inside_block, budget=self._log_budget)

    def _refuse_inside_block(self) -> None:
        if self._transaction_session() is not None:
            raise RuntimeError(
                "a buffered job log cannot be used inside ctx.transaction(): its writer waits for the "
                "job-row lock that the block holds; use ctx.log() there"
            )

    def log_many(self, entries: Sequence[LogEntry]) -> None:
        """Append several ``(message, level, data)`` events in one fenced write transaction: a chatty
        subprocess (Ansible's events) costs one commit per batch instead of one per line."""
        if not entries:
            return
        with self._database.session(write=True) as session:
            for message, level, data in entries:
                append_event(
                    session,
                    self.job_id,
                    type="log",
                    message=message,
                    level=level,
                    data=dict(data),
                    attempt=self.attempt,
                    fence=self.fence,
                )

    def log(self, message: str, level: str = "info", **data: Any) -> int:
        """Append an event to the job's log (redacted); returns its sequence number.

        Inside ``ctx.transaction()`` the event is part of that transaction: a second one would wait
        for the job-row lock the block holds (forever on PostgreSQL, the busy timeout on SQLite).
        """
        open_session = self._transaction_session()
        if open_session is not None:
            return append_event(
                open_session,
                self.job_id,
                type="log",
                message=message,
                level=level,
                data=data,
                attempt=self.attempt,
                fence=self.fence,
            )
        with self._database.session(write=True) as session:
            return append_event(
                session,
                self.job_id,
                type="log",
                message=message,
                level=level,
                data=data,
                attempt=self.attempt,
                fence=self.fence,
            )
