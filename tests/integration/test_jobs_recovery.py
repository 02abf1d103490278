"""Leases, fencing and checkpoints in one process: expiry requeue, resume from the last completed
step, a stale attempt's writes refused, hand-back at shutdown, and the periodic singleton."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from prometheus_client import REGISTRY as METRICS
from sqlalchemy import select, text

from nodewright.db.database import Database
from nodewright.db.models.jobs import JobStep
from nodewright.db.types import utcnow
from nodewright.jobs import service
from nodewright.jobs.context import JobContext
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.errors import LeaseLost
from nodewright.jobs.maintainer import enqueue_periodic, requeue_expired
from nodewright.jobs.registry import Registry
from nodewright.jobs.runner import run_claimed
from nodewright.jobs.states import JobState
from nodewright.jobs.worker import WorkerPool
from tests.support.job_handlers import REGISTRY, create_test_tables, tick
from tests.support.jobs import claim, job_messages, job_row, wait_for_state, wait_until


@pytest.fixture
def db(database: Database) -> Database:
    create_test_tables(database)
    return database


def _expire_lease(db: Database, job_id: int) -> None:
    with db.session(write=True) as session:
        session.execute(
            text("UPDATE jobs SET lease_expires_at = :t WHERE id = :id"),
            {
                "t": "2000-01-01 00:00:00.000000" if db.is_sqlite else "2000-01-01T00:00:00+00:00",
                "id": job_id,
            },
        )


def _step_runs(db: Database, job_id: int) -> list[tuple[str, int]]:
    with db.session() as session:
        rows = session.execute(
            text("SELECT step, attempt FROM test_step_runs WHERE job_id = :j ORDER BY step, attempt"),
            {"j": job_id},
        ).all()
    return [(r[0], r[1]) for r in rows]


def test_expired_lease_is_requeued_and_resumes_from_the_checkpoint_while_the_stale_attempt_is_fenced(
    db: Database,
) -> None:
    with db.session() as session:
        job_id = enqueue(session, "test.steps", {}, registry=REGISTRY).id

    # Attempt 1 checkpoints step one, then "hangs" (we simply stop driving it) and its lease runs out.
    first = claim(db, "worker-a")
    assert first is not None and first.attempt == 1
    stale = JobContext(db, first, cancel_flag=threading.Event())
    one = stale.step("one", lambda: {"server_id": 4242})
    assert one == {"server_id": 4242}
    _expire_lease(db, job_id)
    lost_before = _worker_lost_count("test.steps")
    before_requeue = utcnow()
    assert requeue_expired(db) == [job_id]
    job = job_row(db, job_id)
    assert job.state == JobState.QUEUED and job.lease_owner is None and job.attempt == 1
    # Runnable from the requeue on (claim latency), and the lost attempt counts as a failure.
    assert job.run_after >= before_requeue
    assert _worker_lost_count("test.steps") == lost_before + 1

    # Attempt 2 (another worker) reads step one back instead of redoing it, then runs step two.
    second = claim(db, "worker-b")
    assert second is not None and second.attempt == 2
    assert run_claimed(db, second, REGISTRY.get("test.steps"), cancel_flag=threading.Event()) == "succeeded"
    job = job_row(db, job_id)
    assert job.state == JobState.SUCCEEDED
    assert job.result is not None and job.result["one"] == {"server_id": 4242}
    assert job.result["two"]["attempt"] == 2
    assert _step_runs(db, job_id) == [("two", 2)]  # step one's function never ran again

    # The stale attempt wakes up: every kind of write it tries is refused.
    with pytest.raises(LeaseLost):
        stale.step("two", lambda: {"late": True})
    with pytest.raises(LeaseLost):
        stale.log("late log line")
    with pytest.raises(LeaseLost):
        stale.log_many([("late batch", "info", {})])
    with pytest.raises(LeaseLost):
        stale.check_canceled()
    assert run_claimed(db, first, REGISTRY.get("test.steps"), cancel_flag=threading.Event()) == "lost"
    with db.session() as session:
        steps = session.execute(select(JobStep.name, JobStep.attempt).where(JobStep.job_id == job_id)).all()
    assert sorted((s[0], s[1]) for s in steps) == [("one", 1), ("two", 2)]
    assert job_row(db, job_id).result == job.result


def _worker_lost_count(kind: str) -> float:
    value = METRICS.get_sample_value("nodewright_job_failures_total", {"kind": kind, "code": "worker_lost"})
    return value or 0.0


def test_expired_lease_on_the_last_attempt_fails_with_worker_lost(db: Database) -> None:
    with db.session() as session:
        job_id = enqueue(session, "test.noop", {}, max_attempts=1).id
    assert claim(db) is not None
    _expire_lease(db, job_id)
    requeue_expired(db)
    job = job_row(db, job_id)
    assert job.state == JobState.FAILED
    assert job.error is not None and job.error["code"] == "worker_lost"


def test_stop_hands_unfinished_jobs_back_and_fences_the_handler(db: Database, tmp_path: Path) -> None:
    marker = tmp_path / "in-step-two"
    pool = WorkerPool(db, concurrency=1, registry=REGISTRY, lease_seconds=5.0, poll_interval=0.1)
    pool.start()
    with db.session() as session:
        job_id = enqueue(
            session,
            "test.steps",
            {"block_attempt": 1, "marker": str(marker), "block_seconds": 1.5},
            registry=REGISTRY,
        ).id
    try:
        wait_until(marker.exists, what="the handler to reach step two")
        before_stop = utcnow()
    finally:
        pool.stop(timeout=0.1)
    job = job_row(db, job_id)
    assert job.state == JobState.QUEUED and job.lease_owner is None
    assert job.run_after >= before_stop, "runnable from the hand-back on (claim latency)"
    # The handler thread finishes its step after the hand-back: its checkpoint is refused.
    wait_until(lambda: ("two", 1) in _step_runs(db, job_id), what="the zombie step to run")
    wait_until(
        lambda: not any(t.is_alive() for t in pool._executors),
        what="the zombie handler thread to reach its refused checkpoint and end",
    )
    with db.session() as session:
        names = session.execute(select(JobStep.name).where(JobStep.job_id == job_id)).scalars().all()
    assert list(names) == ["one"]
    assert job_row(db, job_id).state == JobState.QUEUED


def test_periodic_job_has_one_instance_at_a_time_across_workers(db: Database) -> None:
    registry = Registry()
    registry.register("test.tick", tick)
    registry.periodic("test.tick", interval_seconds=0.2)
    # Several maintainers racing to enqueue the same schedule produce one pending job.
    created = {job_id for _ in range(5) for job_id in enqueue_periodic(db, registry)}
    assert len(created) == 1
    pools = [
        WorkerPool(db, concurrency=2, registry=registry, lease_seconds=2.0, poll_interval=0.05)
        for _ in range(3)
    ]
    for pool in pools:
        pool.start()
    try:
        wait_until(lambda: _count_runs(db) >= 5, timeout=60, what="five periodic runs")
    finally:
        for pool in pools:
            pool.stop(timeout=5.0)
    with db.session() as session:
        runs = session.execute(
            text("SELECT job_id, started, ended FROM test_job_runs ORDER BY started")
        ).all()
        pending = session.execute(
            text("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running', 'retry_wait')")
        ).scalar_one()
    assert pending <= 1
    job_ids = [r[0] for r in runs]
    assert len(job_ids) == len(set(job_ids))  # each instance ran once
    for earlier, later in itertools.pairwise(runs):
        assert earlier[2] <= later[1], "two periodic instances overlapped"


def _count_runs(db: Database) -> int:
    with db.session() as session:
        return int(session.execute(text("SELECT count(*) FROM test_job_runs")).scalar_one())


def test_worker_pool_runs_to_completion_and_records_its_heartbeat(db: Database) -> None:
    pool = WorkerPool(db, concurrency=2, registry=REGISTRY, lease_seconds=2.0, poll_interval=0.1)
    pool.start()
    try:
        with db.session() as session:
            ids = [enqueue(session, "test.noop", {}, resource_key=f"r{i % 2}").id for i in range(10)]
        for job_id in ids:
            wait_for_state(db, job_id, JobState.SUCCEEDED)
        with db.session() as session:
            workers = session.execute(text("SELECT id FROM workers")).scalars().all()
        assert pool.worker_id in workers
    finally:
        pool.stop(timeout=5.0)
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM workers")).scalar_one() == 0


INSERT_STEP_RUN = text("INSERT INTO test_step_runs (job_id, step, attempt, pid) VALUES (:j, :s, 1, 0)")


def test_handler_transaction_is_fenced_and_sleep_wakes_on_cancel(db: Database) -> None:
    with db.session() as session:
        job_id = enqueue(session, "test.noop", {}).id
    claimed = claim(db, "worker-a")
    assert claimed is not None
    ctx = JobContext(db, claimed, cancel_flag=threading.Event())
    with ctx.transaction() as session:
        session.execute(
            text("INSERT INTO test_step_runs (job_id, step, attempt, pid) VALUES (:j, 'tx', 1, 0)"),
            {"j": job_id},
        )
    from nodewright.jobs.errors import JobCanceled

    with db.session(write=True) as session:
        service.request_cancel(session, job_id)
    with pytest.raises(JobCanceled):
        ctx.sleep(30)
    _expire_lease(db, job_id)
    requeue_expired(db)
    with pytest.raises(LeaseLost), ctx.transaction() as session:
        session.execute(
            text("INSERT INTO test_step_runs (job_id, step, attempt, pid) VALUES (:j, 'late', 1, 0)"),
            {"j": job_id},
        )
    assert [s for s, _ in _step_runs(db, job_id)] == ["tx"]


def test_a_wide_worker_pool_does_not_starve_its_database_pool(db: Database, db_url: str) -> None:
    """Executors keep their claim/finish connections for good; on PostgreSQL they must not come out
    of the pool that handlers (steps, logs) and the heartbeat monitor draw from, or a worker with
    ``--concurrency`` at or above the pool size stops making progress."""
    shared = Database(db_url)  # the default pool, as `nodewright worker` gets it
    concurrency = 24
    pool = WorkerPool(
        shared, concurrency=concurrency, registry=REGISTRY, lease_seconds=5.0, poll_interval=0.05
    )
    pool.start()
    try:
        with db.session() as session:
            failing = [
                enqueue(session, "test.fail", {"retryable": False}, registry=REGISTRY).id for _ in range(40)
            ]
            stepping = [enqueue(session, "test.steps", {}, registry=REGISTRY).id for _ in range(40)]
        for job_id in failing:
            assert (
                wait_for_state(db, job_id, JobState.FAILED, JobState.SUCCEEDED, timeout=60).state == "failed"
            )
        for job_id in stepping:
            job = wait_for_state(
                db, job_id, JobState.SUCCEEDED, JobState.FAILED, JobState.RETRY_WAIT, timeout=60
            )
            assert job.state == JobState.SUCCEEDED and job.attempt == 1, job.error
    finally:
        pool.stop(timeout=5.0)
        shared.dispose()


def test_log_inside_the_handler_transaction_joins_it(db: Database) -> None:
    """ctx.log() within ctx.transaction() writes its event in that transaction. In a second one it
    would wait for the job-row lock the first holds: forever on PostgreSQL, for the busy timeout
    ("database is locked") on SQLite."""
    pool = WorkerPool(db, concurrency=1, registry=REGISTRY, lease_seconds=2.0, poll_interval=0.05)
    pool.start()
    try:
        with db.session() as session:
            job_id = enqueue(session, "test.log_in_transaction", {}, registry=REGISTRY).id
        job = wait_for_state(db, job_id, JobState.SUCCEEDED, JobState.FAILED, JobState.RETRY_WAIT, timeout=10)
    finally:
        pool.stop(timeout=1.0)
    assert job.state == JobState.SUCCEEDED and job.attempt == 1, job.error
    assert job.result is not None
    with db.session() as session:
        logged = session.execute(
            text("SELECT seq, message FROM job_events WHERE job_id = :j AND type = 'log'"), {"j": job_id}
        ).all()
    assert [(r[0], r[1]) for r in logged] == [(job.result["seq"], "marked inside the transaction")]
    assert _step_runs(db, job_id) == [("tx", 1)]


def test_step_inside_the_handler_transaction_is_refused(db: Database) -> None:
    with db.session() as session:
        enqueue(session, "test.noop", {}, registry=REGISTRY)
    claimed = claim(db, "worker-a")
    assert claimed is not None
    ctx = JobContext(db, claimed, cancel_flag=threading.Event())
    with pytest.raises(RuntimeError, match=r"inside ctx\.transaction"), ctx.transaction():
        ctx.step("nested", lambda: {"never": True})
    with pytest.raises(RuntimeError, match="do not nest"), ctx.transaction(), ctx.transaction():
        pass
    assert ctx.completed_steps == {}
    ctx.step("after", lambda: {"ok": True})  # the context is usable again once the block ended
    assert ctx.completed_steps == {"after": {"ok": True}}


@pytest.mark.db_only("postgresql", reason="SQLite has one database-wide write lock")
def test_a_long_handler_transaction_stalls_neither_renewals_nor_sweeps(
    db: Database, db_kind: str, tmp_path: Path
) -> None:
    """PostgreSQL: one handler keeping its ctx.transaction() (its job row's lock) open must not stop
    the monitor renewing the pool's other leases, nor a sweeper from getting past that row. (On
    SQLite one open write transaction holds the whole database: there is nothing to get past.)"""
    holding, release, waiting = tmp_path / "holding", tmp_path / "release", tmp_path / "waiting"
    pool = WorkerPool(
        db, concurrency=2, registry=REGISTRY, lease_seconds=3.0, poll_interval=0.05, maintenance=False
    )
    pool.start()
    try:
        with db.session() as session:
            held = enqueue(
                session,
                "test.hold_transaction",
                {"marker": str(holding), "release": str(release)},
                registry=REGISTRY,
            ).id
        wait_until(holding.exists, what="the handler to open its transaction")
        with db.session() as session:
            other = enqueue(session, "test.wait_cancel", {"marker": str(waiting)}, registry=REGISTRY).id
        wait_until(waiting.exists, what="the second job to start")
        first_lease = job_row(db, other).lease_expires_at
        wait_until(
            lambda: job_row(db, other).lease_expires_at != first_lease,
            timeout=15,
            what="the second job's lease to be renewed while the first holds its row",
        )
        # The held job's lease runs out (its row cannot be renewed); a sweep gets past that locked
        # row instead of waiting for the transaction to end.
        wait_until(
            lambda: job_row(db, held).lease_expires_at < utcnow(),  # type: ignore[operator]
            what="the held job's lease to run out",
        )
        swept: list[list[int]] = []
        sweeper = threading.Thread(target=lambda: swept.append(requeue_expired(db)), daemon=True)
        sweeper.start()
        wait_until(lambda: not sweeper.is_alive(), timeout=15, what="a sweep to finish")
        assert swept == [[]]
        assert job_row(db, other).attempt == 1
    finally:
        release.touch()
        with db.session(write=True) as session:
            service.request_cancel(session, other)
        pool.stop(timeout=5.0)
    assert wait_for_state(db, other, JobState.CANCELED, JobState.SUCCEEDED, JobState.FAILED).attempt == 1


def test_stop_in_process_mode_kills_the_child_and_hands_the_job_back(db: Database, tmp_path: Path) -> None:
    marker = tmp_path / "in-step-two"
    pool = WorkerPool(
        db, concurrency=1, mode="process", registry=REGISTRY, lease_seconds=5.0, poll_interval=0.1
    )
    pool.start()
    with db.session() as session:
        job_id = enqueue(
            session,
            "test.steps",
            {"block_attempt": 1, "marker": str(marker), "block_seconds": 60},
            registry=REGISTRY,
        ).id
    child = 0
    try:
        wait_until(marker.exists, what="the job child to reach step two")
        child = int(marker.read_text())
    finally:
        pool.stop(timeout=0.5)
        if child:
            wait_until(lambda: not _running(child), what="the job child to be gone")
    job = job_row(db, job_id)
    assert job.state == JobState.QUEUED and job.lease_owner is None and job.attempt == 1
    with db.session() as session:
        names = session.execute(select(JobStep.name).where(JobStep.job_id == job_id)).scalars().all()
    assert list(names) == ["one"]


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_batch_of_log_lines_is_one_ordered_write(db: Database) -> None:
    with db.session() as session:
        job_id = enqueue(session, "test.steps", {}, registry=REGISTRY).id
    claimed = claim(db, "worker-a")
    assert claimed is not None
    ctx = JobContext(db, claimed, cancel_flag=threading.Event())
    first = ctx.log("before")
    ctx.log_many([(f"line {i}", "warning" if i == 1 else "info", {"i": i}) for i in range(3)])
    after = ctx.log("after")
    with db.session() as session:
        rows = session.execute(
            text("SELECT seq, message, level FROM job_events WHERE job_id = :j AND seq > :s AND seq < :e "
                 "ORDER BY seq"), {"j": job_id, "s": first, "e": after},
        ).all()  # fmt: skip
    assert [(r[1], r[2]) for r in rows] == [("line 0", "info"), ("line 1", "warning"), ("line 2", "info")]
    assert [r[0] for r in rows] == [first + 1, first + 2, first + 3]


def test_a_buffered_log_is_refused_inside_a_transaction_block(db: Database) -> None:
    """Its writer thread waits for the job-row lock that the block holds: fed or closed from inside
    the block, it would wait forever on PostgreSQL. It is refused with a clear error instead; a
    refused close still ends the writer once the block is over, with what it held written."""
    with db.session() as session:
        job_id = enqueue(session, "test.steps", {}, registry=REGISTRY).id
    claimed = claim(db, "worker-a")
    assert claimed is not None
    ctx = JobContext(db, claimed, cancel_flag=threading.Event())
    sink = ctx.buffered_log()
    sink("info", "before the block", {})
    with ctx.transaction():
        with pytest.raises(RuntimeError, match=r"inside ctx\.transaction"):
            sink("info", "from inside the block", {})
        with pytest.raises(RuntimeError, match=r"inside ctx\.transaction"):
            sink.close()
    wait_until(lambda: not sink._thread.is_alive(), timeout=10, what="the writer to end after the block")
    with pytest.raises(RuntimeError, match="closed"):
        sink("info", "after close", {})
    messages = job_messages(db, job_id)
    assert "before the block" in messages and "from inside the block" not in messages
