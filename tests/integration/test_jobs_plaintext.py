"""Job args, step outputs and results cannot be redacted (resume needs them exact), so a known secret
is refused there instead of being stored in plaintext."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from nodewright.db.database import Database
from nodewright.db.models.jobs import Job
from nodewright.jobs.enqueue import enqueue
from nodewright.security.redaction import register_secret
from tests.support.canary import database_dump
from tests.support.job_handlers import LEAKY_SECRET, REGISTRY
from tests.support.jobs import job_row, run_next


def _enqueue(database: Database, kind: str) -> int:
    with database.session(write=True) as session:
        job = enqueue(session, kind, {}, resource_key="node:1", registry=REGISTRY)
        return int(job.id)


def test_enqueue_refuses_a_secret_in_args_and_writes_nothing(database: Database) -> None:
    register_secret(LEAKY_SECRET)
    with (
        pytest.raises(ValueError, match="contain a secret") as raised,
        database.session(write=True) as session,
    ):
        enqueue(session, "test.noop", {"server": {"token": LEAKY_SECRET}}, registry=REGISTRY)
    assert LEAKY_SECRET not in str(raised.value)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


@pytest.mark.parametrize(
    ("kind", "where"), [("test.leak_step", "step 'fetch'"), ("test.leak_result", "result")]
)
def test_a_secret_in_a_step_output_or_result_fails_the_job_unstored(
    database: Database, kind: str, where: str
) -> None:
    job_id = _enqueue(database, kind)
    assert run_next(database) == "failed"
    job = job_row(database, job_id)
    assert job.error is not None and job.error["code"] == "internal_error"
    assert job.error["retryable"] is False and where in job.error["message"]
    assert job.result is None
    assert LEAKY_SECRET not in database_dump(database)
