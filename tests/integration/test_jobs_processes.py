"""Real worker processes sharing one database: exactly-once draining with per-resource exclusion,
and crash recovery after SIGKILL (resume from the checkpoint) and after a freeze (fenced zombie)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import text

from nodewright.db.database import Database
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.states import JobState
from tests.support.job_handlers import REGISTRY, create_test_tables
from tests.support.jobs import job_messages, job_row, wait_for_state, wait_until, worker_processes

pytestmark = pytest.mark.slow

JOBS = 300
RESOURCES = 6


@pytest.fixture
def db(database: Database) -> Database:
    create_test_tables(database)
    return database


def _enqueue_batch(db: Database, start: int, count: int) -> list[int]:
    with db.session() as session:
        return [
            enqueue(
                session,
                "test.record",
                {"n": n},
                resource_key=None if n % 10 == 0 else f"node:{n % RESOURCES}",
                registry=REGISTRY,
            ).id
            for n in range(start, start + count)
        ]


def _worker_rows(db: Database) -> int:
    with db.session() as session:
        return int(session.execute(text("SELECT count(*) FROM workers")).scalar_one())


def _finished(db: Database) -> int:
    with db.session() as session:
        return int(
            session.execute(
                text("SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'failed', 'canceled')")
            ).scalar_one()
        )


def test_worker_processes_drain_hundreds_of_jobs_exactly_once(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    with worker_processes(db_url, tmp_path) as workers:
        procs = [workers.start(concurrency=2, lease=5.0) for _ in range(3)]
        wait_until(lambda: _worker_rows(db) == 3, timeout=60, what="three workers to register")
        ids = _enqueue_batch(db, 0, JOBS // 2)
        ids += _enqueue_batch(db, JOBS // 2, JOBS - JOBS // 2)  # more work arrives while they run
        wait_until(lambda: _finished(db) == JOBS, timeout=120, what=f"{JOBS} jobs to finish")
        for proc in procs:
            assert workers.terminate(proc) == 0, workers.log_of(proc)

    with db.session() as session:
        states = session.execute(
            text("SELECT state, attempt, count(*) FROM jobs GROUP BY state, attempt")
        ).all()
        runs = session.execute(
            text("SELECT job_id, attempt, resource_key, pid, started, ended FROM test_job_runs")
        ).all()
    assert [(s, a, c) for s, a, c in states] == [("succeeded", 1, JOBS)]
    ran = [r.job_id for r in runs]
    assert sorted(ran) == sorted(ids), "every job ran exactly once"
    assert len({r.pid for r in runs}) >= 2, "the work was shared between processes"
    by_resource: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in runs:
        if r.resource_key is not None:
            by_resource[r.resource_key].append((r.started, r.ended))
    assert len(by_resource) == RESOURCES
    for key, intervals in by_resource.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"two jobs of {key} overlapped"


def _enqueue_blocking(db: Database, marker: Path) -> int:
    with db.session() as session:
        return enqueue(
            session, "test.steps", {"block_attempt": 1, "marker": str(marker)}, registry=REGISTRY
        ).id


def _step_runs(db: Database, job_id: int) -> list[tuple[str, int, int]]:
    with db.session() as session:
        rows = session.execute(
            text("SELECT step, attempt, pid FROM test_step_runs WHERE job_id = :j ORDER BY attempt, step"),
            {"j": job_id},
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def test_sigkill_mid_step_resumes_from_the_checkpoint_on_another_worker(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "in-step-two"
    job_id = _enqueue_blocking(db, marker)
    with worker_processes(db_url, tmp_path) as workers:
        victim = workers.start(concurrency=1, lease=1.0)
        wait_until(marker.exists, what="the first worker to reach step two")
        assert int(marker.read_text()) == victim.pid
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        rescuer = workers.start(concurrency=1, lease=1.0)
        job = wait_for_state(db, job_id, JobState.SUCCEEDED, JobState.FAILED, timeout=60)
        workers.terminate(rescuer)

    assert job.state == JobState.SUCCEEDED
    assert job.attempt == 2
    assert job.result is not None
    assert job.result["one"]["attempt"] == 1, "step one's checkpoint was read back, not redone"
    assert job.result["two"]["attempt"] == 2
    runs = _step_runs(db, job_id)
    assert [(s, a) for s, a, _ in runs] == [("one", 1), ("two", 1), ("two", 2)]
    assert runs[0][2] == victim.pid and runs[2][2] == rescuer.pid
    messages = job_messages(db, job_id)
    assert any("lease of attempt 1 expired" in m for m in messages)


def test_a_frozen_worker_that_wakes_up_after_takeover_is_fenced_off(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "in-step-two"
    job_id = _enqueue_blocking(db, marker)
    with db.session(write=True) as session:  # short block so the zombie reaches its write soon
        session.execute(
            text("UPDATE jobs SET args = :a WHERE id = :id"),
            {"a": f'{{"block_attempt": 1, "marker": "{marker}", "block_seconds": 0.5}}', "id": job_id},
        )
    with worker_processes(db_url, tmp_path) as workers:
        zombie = workers.start(concurrency=1, lease=1.0)
        wait_until(marker.exists, what="the first worker to reach step two")
        os.kill(zombie.pid, signal.SIGSTOP)
        rescuer = workers.start(concurrency=1, lease=1.0)
        job = wait_for_state(db, job_id, JobState.SUCCEEDED, JobState.FAILED, timeout=60)
        os.kill(zombie.pid, signal.SIGCONT)
        wait_until(
            lambda: "lost its lease" in workers.log_of(zombie), timeout=30, what="the zombie to be fenced"
        )
        assert workers.terminate(zombie) == 0
        workers.terminate(rescuer)

    assert job.state == JobState.SUCCEEDED and job.attempt == 2
    final = job_row(db, job_id)
    assert final.result == job.result and final.state == JobState.SUCCEEDED
    with db.session() as session:
        steps = session.execute(
            text("SELECT name, attempt FROM job_steps WHERE job_id = :j ORDER BY name"), {"j": job_id}
        ).all()
    assert [(s[0], s[1]) for s in steps] == [("one", 1), ("two", 2)], "the zombie's checkpoint was refused"


@pytest.mark.db_only("postgresql", reason="cross-process wake-up is LISTEN/NOTIFY, a PostgreSQL feature")
def test_postgres_workers_are_woken_by_notify_not_by_polling(
    db: Database, db_url: str, db_kind: str, tmp_path: Path
) -> None:
    """With a one-hour poll interval, only LISTEN/NOTIFY can start the job (SQLite workers in other
    processes have no such wake-up and rely on polling, so this is PostgreSQL's test)."""
    with worker_processes(db_url, tmp_path) as workers:
        proc = workers.start(concurrency=1, lease=5.0, poll=3600.0)
        wait_until(lambda: _worker_rows(db) == 1, timeout=60, what="the worker to register")
        first = _enqueue_batch(db, 0, 1)[0]  # may be found by the start-up poke
        wait_for_state(db, first, JobState.SUCCEEDED, timeout=60)
        time.sleep(1.0)  # let the worker settle into its one-hour wait (not an assertion on speed)
        second = _enqueue_batch(db, 1, 1)[0]
        job = wait_for_state(db, second, JobState.SUCCEEDED, timeout=60)
        workers.terminate(proc)
    assert job.attempt == 1


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_if_alive(pid: int) -> None:
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_job_child_exits_when_its_worker_is_killed(db: Database, db_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "in-step-two"
    job_id = _enqueue_blocking(db, marker)
    child = 0
    try:
        with worker_processes(db_url, tmp_path) as workers:
            worker = workers.start(concurrency=1, lease=1.0, mode="process")
            wait_until(marker.exists, what="the job child to reach step two")
            child = int(marker.read_text())
            assert child != worker.pid
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            wait_until(lambda: not _alive(child), what="the orphaned job child to exit")
            rescuer = workers.start(concurrency=1, lease=1.0, mode="process")
            job = wait_for_state(db, job_id, JobState.SUCCEEDED, JobState.FAILED, timeout=60)
            workers.terminate(rescuer)
    finally:
        if child:
            _kill_if_alive(child)
    assert job.state == JobState.SUCCEEDED and job.attempt == 2
    assert [(s, a) for s, a, _ in _step_runs(db, job_id)] == [("one", 1), ("two", 1), ("two", 2)]


def _listener_pids(db: Database) -> list[int]:
    with db.session() as session:
        return list(
            session.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query = 'LISTEN nodewright_jobs'"
                )
            ).scalars()
        )


