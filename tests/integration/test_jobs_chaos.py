"""Bounded chaos: worker processes killed with SIGKILL and frozen with SIGSTOP while they drain jobs
whose side effects go to an external ledger (the harness is ``tests/support/chaos.py``; the longer run
is ``bench/jobs_chaos.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodewright.db.database import Database
from tests.support.chaos import run_chaos

pytestmark = pytest.mark.slow


def test_chaos_loses_nothing_duplicates_nothing_and_requeues_no_live_attempt(
    database: Database, db_url: str, tmp_path: Path
) -> None:
    report = run_chaos(database, db_url, tmp_path, seconds=20.0, jobs=60, workers=3, lease=2.0)
    summary = report.summary()
    assert report.kills > 0 and report.freezes > 0, summary
    assert report.lost == [], summary
    assert report.finished_twice == [], summary
    assert report.overlaps == [], summary
    assert report.reruns_after_checkpoint == [], summary
    assert report.live_requeued == [], summary
