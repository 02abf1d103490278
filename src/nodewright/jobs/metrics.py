"""Prometheus metrics of the job engine, on the default registry.

Collectors are created once per process (module import) and looked up again if another copy of this
module somehow registered them first, so creating many apps in one test process never raises
"Duplicated timeseries".
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from sqlalchemy import func, select

from nodewright.db.database import Database
from nodewright.db.models.jobs import Job
from nodewright.jobs.states import ALL_STATES


def _collector(cls: Any, name: str, documentation: str, labels: tuple[str, ...], **kw: Any) -> Any:
    existing = getattr(REGISTRY, "_names_to_collectors", {}).get(name)
    if existing is not None:
        return existing
    return cls(name, documentation, labels, **kw)


QUEUE_DEPTH: Gauge = _collector(Gauge, "nodewright_jobs", "Jobs by state (refreshed on scrape).", ("state",))
CLAIM_LATENCY: Histogram = _collector(
    Histogram,
    "nodewright_job_claim_latency_seconds",
    "Time from a job becoming runnable to a worker starting it.",
    ("kind",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RUN_TIME: Histogram = _collector(
    Histogram,
    "nodewright_job_run_seconds",
    "Run time of one job attempt.",
    ("kind", "outcome"),
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600),
)
FAILURES: Counter = _collector(
    Counter, "nodewright_job_failures", "Failed job attempts by kind and error code.", ("kind", "code")
)


def refresh_queue_depth(database: Database) -> None:
    """Set the per-state gauge from the database; call right before rendering ``/metrics``."""
    with database.session() as session:
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
    counts = dict.fromkeys(ALL_STATES, 0)
    counts.update({str(state): int(count) for state, count in rows})
    for state, count in counts.items():
        QUEUE_DEPTH.labels(state=state).set(count)
