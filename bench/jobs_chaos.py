"""Job engine chaos run, longer than the one in the test suite: worker processes (thread and process
mode) killed with SIGKILL and frozen with SIGSTOP while they drain jobs whose side effects go to an
external ledger; prints the counts (lost, finished twice, overlaps per resource key, steps re-run
after their checkpoint, live attempts requeued), which must all be 0.

    .venv/bin/python bench/jobs_chaos.py --seconds 300 --jobs 600 \\
        --postgres-url postgresql://postgres@127.0.0.1:5432/test

Runs on a fresh SQLite database, and on a fresh PostgreSQL database when a URL is given (it creates
and drops its own). The harness is ``tests/support/chaos.py``, shared with the bounded test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.chaos import run_chaos  # noqa: E402

from jobs_bench import PgDatabases  # noqa: E402
from nodewright.db import migrate  # noqa: E402
from nodewright.db.database import Database  # noqa: E402


def one(url: str, label: str, work_dir: Path, options: argparse.Namespace) -> dict[str, object]:
    db = Database(url)
    try:
        migrate.upgrade(db.engine)
        report = run_chaos(
            db,
            url,
            work_dir,
            seconds=options.seconds,
            jobs=options.jobs,
            workers=options.workers,
            lease=options.lease,
            seed=options.seed,
        )
    finally:
        db.dispose()
    summary: dict[str, object] = {"database": label, **report.summary()}
    if not report.clean:
        summary["details"] = {
            "lost": report.lost[:20],
            "finished_twice": report.finished_twice[:20],
            "overlaps": report.overlaps[:20],
            "reruns_after_checkpoint": report.reruns_after_checkpoint[:20],
            "live_requeued": report.live_requeued[:20],
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres-url", default=os.environ.get("NODEWRIGHT_TEST_POSTGRES_URL"))
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    os.chdir(REPO_ROOT)  # worker subprocesses import tests.support from here
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_dir = Path(tmp) / "sqlite"
        sqlite_dir.mkdir()
        results.append(one(f"sqlite:///{sqlite_dir / 'chaos.db'}", "sqlite", sqlite_dir, options))
        print(json.dumps(results[-1]), file=sys.stderr)
        if options.postgres_url:
            pg = PgDatabases(options.postgres_url)
            try:
                pg_dir = Path(tmp) / "postgresql"
                pg_dir.mkdir()
                results.append(one(pg.create("chaos"), "postgresql", pg_dir, options))
                print(json.dumps(results[-1]), file=sys.stderr)
            finally:
                pg.drop_all()
    print(json.dumps(results, indent=2))
    if any("details" in r for r in results):  # something was not 0
        sys.exit(1)


if __name__ == "__main__":
    main()
