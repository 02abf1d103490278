"""A chaos run against real worker processes, judged from outside the engine.

Workers (thread and process mode) drain ``test.chaos`` jobs, whose steps append their side effects
to an external ledger file, while the harness kills workers with SIGKILL (and starts replacements)
and freezes others with SIGSTOP for under a third of a lease. Afterwards the ledger, the kill log and
the database are checked for:

- lost: a job that did not end ``succeeded``;
- finished twice: a job with more than one ``succeeded`` event;
- overlaps: two side effects of one resource key (different jobs, or two attempts of one job) whose
  intervals intersect; an effect cut short by a kill ends at the kill;
- re-runs after a checkpoint: a step started by an attempt later than the one that checkpointed it;
- live attempts requeued: a lease requeue (or ``worker_lost``) of an attempt whose worker was never
  killed: it was alive, and renewing, the whole time (a freeze is shorter than a third of a lease).

Used by ``tests/integration/test_jobs_chaos.py`` (bounded) and ``bench/jobs_chaos.py`` (longer).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from nodewright.db.database import Database
from nodewright.jobs.enqueue import enqueue
from tests.support.job_handlers import REGISTRY, create_test_tables
from tests.support.jobs import WorkerProcesses


@dataclass
class ChaosReport:
    jobs: int = 0
    workers_started: int = 0
    kills: int = 0
    freezes: int = 0
    requeues: int = 0
    attempts: int = 0
    effects: int = 0
    lost: list[int] = field(default_factory=list)
    finished_twice: list[int] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    reruns_after_checkpoint: list[str] = field(default_factory=list)
    live_requeued: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.finished_twice
            or self.overlaps
            or self.reruns_after_checkpoint
            or self.live_requeued
        )

    def summary(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "workers_started": self.workers_started,
            "kill -9": self.kills,
            "SIGSTOP": self.freezes,
            "requeues": self.requeues,
            "attempts": self.attempts,
            "side effects": self.effects,
            "lost": len(self.lost),
            "finished twice": len(self.finished_twice),
            "overlaps per resource key": len(self.overlaps),
            "steps re-run after checkpoint": len(self.reruns_after_checkpoint),
            "live attempts requeued": len(self.live_requeued),
        }


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    mode: str
    killed_at: float | None = None


def run_chaos(
    db: Database,
    db_url: str,
    work_dir: Path,
    *,
    seconds: float,
    jobs: int,
    workers: int = 3,
    resources: int = 5,
    lease: float = 2.0,
    seed: int = 7,
) -> ChaosReport:
    rng = random.Random(seed)
    create_test_tables(db)
    ledger = work_dir / "ledger.jsonl"
    report = ChaosReport(jobs=jobs)
    live: list[_Worker] = []
    everyone: list[_Worker] = []
    ids: list[int] = []
    pool = WorkerProcesses(db_url, work_dir)

    def start(mode: str) -> None:
        worker = _Worker(pool.start(concurrency=2, lease=lease, mode=mode, poll=0.1), mode)
        live.append(worker)
        everyone.append(worker)
        report.workers_started += 1

    def enqueue_some(count: int) -> None:
        with db.session(write=True) as session:
            for _ in range(count):
                n = len(ids)
                ids.append(
                    enqueue(
                        session,
                        "test.chaos",
                        {"ledger": str(ledger), "hold": rng.uniform(0.02, 0.12)},
                        resource_key=f"res:{n % resources}",
                        registry=REGISTRY,
                    ).id
                )

    try:
        for index in range(workers):
            start("process" if index == 0 else "thread")
        deadline = time.monotonic() + seconds
        per_tick = max(1, jobs // max(1, int(seconds / 0.5)))
        while time.monotonic() < deadline:
            if len(ids) < jobs:
                enqueue_some(min(per_tick, jobs - len(ids)))
            time.sleep(rng.uniform(0.3, 0.7))
            victim = rng.choice(live)
            if rng.random() < 0.5:
                victim.proc.send_signal(signal.SIGKILL)
                victim.killed_at = time.time()
                victim.proc.wait(10)
                live.remove(victim)
                report.kills += 1
                start(victim.mode)
            else:
                victim.proc.send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(0.1, lease * 0.3))  # well within the lease: it stays alive
                victim.proc.send_signal(signal.SIGCONT)
                report.freezes += 1
        if len(ids) < jobs:
            enqueue_some(jobs - len(ids))
        _wait_for_all(db, ids, timeout=max(120.0, seconds * 2))
    finally:
        pool.close()
    _judge(db, ids, ledger, everyone, report)
    return report


def _wait_for_all(db: Database, ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            pending = session.execute(
                text(
                    "SELECT count(*) FROM jobs WHERE kind = 'test.chaos'"
                    " AND state NOT IN ('succeeded', 'failed', 'canceled')"
                )
            ).scalar_one()
        if pending == 0:
            return
        time.sleep(0.2)


def _judge(db: Database, ids: list[int], ledger: Path, workers: list[_Worker], report: ChaosReport) -> None:
    killed = {w.proc.pid: w.killed_at for w in workers if w.killed_at is not None}
    with db.session() as session:
        states = dict(session.execute(text("SELECT id, state FROM jobs WHERE kind = 'test.chaos'")).all())
        succeeded_events = defaultdict(int)
        requeues: list[tuple[int, str, str]] = []
        for job_id, message, data in session.execute(
            text(
                "SELECT e.job_id, e.message, e.data FROM job_events e JOIN jobs j ON j.id = e.job_id"
                " WHERE j.kind = 'test.chaos' AND e.type = 'state' ORDER BY e.job_id, e.seq"
            )
        ):
            state = (data if isinstance(data, dict) else json.loads(data or "{}")).get("state")
            if state == "succeeded":
                succeeded_events[job_id] += 1
            if "expired" in message or "worker_lost" in message:
                requeues.append((job_id, message, state))
        checkpoints = {
            (job_id, name): attempt
            for job_id, name, attempt in session.execute(text("SELECT job_id, name, attempt FROM job_steps"))
        }
        report.attempts = int(
            session.execute(
                text("SELECT coalesce(sum(attempt), 0) FROM jobs WHERE kind = 'test.chaos'")
            ).scalar_one()
        )
    report.lost = [job_id for job_id in ids if states.get(job_id) != "succeeded"]
    report.finished_twice = [job_id for job_id, count in succeeded_events.items() if count > 1]
    report.requeues = len(requeues)
    for job_id, message, _state in requeues:
        # "lease of attempt N expired (worker host:pid:tag); requeued" names the owner.
        owner_pid = _owner_pid(message)
        if owner_pid is None or owner_pid not in killed:
            report.live_requeued.append(f"job {job_id}: {message}")

    entries = [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []
    report.effects = sum(1 for e in entries if e["event"] == "start")
    intervals: dict[tuple[int, str, int], list[float]] = {}
    resource_of: dict[tuple[int, str, int], str] = {}
    for entry in entries:
        key = (entry["job"], entry["step"], entry["attempt"])
        resource_of[key] = entry["resource"]
        worker_pid = entry["pid"] if entry["pid"] in killed else entry["ppid"]
        if entry["event"] == "start":
            # Until its end line, or until its worker was killed (a process-mode child dies with it).
            intervals[key] = [entry["t"], killed.get(worker_pid) or killed.get(entry["pid"]) or float("inf")]
        elif key in intervals:
            intervals[key][1] = entry["t"]
        checkpoint = checkpoints.get((entry["job"], entry["step"]))
        if entry["event"] == "start" and checkpoint is not None and entry["attempt"] > checkpoint:
            report.reruns_after_checkpoint.append(
                f"job {entry['job']} step {entry['step']} attempt {entry['attempt']}"
            )
    by_resource: dict[str, list[tuple[float, float, tuple[int, str, int]]]] = defaultdict(list)
    for key, (t0, t1) in intervals.items():
        by_resource[resource_of[key]].append((t0, t1, key))
    for resource, spans in by_resource.items():
        spans.sort()
        reach: tuple[float, float, tuple[int, str, int]] | None = None  # the span ending last so far
        for span in spans:
            if reach is not None and span[0] < reach[1]:
                report.overlaps.append(
                    f"{resource}: {reach[2]} until {reach[1]:.3f} and {span[2]} from {span[0]:.3f}"
                )
            if reach is None or span[1] > reach[1]:
                reach = span


def _owner_pid(message: str) -> int | None:
    if "(worker " not in message:
        return None
    owner = message.split("(worker ", 1)[1].split(")", 1)[0]
    parts = owner.split(":")
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return None
