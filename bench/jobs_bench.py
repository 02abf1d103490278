"""Job engine benchmark: enqueue-to-start latency and no-op throughput, nodewright vs procrastinate.

    .venv/bin/python bench/jobs_bench.py --postgres-url postgresql://postgres@127.0.0.1:5432/test

For every (engine, database, workers) it measures, on fresh databases:

- latency: jobs enqueued one at a time, 20 ms apart, onto an idle, already running worker; the
  delay from enqueue (the job's creation time) to its start (claim time), p50 and p99, from the
  timestamps the engine itself stores;
- throughput: a batch of no-op jobs enqueued in one transaction onto the idle worker; jobs per
  second from the first start to the last finish.

Set-ups ("shape"), chosen to match how each is deployed:

- nodewright on SQLite, embedded: a thread pool in the enqueuing process, woken in-process.
- nodewright on SQLite, standalone: a worker *process* (``WorkerPool``, thread mode) like
  ``nodewright worker``, woken by the wake-up datagram of ``nodewright.jobs.local``.
- nodewright on PostgreSQL, standalone: a worker process woken by LISTEN/NOTIFY.
- procrastinate (PostgreSQL only, bench-only dependency): a worker process (``app.run_worker``) with
  an ``async`` no-op task, its recommended shape for concurrency; its own LISTEN/NOTIFY.

"workers" is the concurrency of the one worker process (threads for nodewright, concurrent async
jobs for procrastinate).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nodewright.db import migrate
from nodewright.db.database import Database
from nodewright.db.engine import normalize_url
from nodewright.jobs.builtin import NOOP
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.worker import WorkerPool

SPACING_SECONDS = 0.02


@dataclass
class Result:
    engine: str
    database: str
    shape: str
    workers: int
    latency_jobs: int
    p50_ms: float
    p99_ms: float
    throughput_jobs: int
    jobs_per_second: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def wait_until(predicate: Callable[[], bool], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        time.sleep(0.05)


# ----------------------------------------------------------------------------- PostgreSQL databases


class PgDatabases:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = normalize_url(admin_url)
        self.engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self, label: str) -> str:
        name = f"nwbench_{label}_{os.getpid()}"
        with self.engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.engine.dispose()


# ----------------------------------------------------------------------------- nodewright


def _nodewright_worker_process(url: str, concurrency: int, ready: Any, stop: Any) -> None:
    pool = WorkerPool(url, concurrency=concurrency, mode="thread")
    pool.start()
    ready.set()
    stop.wait()
    pool.stop(timeout=10)


def _nw_counts(db: Database, ids: list[int]) -> int:
    """Succeeded bench jobs among ``ids`` (by kind too: the hourly prune job lands in the id range)."""
    with db.session() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM jobs"
                    " WHERE state = 'succeeded' AND kind = :kind AND id BETWEEN :a AND :b"
                ),
                {"kind": NOOP, "a": min(ids), "b": max(ids)},
            ).scalar_one()
        )


def bench_nodewright(
    url: str, label: str, workers: int, latency_jobs: int, throughput_jobs: int, *, standalone: bool
) -> Result:
    db = Database(url)
    migrate.upgrade(db.engine)
    in_process = not standalone
    pool: WorkerPool | None = None
    proc = None
    stop = None
    if in_process:
        pool = WorkerPool(db, concurrency=workers, mode="thread")
        pool.start()
    else:
        ctx = multiprocessing.get_context("spawn")
        ready, stop = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=_nodewright_worker_process, args=(url, workers, ready, stop))
        proc.start()
        ready.wait(60)
        time.sleep(0.5)  # let the LISTEN connection come up
    try:
        ids: list[int] = []
        for _ in range(latency_jobs):
            with db.session() as session:
                ids.append(enqueue(session, NOOP, {}).id)
            time.sleep(SPACING_SECONDS)
        wait_until(lambda: _nw_counts(db, ids) == len(ids))
        with db.session() as session:
            rows = session.execute(
                text("SELECT created_at, started_at FROM jobs WHERE kind = :kind AND id BETWEEN :a AND :b"),
                {"kind": NOOP, "a": min(ids), "b": max(ids)},
            ).all()
        latencies = [_ms(_dt(r[1]) - _dt(r[0])) for r in rows]

        with db.session() as session:
            batch = [enqueue(session, NOOP, {}).id for _ in range(throughput_jobs)]
        wait_until(lambda: _nw_counts(db, batch) == len(batch))
        with db.session() as session:
            first, last = session.execute(
                text(
                    "SELECT min(started_at), max(finished_at) FROM jobs"
                    " WHERE kind = :kind AND id BETWEEN :a AND :b"
                ),
                {"kind": NOOP, "a": min(batch), "b": max(batch)},
            ).one()
        span = (_dt(last) - _dt(first)).total_seconds()
    finally:
        if pool is not None:
            pool.stop(timeout=10)
        if proc is not None and stop is not None:
            stop.set()
            proc.join(30)
        db.dispose()
    return Result(
        "nodewright",
        label,
        "standalone" if standalone else "embedded",
        workers,
        latency_jobs,
        round(percentile(latencies, 0.5), 1),
        round(percentile(latencies, 0.99), 1),
        throughput_jobs,
        round(throughput_jobs / span, 1),
    )


def _dt(value: Any) -> Any:
    import datetime as dt

    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def _ms(delta: Any) -> float:
    return float(delta.total_seconds() * 1000.0)


# ----------------------------------------------------------------------------- procrastinate


def _procrastinate_app(url: str) -> Any:
    import procrastinate

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app


def _procrastinate_worker_process(url: str, concurrency: int) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    app = _procrastinate_app(url)
    app.run_worker(concurrency=concurrency, wait=True, install_signal_handlers=True)


def bench_procrastinate(url: str, workers: int, latency_jobs: int, throughput_jobs: int) -> Result:
    import signal

    app = _procrastinate_app(url)
    engine = create_engine(normalize_url(url))

    def succeeded(first_id: int) -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded' AND id >= :a"),
                    {"a": first_id},
                ).scalar_one()
            )

    with app.open():
        app.schema_manager.apply_schema()
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_procrastinate_worker_process, args=(url, workers))
        proc.start()
        time.sleep(2.0)  # worker start-up and LISTEN
        try:
            task = app.tasks["noop"]
            ids = []
            for _ in range(latency_jobs):
                ids.append(task.defer())
                time.sleep(SPACING_SECONDS)
            wait_until(lambda: succeeded(min(ids)) >= len(ids))
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT d.at, s.at FROM procrastinate_events d JOIN procrastinate_events s"
                        " ON s.job_id = d.job_id AND s.type = 'started'"
                        " WHERE d.type = 'deferred' AND d.job_id BETWEEN :a AND :b"
                    ),
                    {"a": min(ids), "b": max(ids)},
                ).all()
            latencies = [_ms(r[1] - r[0]) for r in rows]

            batch = task.batch_defer(*({} for _ in range(throughput_jobs)))
            wait_until(lambda: succeeded(min(batch)) >= len(batch))
            with engine.connect() as conn:
                first, last = conn.execute(
                    text(
                        "SELECT min(at) FILTER (WHERE type = 'started'),"
                        " max(at) FILTER (WHERE type = 'succeeded')"
                        " FROM procrastinate_events WHERE job_id BETWEEN :a AND :b"
                    ),
                    {"a": min(batch), "b": max(batch)},
                ).one()
            span = (last - first).total_seconds()
        finally:
            if proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
            proc.join(30)
            engine.dispose()
    return Result(
        "procrastinate",
        "postgresql",
        "standalone",
        workers,
        latency_jobs,
        round(percentile(latencies, 0.5), 1),
        round(percentile(latencies, 0.99), 1),
        throughput_jobs,
        round(throughput_jobs / span, 1),
    )


# ----------------------------------------------------------------------------- main


def markdown(results: list[Result]) -> str:
    lines = [
        "| engine | database | shape | workers | p50 enqueue-to-start (ms) | p99 (ms)"
        " | no-op throughput (jobs/s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.engine} | {r.database} | {r.shape} | {r.workers} | {r.p50_ms} | {r.p99_ms}"
            f" | {r.jobs_per_second} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres-url", default=os.environ.get("NODEWRIGHT_TEST_POSTGRES_URL"))
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--throughput-jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    options = parser.parse_args()

    results: list[Result] = []
    pg = PgDatabases(options.postgres_url) if options.postgres_url else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for workers in options.workers:
                for standalone in (False, True):
                    name = f"bench-{workers}-{'standalone' if standalone else 'embedded'}.db"
                    url = f"sqlite:///{Path(tmp) / name}"
                    results.append(
                        bench_nodewright(
                            url,
                            "sqlite",
                            workers,
                            options.latency_jobs,
                            options.throughput_jobs,
                            standalone=standalone,
                        )
                    )
                    print(results[-1], file=sys.stderr)
        if pg is not None:
            for workers in options.workers:
                url = pg.create(f"nw{workers}")
                results.append(
                    bench_nodewright(
                        url,
                        "postgresql",
                        workers,
                        options.latency_jobs,
                        options.throughput_jobs,
                        standalone=True,
                    )
                )
                print(results[-1], file=sys.stderr)
                url = pg.create(f"pc{workers}")
                results.append(
                    bench_procrastinate(url, workers, options.latency_jobs, options.throughput_jobs)
                )
                print(results[-1], file=sys.stderr)
    finally:
        if pg is not None:
            pg.drop_all()
    print(markdown(results))
    if options.json:
        options.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
