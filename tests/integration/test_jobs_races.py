"""The races found by attacking the engine from outside (issue 7), each pinned by a test that made
it happen deterministically before the fix: a cancel between two updates, a broken connection on
the final write, a claim finishing during a graceful stop, lease renewal starved by a lock holder,
skewed clocks, and (process mode) job processes outliving their worker."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError

from nodewright.db.database import Database
from nodewright.db.types import utcnow
from nodewright.jobs import completion, service
from nodewright.jobs.connections import Connections
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.errors import JobError
from nodewright.jobs.maintainer import requeue_expired
from nodewright.jobs.runner import run_claimed
from nodewright.jobs.states import JobState
from nodewright.jobs.worker import WorkerPool
from tests.support.databases import clone_sqlite
from tests.support.job_handlers import REGISTRY, create_test_tables
from tests.support.jobs import (
    claim,
    job_messages,
    job_row,
    make_due,
    wait_for_state,
    wait_until,
    worker_processes,
)


@pytest.fixture
def db(database: Database) -> Database:
    create_test_tables(database)
    return database


def _enqueue(db: Database, kind: str, args: dict[str, Any] | None = None, **options: Any) -> int:
    with db.session(write=True) as session:
        return enqueue(session, kind, args or {}, registry=REGISTRY, **options).id


# ----------------------------------------------------------------- 1. cancel


def _lock_waiters(db: Database) -> int:
    with db.session() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


@pytest.mark.db_only("postgresql", reason="SQLite serializes writers; the window is PostgreSQL's")
@pytest.mark.parametrize("leaves_to", ["retry_wait", "queued"])
def test_a_cancel_racing_the_job_leaving_running_is_not_dropped(
    db: Database, db_kind: str, leaves_to: str
) -> None:
    """The job leaves ``running`` (a retryable failure, a lease requeue) while the cancel waits for
    its row: the cancel must apply to the state the job reached, not silently match nothing."""
    job_id = _enqueue(db, "test.flaky", {"succeed_on": 2})
    claimed = claim(db)
    assert claimed is not None and claimed.id == job_id
    answer: list[Any] = []
    with db.engine.connect() as mover:
        mover.begin()
        mover.execute(  # the worker's transition, not yet committed: it holds the row
            text("UPDATE jobs SET state = :s, lease_owner = NULL WHERE id = :id"),
            {"s": leaves_to, "id": job_id},
        )

        def cancel() -> None:
            try:
                with db.session(write=True) as session:
                    answer.append(service.request_cancel(session, job_id, actor="user:racer").state)
            except Exception as exc:  # reported below
                answer.append(exc)

        canceler = threading.Thread(target=cancel, daemon=True)
        canceler.start()
        wait_until(lambda: _lock_waiters(db) >= 1, what="the cancel to wait for the job row")
        mover.commit()
    canceler.join(30)
    assert answer == [JobState.CANCELED]
    job = job_row(db, job_id)
    assert job.state == JobState.CANCELED and job.cancel_requested_at is not None
    make_due(db, job_id)
    assert claim(db) is None  # nothing claims it again


def test_a_cancel_holds_in_every_state_a_job_can_be_in(db: Database) -> None:
    """queued, retry_wait, a requeued queued (lease expired), running: each answer is final."""
    queued = _enqueue(db, "test.noop")
    with db.session(write=True) as session:
        assert service.request_cancel(session, queued).state == JobState.CANCELED

    retrying = _enqueue(db, "test.flaky", {"succeed_on": 3})
    claimed = claim(db)
    assert claimed is not None and claimed.id == retrying
    run_claimed(db, claimed, REGISTRY.get(claimed.kind), cancel_flag=threading.Event())
    assert job_row(db, retrying).state == JobState.RETRY_WAIT
    with db.session(write=True) as session:
        assert service.request_cancel(session, retrying).state == JobState.CANCELED

    requeued = _enqueue(db, "test.noop")
    claimed = claim(db, lease=0.01)
    assert claimed is not None and claimed.id == requeued
    wait_until(lambda: requeued in requeue_expired(db), what="the lease to expire and be swept")
    assert job_row(db, requeued).state == JobState.QUEUED
    with db.session(write=True) as session:
        assert service.request_cancel(session, requeued).state == JobState.CANCELED

    running = _enqueue(db, "test.noop")
    claimed = claim(db)
    assert claimed is not None and claimed.id == running
    with db.session(write=True) as session:
        assert service.request_cancel(session, running).state == JobState.CANCELING
    with db.session(write=True) as session:  # idempotent, and no second event
        assert service.request_cancel(session, running).state == JobState.CANCELING
    assert sum("cancel requested" in m for m in job_messages(db, running)) == 1
    for job_id in (queued, retrying, requeued):
        make_due(db, job_id)
    assert claim(db) is None


# ----------------------------------------------------------------- 3. broken connection


def _break(connections: Connections, db: Database) -> None:
    """Break the worker's long-lived connection as a server restart would."""
    slot = "conn" if db.is_sqlite else "auto"
    conn = getattr(connections._local, slot)
    if db.is_sqlite:
        conn.connection.dbapi_connection.close()
        return
    with conn.begin():
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    with db.session() as session:
        assert session.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()


