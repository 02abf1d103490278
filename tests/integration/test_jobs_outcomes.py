"""How attempts end: success, retries with backoff into run_after, max attempts, terminal errors,
internal errors, cancel of queued and running jobs, and redaction of events."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from nodewright.db.database import Database
from nodewright.db.models.jobs import JobEvent
from nodewright.db.types import utcnow
from nodewright.jobs import service
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.runner import run_claimed
from nodewright.jobs.states import TERMINAL as TERMINAL_STATES
from nodewright.jobs.states import JobState
from nodewright.jobs.worker import WorkerPool
from nodewright.security.redaction import register_secret
from tests.support.job_handlers import REGISTRY, create_test_tables
from tests.support.jobs import claim, job_row, make_due, run_next, wait_for_state, wait_until


@pytest.fixture
def db(database: Database) -> Database:
    create_test_tables(database)
    return database


@pytest.fixture
def pool(db: Database) -> Iterator[WorkerPool]:
    workers = WorkerPool(db, concurrency=2, registry=REGISTRY, lease_seconds=2.0, poll_interval=0.1)
    workers.start()
    try:
        yield workers
    finally:
        workers.stop(timeout=5.0)


def _events(db: Database, job_id: int) -> list[JobEvent]:
    with db.session() as session:
        return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))


def _enqueue(db: Database, kind: str, args: dict[str, object] | None = None, **kw: object) -> int:
    with db.session() as session:
        return enqueue(session, kind, args or {}, registry=REGISTRY, **kw).id  # type: ignore[arg-type]


def test_success_records_result_steps_and_a_dense_event_log(db: Database) -> None:
    job_id = _enqueue(db, "test.steps")
    assert run_next(db) == "succeeded"
    job = job_row(db, job_id)
    assert job.state == JobState.SUCCEEDED
    assert job.result == {
        "one": {"server_id": 1000 + job_id, "attempt": 1},
        "two": {"action_id": 7, "attempt": 1},
    }
    assert job.finished_at is not None and job.lease_expires_at is None
    events = _events(db, job_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    messages = [e.message for e in events]
    assert messages[0] == "queued"
    assert "step one completed" in messages and "between steps" in messages
    assert messages[-1] == "succeeded"


def test_retryable_error_backs_off_into_run_after_honouring_retry_after(db: Database) -> None:
    job_id = _enqueue(db, "test.fail", {"code": "rate_limited", "retry_after": 3600})
    before = utcnow()
    assert run_next(db) == JobState.RETRY_WAIT
    job = job_row(db, job_id)
    assert job.state == JobState.RETRY_WAIT
    assert job.error is not None and job.error["code"] == "rate_limited" and job.error["retryable"] is True
    assert (job.run_after - before).total_seconds() >= 3600
    assert claim(db) is None  # not due yet

    make_due(db, job_id)
    assert run_next(db) == JobState.RETRY_WAIT
    assert job_row(db, job_id).attempt == 2
    make_due(db, job_id)
    assert run_next(db) == JobState.FAILED  # max_attempts=3 for test.fail
    job = job_row(db, job_id)
    assert job.attempt == 3 and job.state == JobState.FAILED
    assert job.error is not None and job.error["code"] == "rate_limited"


def test_backoff_without_retry_after_follows_the_kind_schedule(db: Database) -> None:
    job_id = _enqueue(db, "test.fail", {"code": "provider_unavailable"})
    run_next(db)
    job = job_row(db, job_id)
    delay = (job.run_after - job.updated_at).total_seconds()
    # test.fail: base 0.05 s, cap 0.2 s, jitter 25 %.
    assert 0.05 * 0.75 - 0.001 <= delay <= 0.05 * 1.25 + 0.001


def test_terminal_error_fails_at_once_with_code_and_hint(db: Database) -> None:
    job_id = _enqueue(
        db, "test.fail", {"code": "quota_exceeded", "retryable": False, "hint": "raise the project limit"}
    )
    assert run_next(db) == JobState.FAILED
    job = job_row(db, job_id)
    assert job.attempt == 1
    assert job.error == {
        "code": "quota_exceeded",
        "message": "the provider is down",
        "retryable": False,
        "hint": "raise the project limit",
        "retry_after": None,
    }


def test_error_whose_message_is_an_exception_is_stored_as_redacted_text(db: Database) -> None:
    secret = f"hcloud-token-{uuid.uuid4().hex}"  # new per run: registration is process-wide
    # The args carry the secret only to hand it to the handler; it is registered afterwards, as a
    # handler's decrypted token would be (args holding a known secret are refused at enqueue).
    job_id = _enqueue(
        db, "test.fail", {"retryable": False, "as_exception": True, "message": f"401 for {secret}"}
    )
    register_secret(secret)
    assert run_next(db) == JobState.FAILED
    job = job_row(db, job_id)
    assert job.error is not None and job.error["code"] == "provider_unavailable"
    assert job.error["message"] == "401 for [REDACTED]"
    assert all(secret not in (e.message + str(e.data)) for e in _events(db, job_id))


def test_non_finite_floats_are_stored_as_null_on_both_databases(db: Database) -> None:
    """JSON has no NaN or Infinity: PostgreSQL refused them (the checkpoint failed), SQLite stored
    them; both now store null."""
    job_id = _enqueue(db, "test.non_finite")
    assert run_next(db) == JobState.SUCCEEDED
    job = job_row(db, job_id)
    assert job.result == {"ratio": None, "low": None}
    assert [e.data for e in _events(db, job_id) if e.type == "log"] == [{"ratio": None}]


def test_unexpected_exception_becomes_internal_error_without_details(db: Database) -> None:
    secret = f"s3cr3t-token-{uuid.uuid4().hex}"
    job_id = _enqueue(db, "test.crash", {"secret": secret}, max_attempts=1)
    register_secret(secret)  # afterwards, as for a handler's decrypted token (see above)
    assert run_next(db) == JobState.FAILED
    job = job_row(db, job_id)
    assert job.error is not None and job.error["code"] == "internal_error"
    assert "Traceback" not in job.error["message"] and secret not in job.error["message"]
    assert all(secret not in (e.message + str(e.data)) for e in _events(db, job_id))


def test_events_are_redacted_before_they_are_stored(db: Database) -> None:
    secret = "hcloud-token-abcdefghijklmnop"
    register_secret(secret)
    job_id = _enqueue(db, "test.noop")
    claimed = claim(db)
    assert claimed is not None
    from nodewright.jobs.context import JobContext

    ctx = JobContext(db, claimed, cancel_flag=threading.Event())
    ctx.log(f"token is {secret}", level="warning", token=secret, nested={"list": [secret]})
    logged = _events(db, job_id)[-1]
    assert secret not in logged.message and "[REDACTED]" in logged.message
    assert logged.data == {"token": "[REDACTED]", "nested": {"list": ["[REDACTED]"]}}
    assert logged.level == "warning"
    # An exception passed as the message (an untyped handler's `ctx.log(exc)`) is redacted too.
    ctx.log(RuntimeError(f"provider said no to {secret}"), level="error")  # type: ignore[arg-type]
    logged = _events(db, job_id)[-1]
    assert logged.message == "provider said no to [REDACTED]"


def test_flaky_job_succeeds_on_a_later_attempt_through_a_worker_pool(db: Database, pool: WorkerPool) -> None:
    job_id = _enqueue(db, "test.flaky", {"succeed_on": 3})
    job = wait_for_state(db, job_id, JobState.SUCCEEDED, JobState.FAILED)
    assert job.state == JobState.SUCCEEDED
    assert job.attempt == 3 and job.result == {"attempt": 3}


def test_cancel_of_a_queued_job_is_immediate(db: Database) -> None:
    job_id = _enqueue(db, "test.noop")
    with db.session(write=True) as session:
        job = service.request_cancel(session, job_id, actor="user:alice")
        assert job.state == JobState.CANCELED
    assert claim(db) is None
    with pytest.raises(service.JobAlreadyFinished), db.session(write=True) as session:
        service.request_cancel(session, job_id)
    assert "canceled by user:alice" in [e.message for e in _events(db, job_id)]


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_cancel_of_a_running_job_stops_it_at_its_next_check(db: Database, tmp_path: Path, mode: str) -> None:
    marker = tmp_path / "running"
    workers = WorkerPool(
        db, concurrency=1, mode=mode, registry=REGISTRY, lease_seconds=2.0, poll_interval=0.1
    )
    workers.start()
    try:
        job_id = _enqueue(db, "test.wait_cancel", {"marker": str(marker)})
        wait_until(marker.exists, what="the handler to start")
        with db.session(write=True) as session:
            assert service.request_cancel(session, job_id, actor="user:bob").state == JobState.CANCELING
        job = wait_for_state(db, job_id, JobState.CANCELED, JobState.SUCCEEDED, JobState.FAILED)
        assert job.state == JobState.CANCELED
        assert job.cancel_requested_at is not None and job.finished_at is not None
        messages = [e.message for e in _events(db, job_id)]
        assert "cancel requested by user:bob" in messages and messages[-1] == "canceled"
    finally:
        workers.stop(timeout=5.0)


def test_a_stale_attempt_cannot_finish_a_job_it_lost(db: Database) -> None:
    """run_claimed with a fence that no longer matches writes nothing and reports the loss."""
    job_id = _enqueue(db, "test.noop")
    claimed = claim(db, "old-owner")
    assert claimed is not None
    with db.session(write=True) as session:
        job = service.get_job(session, job_id)
        job.lease_owner = "new-owner"
        job.attempt = 2
    outcome = run_claimed(db, claimed, REGISTRY.get("test.noop"), cancel_flag=threading.Event())
    assert outcome == "lost"
    job = job_row(db, job_id)
    assert job.state == JobState.RUNNING and job.lease_owner == "new-owner" and job.result is None


def test_process_mode_runs_jobs_in_children_and_survives_a_killed_child(db: Database) -> None:
    workers = WorkerPool(
        db, concurrency=2, mode="process", registry=REGISTRY, lease_seconds=2.0, poll_interval=0.1
    )
    workers.start()
    try:
        ok = _enqueue(db, "test.steps")
        dies = _enqueue(db, "test.die_once")
        assert wait_for_state(db, ok, JobState.SUCCEEDED, JobState.FAILED).state == JobState.SUCCEEDED
        job = wait_for_state(db, dies, JobState.SUCCEEDED, JobState.FAILED)
    finally:
        workers.stop(timeout=5.0)
    assert job.state == JobState.SUCCEEDED and job.attempt == 2
    assert job.result is not None
    assert job.result["first_pid"] != job.result["pid"] != os.getpid()  # two children, not the worker
    messages = [e.message for e in _events(db, dies)]
    assert any("worker_lost" in m for m in messages)


def test_cancels_racing_claims_and_completions_leave_every_job_consistent(db: Database) -> None:
    """Cancel requests land while workers claim and finish the same jobs: each answer the caller got
    stays true, every job ends in a final state, and no canceled job ran to a result."""
    ids = [_enqueue(db, "test.record", {"sleep": 0.005}, resource_key=f"r{n % 3}") for n in range(60)]
    answers: dict[int, str] = {}
    workers = WorkerPool(db, concurrency=4, registry=REGISTRY, lease_seconds=2.0, poll_interval=0.02)
    workers.start()
    try:
        for job_id in ids[::-1]:  # newest first: some are still queued, some running, some done
            try:
                with db.session(write=True) as session:
                    answers[job_id] = service.request_cancel(session, job_id, actor="user:racer").state
            except service.JobAlreadyFinished as exc:
                answers[job_id] = f"finished:{exc.state}"
        finals = {job_id: wait_for_state(db, job_id, *TERMINAL_STATES).state for job_id in ids}
    finally:
        workers.stop(timeout=5.0)
    with db.session() as session:
        ran = set(session.execute(text("SELECT job_id FROM test_job_runs")).scalars())
    for job_id, answer in answers.items():
        final = finals[job_id]
        if answer == JobState.CANCELED:  # canceled while waiting: it never ran
            assert final == JobState.CANCELED and job_id not in ran and job_row(db, job_id).result is None
        elif answer == JobState.CANCELING:
            assert final in (JobState.CANCELED, JobState.SUCCEEDED)
        else:
            assert answer == f"finished:{final}" and final == JobState.SUCCEEDED and job_id in ran
