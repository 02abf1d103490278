"""Workers as operators run them: ``nodewright worker`` as a real process (SIGTERM stops it cleanly),
and the workers embedded in the app's lifespan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.jobs.builtin import NOOP
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.states import JobState
from tests.support.apps import make_settings
from tests.support.jobs import wait_for_state

pytestmark = pytest.mark.slow


def test_worker_command_runs_jobs_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path / "data")
    ctx = AppContext.open(settings)  # an installation: keys and schema exist
    try:
        with ctx.database.session() as session:
            job_id = enqueue(session, NOOP, {"echo": "hello"}).id
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
        env.update(
            NODEWRIGHT_DATA_DIR=str(settings.data_dir),
            NODEWRIGHT_DATABASE_URL=db_url,
            NODEWRIGHT_SECRET_KEYS=settings.secret_keys.get_secret_value() if settings.secret_keys else "",
            NODEWRIGHT_JOB_POLL_INTERVAL="0.2",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodewright.cli", "worker", "--concurrency", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            job = wait_for_state(ctx.database, job_id, JobState.SUCCEEDED, JobState.FAILED, timeout=60)
            assert job.state == JobState.SUCCEEDED and job.result == {"echo": "hello"}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert "nodewright worker" in out
    finally:
        ctx.close()


def test_worker_command_refuses_a_database_without_keys(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env.update(NODEWRIGHT_DATA_DIR=str(tmp_path / "empty"), NODEWRIGHT_DATABASE_URL=db_url)
    done = subprocess.run(
        [sys.executable, "-m", "nodewright.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "error:" in done.stderr and "Traceback" not in done.stderr


def test_app_lifespan_runs_embedded_workers(db_url: str, tmp_path: Path) -> None:
    settings: Settings = make_settings(db_url, tmp_path / "data", embedded_workers=1, job_poll_interval=0.2)
    app = create_app(settings)
    with TestClient(app):
        ctx: AppContext = app.state.ctx
        with ctx.database.session() as session:
            job_id = enqueue(session, NOOP, {"echo": 1}).id
        job = wait_for_state(ctx.database, job_id, JobState.SUCCEEDED, JobState.FAILED)
        assert job.result == {"echo": 1}
