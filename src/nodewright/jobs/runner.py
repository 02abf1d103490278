"""Run one claimed attempt: call the handler, classify how it ended, write the outcome (fenced)."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass
from typing import Any

from nodewright import runtime
from nodewright.db.database import Database
from nodewright.jobs import completion, processes
from nodewright.jobs.claim import ClaimedJob
from nodewright.jobs.connections import Connections
from nodewright.jobs.context import Flag, JobContext
from nodewright.jobs.errors import UNKNOWN_KIND, JobCanceled, JobError, LeaseLost, internal_error
from nodewright.jobs.plaintext import refuse_secrets
from nodewright.jobs.registry import JobKind, load_handler
from nodewright.logging_setup import configure_logging

log = logging.getLogger(__name__)


def run_claimed(
    database: Database,
    claimed: ClaimedJob,
    spec: JobKind | None,
    *,
    cancel_flag: Flag,
    lost_flag: Flag | None = None,
    connections: Connections | None = None,
) -> str:
    """Run the attempt to its end; return the outcome (a state name, or ``lost``).

    ``connections`` (the worker's long-lived ones) carries the final write; without it a fresh
    connection is used.
    """
    done: Database | Connections = connections or database
    try:
        if spec is None:
            error = JobError(UNKNOWN_KIND, f"no handler for job kind {claimed.kind!r}", retryable=False)
            return completion.finish_failed(done, claimed, error, None)
        try:
            ctx = JobContext(
                database,
                claimed,
                cancel_flag=cancel_flag,
                lost_flag=lost_flag,
                timeout_seconds=spec.timeout_seconds,
            )
            result = spec.handler(ctx)
            refuse_secrets(result, "the job result")
        except LeaseLost:
            raise
        except JobCanceled:
            completion.finish_canceled(done, claimed)
            return "canceled"
        except JobError as exc:
            return completion.finish_failed(done, claimed, exc, spec)
        except Exception:
            # The traceback goes to the server log (redacted by RedactingFilter); the job gets a code.
            log.exception("job %s (%s) attempt %s raised", claimed.id, claimed.kind, claimed.attempt)
            return completion.finish_failed(done, claimed, internal_error(), spec)
        completion.finish_succeeded(done, claimed, result)
        return "succeeded"
    except LeaseLost:
        log.warning("job %s attempt %s lost its lease; stopped without writing", claimed.id, claimed.attempt)
        return "lost"


@dataclass(frozen=True)
class ChildSpec:
    """What a job child process needs to rebuild the handler spec (picklable)."""

    kind: str
    handler_path: str
    max_attempts: int
    timeout_seconds: float | None
    backoff_base: float
    backoff_cap: float

    @classmethod
    def of(cls, spec: JobKind) -> ChildSpec:
        return cls(
            spec.name,
            spec.handler_path,
            spec.max_attempts,
            spec.timeout_seconds,
            spec.backoff_base,
            spec.backoff_cap,
        )

    def to_kind(self) -> JobKind:
        return JobKind(
            self.kind,
            load_handler(self.handler_path),
            self.max_attempts,
            self.timeout_seconds,
            self.backoff_base,
            self.backoff_cap,
        )


def child_main(
    database_url: str,
    claimed: ClaimedJob,
    child: ChildSpec,
    cancel_event: Any,
    parent_pid: int,
    marker: str,
    runtime_payload: runtime.ChildPayload | None = None,
) -> None:
    """Entry point of a job child process (process mode, pulpcore style).

    The parent keeps the lease alive and kills this process if the lease is lost or it overruns; a
    cancel request sets ``cancel_event``, which ``ctx.canceled`` reads. The child dies with its
    parent (``tie_to_parent``) and marks everything it starts as the job's (see ``processes``).
    """
    parsed = processes.Marker.parse(marker)
    assert parsed is not None, marker
    if not processes.tie_to_parent(parent_pid, parsed):
        os._exit(70)  # the worker died while we started: its lease will expire, the job is not ours
    os.environ[processes.MARKER_ENV] = marker
    # The parent decides when we stop (finish, hand back, or kill); a SIGTERM to the process group
    # must not turn a graceful shutdown into a crashed attempt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    runtime.restore(runtime_payload)  # settings and key ring of the parent, for handlers that read secrets
    # The parent's level (a child logging at INFO hid the DEBUG lines an operator asked for).
    configure_logging(runtime.settings().log_level)
    database = Database(database_url)
    try:
        run_claimed(database, claimed, child.to_kind(), cancel_flag=cancel_event)
    finally:
        database.dispose()


def spawn_context() -> Any:
    """Children start fresh (spawn): forking a threaded process with open connections is unsafe."""
    return multiprocessing.get_context("spawn")


def kill_process(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