def test_a_broken_connection_on_the_final_write_does_not_lose_the_success(db: Database) -> None:
    job_id = _enqueue(db, "test.noop")
    connections = Connections(db)
    try:
        claimed = claim_via(connections)
        assert claimed.id == job_id
        _break(connections, db)
        completion.finish_succeeded(connections, claimed, {"server_id": 42})
        job = job_row(db, job_id)
        assert job.state == JobState.SUCCEEDED and job.result == {"server_id": 42} and job.attempt == 1
        # And the failure path (another job): a retryable error is recorded, not lost.
        other = _enqueue(db, "test.flaky", {"succeed_on": 2})
        claimed = claim_via(connections)
        assert claimed.id == other
        _break(connections, db)
        state = completion.finish_failed(
            connections,
            claimed,
            JobError("provider_busy", "locked", retryable=True),
            REGISTRY.get("test.flaky"),
        )
        assert state == JobState.RETRY_WAIT == job_row(db, other).state
    finally:
        connections.close()


def claim_via(connections: Connections) -> Any:
    from nodewright.jobs.claim import claim_next

    claimed = claim_next(connections, "test-worker", REGISTRY.kinds(), 30.0)
    assert claimed is not None
    return claimed


def test_the_workers_own_connections_hide_bound_parameters(db: Database) -> None:
    connections = Connections(db)
    canary = "result-canary-5d1f0c"
    try:
        with pytest.raises(DBAPIError) as raised, connections.begin() as conn:
            conn.execute(text("SELECT no_such_column FROM jobs WHERE kind = :k"), {"k": canary})
    finally:
        connections.close()
    assert canary not in str(raised.value)


# ----------------------------------------------------------------- 4. claim during stop


def _sqlite_path(db_url: str) -> str:
    path = make_url(db_url).database
    assert path
    return path


@pytest.mark.db_only("sqlite", reason="only a SQLite claim waits (for the database-wide write lock)")
def test_a_claim_that_completes_after_stop_began_is_handed_back(
    db: Database, db_url: str, db_kind: str, tmp_path: Path
) -> None:
    marker = tmp_path / "in-step-two"
    pool = WorkerPool(db, concurrency=1, registry=REGISTRY, lease_seconds=5.0, poll_interval=0.05)
    pool.start()
    job_id = _enqueue(
        db,
        "test.steps",
        {"block_attempt": 1, "marker": str(marker), "block_seconds": 30},
        run_after=utcnow() + dt.timedelta(seconds=1.5),
    )
    holder = sqlite3.connect(_sqlite_path(db_url), timeout=30, isolation_level=None)
    stopper: threading.Thread | None = None
    try:
        holder.execute("BEGIN IMMEDIATE")  # every writer, the claim included, now waits
        time.sleep(2.5)  # the job became due: the executor saw it and waits in its claim
        stopper = threading.Thread(target=pool.stop, kwargs={"timeout": 0.2}, daemon=True)
        stopper.start()
        time.sleep(0.5)  # stop has begun and given up on its executors
        holder.execute("COMMIT")
        stopper.join(60)
        assert not stopper.is_alive()
        for thread in pool._executors:
            thread.join(10)
    finally:
        with contextlib.suppress(sqlite3.Error):
            holder.execute("ROLLBACK")
        holder.close()
        if stopper is not None:
            stopper.join(60)
    job = job_row(db, job_id)
    assert job.state in (JobState.QUEUED,), f"left {job.state} under owner {job.lease_owner}"
    assert job.lease_owner is None