@pytest.mark.db_only("postgresql", reason="LISTEN/NOTIFY is a PostgreSQL feature")
def test_postgres_listener_reconnects_after_its_connection_is_killed(
    db: Database, db_url: str, db_kind: str, tmp_path: Path
) -> None:
    """The LISTEN connection is terminated by the server; the worker listens again and is woken by
    the next enqueue (a one-hour poll interval rules out polling)."""
    with worker_processes(db_url, tmp_path) as workers:
        proc = workers.start(concurrency=1, lease=5.0, poll=3600.0)
        wait_until(lambda: len(_listener_pids(db)) == 1, timeout=60, what="the worker to LISTEN")
        first = _enqueue_batch(db, 0, 1)[0]
        wait_for_state(db, first, JobState.SUCCEEDED, timeout=60)
        (killed,) = _listener_pids(db)
        with db.session() as session:
            assert session.execute(text("SELECT pg_terminate_backend(:p)"), {"p": killed}).scalar_one()
        wait_until(
            lambda: [p for p in _listener_pids(db) if p != killed] != [],
            timeout=60,
            what="the worker to LISTEN again",
        )
        time.sleep(1.0)  # let the reconnect poke's claim settle into the one-hour wait (not an assertion)
        second = _enqueue_batch(db, 1, 1)[0]
        job = wait_for_state(db, second, JobState.SUCCEEDED, timeout=60)
        assert workers.terminate(proc) == 0, workers.log_of(proc)
    assert job.attempt == 1
    assert "LISTEN connection failed" in workers.log_of(proc)
