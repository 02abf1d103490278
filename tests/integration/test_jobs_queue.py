"""Enqueue, dedup, claim order and the database-enforced guarantees, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from nodewright.db.database import Database
from nodewright.db.models.jobs import Job, JobEvent
from nodewright.db.types import utcnow
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.states import JobState
from tests.support.job_handlers import create_test_tables
from tests.support.jobs import claim, job_row, run_next

INSERT_APP_ROW = text("INSERT INTO test_step_runs (job_id, step, attempt, pid) VALUES (0, 'row', 0, 0)")


class Boom(Exception):
    pass


@pytest.fixture
def db(database: Database) -> Database:
    create_test_tables(database)
    return database


def _count(db: Database, model: type[Job] | type[JobEvent]) -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_enqueue_rolls_back_with_the_callers_transaction(db: Database) -> None:
    with pytest.raises(Boom), db.session() as session:
        session.execute(INSERT_APP_ROW)
        enqueue(session, "test.noop", {"n": 1})
        raise Boom
    assert _count(db, Job) == 0
    assert _count(db, JobEvent) == 0
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM test_step_runs")).scalar_one() == 0


def test_enqueue_commits_with_the_callers_rows(db: Database) -> None:
    with db.session() as session:
        session.execute(INSERT_APP_ROW)
        job = enqueue(session, "test.noop", {"n": 1}, resource_key="node:1", created_by="user:alice")
        job_id = job.id
    row = job_row(db, job_id)
    assert row.state == JobState.QUEUED
    assert row.args == {"n": 1}
    assert row.attempt == 0
    assert row.created_by == "user:alice"
    with db.session() as session:
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)).all()
        assert [(e.seq, e.type, e.message) for e in events] == [(1, "state", "queued")]


def test_dedup_returns_the_pending_job_then_allows_a_new_one(db: Database) -> None:
    with db.session() as session:
        first = enqueue(session, "test.noop", dedup_key="reconcile").id
    with db.session() as session:
        assert enqueue(session, "test.noop", dedup_key="reconcile").id == first
        assert enqueue(session, "test.noop", dedup_key="other").id != first
    assert run_next(db) == "succeeded"
    with db.session() as session:
        again = enqueue(session, "test.noop", dedup_key="reconcile").id
    assert again != first


def test_dedup_key_is_unique_among_pending_jobs_in_the_database(db: Database) -> None:
    with db.session() as session:
        enqueue(session, "test.noop", dedup_key="k")
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(Job(kind="test.noop", args={}, state="queued", dedup_key="k", max_attempts=1))
        session.flush()


def test_one_running_job_per_resource_is_enforced_by_the_database(db: Database) -> None:
    """Bypass the claim query entirely: the partial unique index alone refuses a second holder."""
    with db.session() as session:
        ids = [enqueue(session, "test.noop", resource_key="node:7").id for _ in range(3)]
        other = enqueue(session, "test.noop", resource_key="node:8").id
        free = [enqueue(session, "test.noop").id for _ in range(2)]
    set_state = text("UPDATE jobs SET state = :s WHERE id = :id")
    with db.session() as session:
        session.execute(set_state, {"s": "running", "id": ids[0]})
        session.execute(set_state, {"s": "running", "id": other})
        for job_id in free:  # no resource key: any number may run
            session.execute(set_state, {"s": "running", "id": job_id})
    for state in ("running", "canceling"):
        with pytest.raises(IntegrityError), db.session() as session:
            session.execute(set_state, {"s": state, "id": ids[1]})
    with db.session() as session:
        session.execute(set_state, {"s": "succeeded", "id": ids[0]})
        session.execute(set_state, {"s": "canceling", "id": ids[1]})
    with pytest.raises(IntegrityError), db.session() as session:
        session.execute(set_state, {"s": "running", "id": ids[2]})


def test_claim_skips_jobs_whose_resource_is_busy(db: Database) -> None:
    with db.session() as session:
        a = enqueue(session, "test.noop", resource_key="node:1").id
        b = enqueue(session, "test.noop", resource_key="node:1").id
        c = enqueue(session, "test.noop", resource_key="node:2").id
    first = claim(db, "w1")
    second = claim(db, "w2")
    assert first is not None and first.id == a and first.attempt == 1
    assert second is not None and second.id == c
    assert claim(db, "w3") is None  # b waits for a
    with db.session() as session:
        session.execute(text("UPDATE jobs SET state = 'succeeded' WHERE id = :id"), {"id": a})
    third = claim(db, "w3")
    assert third is not None and third.id == b


def test_claim_honours_priority_and_run_after(db: Database) -> None:
    later = utcnow() + dt.timedelta(hours=1)
    with db.session() as session:
        low = enqueue(session, "test.noop", priority=0).id
        high = enqueue(session, "test.noop", priority=10).id
        enqueue(session, "test.noop", priority=100, run_after=later)
    order = [claim(db), claim(db), claim(db)]
    assert [c.id if c else None for c in order] == [high, low, None]
    running = job_row(db, high)
    assert running.state == JobState.RUNNING
    assert running.lease_owner == "test-worker"
    assert running.lease_expires_at is not None and running.lease_expires_at > utcnow()


def test_claim_only_takes_kinds_the_worker_knows(db: Database) -> None:
    with db.session() as session:
        enqueue(session, "somebody.elses.kind")
    assert claim(db) is None


def test_concurrent_enqueues_with_one_dedup_key_make_one_job(db: Database) -> None:
    """B enqueues while A's transaction with the same key is still open: B must get A's job."""
    import threading

    a_enqueued = threading.Event()
    release_a = threading.Event()
    ids: dict[str, int] = {}

    def caller_a() -> None:
        with db.session(write=True) as session:
            ids["a"] = enqueue(session, "test.noop", dedup_key="create:node:1").id
            a_enqueued.set()
            release_a.wait(10)

    def caller_b() -> None:
        with db.session(write=True) as session:
            ids["b"] = enqueue(session, "test.noop", dedup_key="create:node:1").id

    thread_a = threading.Thread(target=caller_a)
    thread_a.start()
    assert a_enqueued.wait(10)
    thread_b = threading.Thread(target=caller_b)
    thread_b.start()
    thread_b.join(0.3)  # B is now blocked on A (write lock on SQLite, the unique index on PostgreSQL)
    release_a.set()
    thread_a.join(10)
    thread_b.join(10)
    assert ids["a"] == ids["b"]
    assert _count(db, Job) == 1
