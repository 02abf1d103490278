"""Helpers for job-engine tests: run one attempt synchronously, wait on database facts, and start
and always stop worker subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import text

from nodewright.db.database import Database
from nodewright.db.models.jobs import Job
from nodewright.jobs.claim import ClaimedJob, claim_next
from nodewright.jobs.registry import Registry
from nodewright.jobs.runner import run_claimed
from tests.support.job_handlers import REGISTRY

REPO_ROOT = Path(__file__).resolve().parents[2]
PAST_SQLITE = "2000-01-01 00:00:00.000000"
PAST_POSTGRES = "2000-01-01T00:00:00+00:00"


def claim(database: Database, owner: str = "test-worker", *, lease: float = 30.0) -> ClaimedJob | None:
    return claim_next(database, owner, REGISTRY.kinds(), lease)


def run_next(database: Database, owner: str = "test-worker", registry: Registry = REGISTRY) -> str | None:
    """Claim and run one job in this thread; return its outcome, or None when nothing was runnable."""
    claimed = claim_next(database, owner, registry.kinds(), 30.0)
    if claimed is None:
        return None
    return run_claimed(database, claimed, registry.get(claimed.kind), cancel_flag=threading.Event())


def job_row(database: Database, job_id: int) -> Job:
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def job_messages(database: Database, job_id: int) -> list[str]:
    """The messages of a job's events, in order."""
    with database.session() as session:
        return list(
            session.execute(
                text("SELECT message FROM job_events WHERE job_id = :j ORDER BY seq"), {"j": job_id}
            ).scalars()
        )


def wait_until(predicate: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll a database fact until it holds; a deadline, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_state(database: Database, job_id: int, *states: str, timeout: float = 30.0) -> Job:
    wait_until(
        lambda: job_row(database, job_id).state in states, timeout=timeout, what=f"job {job_id} {states}"
    )
    return job_row(database, job_id)


def make_due(database: Database, job_id: int) -> None:
    """Pull a retry_wait job's run_after into the past instead of sleeping through the backoff."""
    with database.session(write=True) as session:
        session.execute(
            text("UPDATE jobs SET run_after = :t WHERE id = :id"),
            {
                "t": "2000-01-01 00:00:00.000000" if database.is_sqlite else "2000-01-01T00:00:00+00:00",
                "id": job_id,
            },
        )


class WorkerProcesses:
    """Starts ``tests.support.job_worker`` subprocesses; ``close()`` stops every one of them."""

    def __init__(self, db_url: str, log_dir: Path) -> None:
        self.db_url = db_url
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, *, concurrency: int = 2, lease: float = 1.0, mode: str = "thread", poll: float = 0.1
    ) -> subprocess.Popen[bytes]:
        index = len(self.procs)
        stderr = open(self.log_dir / f"worker-{index}.log", "wb")  # noqa: SIM115
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.job_worker",
                self.db_url,
                "--concurrency",
                str(concurrency),
                "--lease",
                str(lease),
                "--mode",
                mode,
                "--poll",
                str(poll),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        stderr.close()
        self.procs.append(proc)
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.log_dir / f"worker-{self.procs.index(proc)}.log").read_text(errors="replace")

    def terminate(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def close(self) -> None:
        for proc in self.procs:
            self.terminate(proc)


@contextmanager
def worker_processes(db_url: str, log_dir: Path) -> Iterator[WorkerProcesses]:
    procs = WorkerProcesses(db_url, log_dir)
    try:
        yield procs
    finally:
        procs.close()