# ----------------------------------------------------------------- 5. starved renewal


def test_a_lease_held_past_its_end_by_the_handlers_transaction_is_renewed_in_place(
    db: Database, tmp_path: Path
) -> None:
    """The handler's ctx.transaction() outlives the lease; once it commits, a sweep must find the
    attempt's lease current, not expired (nobody else could renew it while the block held it)."""
    files = {name: tmp_path / name for name in ("marker", "release", "committed", "finish")}
    job_id = _enqueue(db, "test.hold_then_wait", {name: str(path) for name, path in files.items()})
    claimed = claim(db, lease=1.0)
    assert claimed is not None and claimed.id == job_id
    runner = threading.Thread(
        target=run_claimed,
        args=(db, claimed, REGISTRY.get(claimed.kind)),
        kwargs={"cancel_flag": threading.Event()},
        daemon=True,
    )
    runner.start()
    try:
        wait_until(files["marker"].exists, what="the handler to open its transaction")
        time.sleep(1.5)  # hold it past the one-second lease
        files["release"].touch()
        wait_until(files["committed"].exists, what="the transaction to commit")
        assert requeue_expired(db) == []
        assert job_row(db, job_id).attempt == 1
    finally:
        files["release"].touch()
        files["finish"].touch()
        runner.join(30)
    assert job_row(db, job_id).state == JobState.SUCCEEDED


@pytest.mark.db_only("sqlite", reason="one database-wide write lock is SQLite's")
def test_a_long_writer_does_not_get_live_attempts_requeued(
    db: Database, db_url: str, db_kind: str, tmp_path: Path
) -> None:
    """Another process holds SQLite's write lock past the lease: the worker lives and renews as soon
    as it can, so the first sweep after the lock is released must not requeue its job."""
    marker = tmp_path / "in-step-two"
    pool = WorkerPool(db, concurrency=1, registry=REGISTRY, lease_seconds=1.0, poll_interval=0.05)
    pool.start()
    job_id = _enqueue(db, "test.steps", {"block_attempt": 1, "marker": str(marker), "block_seconds": 30})
    holder = sqlite3.connect(_sqlite_path(db_url), timeout=30, isolation_level=None)
    try:
        wait_until(marker.exists, what="the job to reach step two")
        holder.execute("BEGIN IMMEDIATE")
        time.sleep(2.5)  # past the lease: no renewal can be written
        holder.execute("COMMIT")
        requeued = requeue_expired(db)  # first in line once the lock is free
        assert job_id not in requeued
        assert job_row(db, job_id).attempt == 1
    finally:
        with contextlib.suppress(sqlite3.Error):
            holder.execute("ROLLBACK")
        holder.close()
        with db.session(write=True) as session:
            service.request_cancel(session, job_id)
        pool.stop(timeout=1.0)
    assert not any("expired" in m for m in job_messages(db, job_id))


@pytest.mark.db_only("sqlite", reason="the liveness directory beside the database file is SQLite's")
def test_a_liveness_directory_others_can_write_is_not_trusted(db: Database, db_url: str) -> None:
    """The directory next to the database may be planted in advance by someone else (the database
    in /tmp, a shared data directory): a liveness file forged there must not keep a dead worker's
    job from being requeued, and no worker may write its files through a planted symlink."""
    from nodewright.jobs import local

    directory = local.runtime_dir(db_url)
    assert directory is not None
    directory.mkdir()
    directory.chmod(0o777)  # anyone may write here
    job_id = _enqueue(db, "test.steps", {})
    claimed = claim(db, owner="ghost-worker", lease=0.5)
    assert claimed is not None and claimed.id == job_id
    forged = {"lease": 1e9, "pid": os.getpid(), "start": 0, "jobs": [[job_id, claimed.attempt]]}
    (directory / f"alive-{local._safe('ghost-worker')}").write_text(json.dumps(forged))
    with db.session(write=True) as session:
        session.execute(
            text("UPDATE jobs SET lease_expires_at = '2000-01-01 00:00:00.000000' WHERE id = :id"),
            {"id": job_id},
        )
    assert job_id in requeue_expired(db)
    assert job_row(db, job_id).state == JobState.QUEUED

    elsewhere = directory.with_name("elsewhere")
    elsewhere.mkdir()
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()
    directory.symlink_to(elsewhere)  # a symlink planted where the directory goes
    pool = WorkerPool(db, concurrency=1, registry=REGISTRY, lease_seconds=1.0, poll_interval=0.05)
    pool.start()
    try:
        wait_for_state(db, job_id, JobState.SUCCEEDED)
        assert list(elsewhere.iterdir()) == []
    finally:
        pool.stop(timeout=1.0)


# ----------------------------------------------------------------- 6. clock skew


@pytest.mark.db_only("postgresql", reason="SQLite processes share one machine and its clock")
@pytest.mark.parametrize("who", ["claimer_behind", "sweeper_ahead"])
def test_skewed_worker_clocks_do_not_requeue_a_fresh_claim(
    db: Database, db_kind: str, who: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nodewright.jobs.claim as claim_module
    import nodewright.jobs.maintainer as maintainer_module

    skew = dt.timedelta(seconds=31)
    job_id = _enqueue(db, "test.noop")
    if who == "claimer_behind":
        monkeypatch.setattr(claim_module, "utcnow", lambda: utcnow() - skew)
    claimed = claim(db, lease=30.0)
    assert claimed is not None and claimed.id == job_id
    monkeypatch.undo()
    if who == "sweeper_ahead":
        monkeypatch.setattr(maintainer_module, "utcnow", lambda: utcnow() + skew)
    assert requeue_expired(db) == []
    assert job_row(db, job_id).state == JobState.RUNNING


# ----------------------------------------------------------------- 2. process trees


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_if_alive(pid: int) -> None:
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _job_children(worker_pid: int) -> list[int]:
    """The worker's spawn children (job processes), not its resource tracker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == worker_pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_no_process_of_a_job_survives_its_worker_killed_during_the_run(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    """SIGKILL of a process-mode worker while its job runs a setsid'd grandchild: the child dies with
    the worker, the grandchild is killed as an orphan of the job, and the next attempt runs alone."""
    marker = tmp_path / "tree"
    job_id = _enqueue(db, "test.tree", {"marker": str(marker)})
    pids: list[int] = []
    try:
        with worker_processes(db_url, tmp_path) as workers:
            worker = workers.start(concurrency=1, lease=1.0, mode="process")
            wait_until(lambda: marker.exists() and marker.read_text().strip() != "", what="the job tree")
            pids = [int(p) for p in marker.read_text().split()]
            assert len(pids) == 2 and worker.pid not in pids
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            rescuer = workers.start(concurrency=1, lease=1.0, mode="process")
            job = wait_for_state(db, job_id, JobState.SUCCEEDED, JobState.FAILED, timeout=60)
            for pid in pids:
                wait_until(lambda pid=pid: not _alive(pid), timeout=15, what=f"job process {pid} to die")
            workers.terminate(rescuer)
    finally:
        for pid in pids:
            _kill_if_alive(pid)
    assert job.state == JobState.SUCCEEDED and job.attempt == 2


def test_a_thread_mode_shutdown_kills_the_processes_of_the_job_it_hands_back(
    db: Database, tmp_path: Path
) -> None:
    """``stop()`` while a thread-mode job waits on a setsid'd grandchild (as ansible-runner's
    ansible-playbook is): the job goes back to the queue and its processes end with the attempt,
    not whenever the handler gets round to returning (a demo or serve exiting would orphan them)."""
    marker = tmp_path / "tree"
    job_id = _enqueue(db, "test.tree", {"marker": str(marker)})
    pool = WorkerPool(
        db, concurrency=1, mode="thread", registry=REGISTRY, lease_seconds=5.0, poll_interval=0.05
    )
    pool.start()
    grandchild = None
    try:
        wait_until(lambda: marker.exists() and marker.read_text().strip() != "", what="the job tree")
        handler_pid, grandchild = (int(p) for p in marker.read_text().split())
        assert handler_pid == os.getpid()  # thread mode: the handler runs here
        pool.stop(timeout=0.5)
        assert not _alive(grandchild)
        assert job_row(db, job_id).state == JobState.QUEUED
    finally:
        pool.stop(timeout=0.5)
        if grandchild is not None:
            _kill_if_alive(grandchild)


@pytest.mark.slow
def test_a_job_child_dies_with_a_worker_killed_while_the_child_starts(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    """The worker is SIGKILLed while its job child is still starting (importing, before any handler
    code): the child must notice and exit, never run the job as an orphan."""
    marker = tmp_path / "tree"
    job_id = _enqueue(db, "test.tree", {"marker": str(marker)})
    children: list[int] = []
    try:
        with worker_processes(db_url, tmp_path) as workers:
            worker = workers.start(concurrency=1, lease=30.0, mode="process")
            wait_until(lambda: _job_children(worker.pid) != [], what="the job child to be spawned")
            children = _job_children(worker.pid)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            for pid in children:
                # An orphan would finish starting and then run the job's 60-second handler.
                wait_until(lambda pid=pid: not _alive(pid), timeout=30, what=f"job child {pid} to exit")
            assert not marker.exists(), "an orphaned child ran the job"
    finally:
        for pid in children:
            _kill_if_alive(pid)
        if marker.exists():
            for pid in marker.read_text().split():
                _kill_if_alive(int(pid))
    assert job_row(db, job_id).state == JobState.RUNNING  # until its lease runs out; nobody runs it


@pytest.mark.slow
@pytest.mark.db_only("sqlite", reason="two installations on one machine; one database kind shows it")
def test_cleaning_up_a_job_does_not_kill_the_same_job_id_of_another_database(
    db: Database, db_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    """Job ids are per database: staging beside production, or a test run beside either, both have
    a job 1. When one installation's job 1 ends, the processes of the other's job 1 (its child and
    a setsid'd grandchild) must keep running."""
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_url = clone_sqlite(sqlite_template, other_dir)
    other = Database(other_url)
    marker = tmp_path / "tree"
    pids: list[int] = []
    try:
        create_test_tables(other)
        other_job = _enqueue(other, "test.tree", {"marker": str(marker)})
        job_id = _enqueue(db, "test.steps", {})
        assert job_id == other_job
        with worker_processes(other_url, other_dir) as other_workers:
            other_workers.start(concurrency=1, lease=30.0, mode="process")
            wait_until(lambda: marker.exists() and marker.read_text().strip() != "", what="the job tree")
            pids = [int(p) for p in marker.read_text().split()]
            with worker_processes(db_url, tmp_path) as workers:
                workers.start(concurrency=1, lease=30.0, mode="process")
                wait_for_state(db, job_id, JobState.SUCCEEDED)
            assert [pid for pid in pids if not _alive(pid)] == []
            assert job_row(other, other_job).attempt == 1
    finally:
        for pid in pids:
            _kill_if_alive(pid)
        other.dispose()


# ----------------------------------------------------------------- also found: SQLite wake-up


def _worker_rows(db: Database) -> int:
    with db.session() as session:
        return int(session.execute(text("SELECT count(*) FROM workers")).scalar_one())


@pytest.mark.slow
@pytest.mark.db_only("sqlite", reason="PostgreSQL workers are woken by LISTEN/NOTIFY (tested elsewhere)")
def test_sqlite_workers_in_other_processes_are_woken_not_polled(
    db: Database, db_url: str, db_kind: str, tmp_path: Path
) -> None:
    """With a one-hour poll interval, only the wake-up datagram can start a job enqueued by another
    process (this one)."""
    with worker_processes(db_url, tmp_path) as workers:
        proc = workers.start(concurrency=1, lease=5.0, poll=3600.0)
        wait_until(lambda: _worker_rows(db) == 1, timeout=60, what="the worker to register")
        first = _enqueue(db, "test.noop")  # may be found by the start-up claim
        wait_for_state(db, first, JobState.SUCCEEDED, timeout=60)
        time.sleep(1.0)  # let the worker settle into its one-hour wait (not an assertion on speed)
        second = _enqueue(db, "test.noop")
        job = wait_for_state(db, second, JobState.SUCCEEDED, timeout=60)
        assert workers.terminate(proc) == 0, workers.log_of(proc)
    assert job.attempt == 1
