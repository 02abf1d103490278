"""Job kinds that ship with the engine itself: a no-op (smoke tests, the benchmark) and the hourly
pruning of old finished jobs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from nodewright.config import load_settings
from nodewright.db.types import utcnow
from nodewright.jobs import service
from nodewright.jobs.context import JobContext
from nodewright.jobs.registry import job_handler, registry
from nodewright.security import audit

NOOP = "nodewright.noop"


@job_handler(NOOP, max_attempts=1)
def noop(ctx: JobContext) -> dict[str, Any] | None:
    """Does nothing; ``{"echo": ...}`` in the args comes back as the result."""
    if "echo" in ctx.args:
        return {"echo": ctx.args["echo"]}
    return None


PRUNE = "nodewright.prune_jobs"
PRUNE_INTERVAL_SECONDS = 3600.0


@job_handler(PRUNE, max_attempts=3)
def prune_jobs(ctx: JobContext) -> dict[str, Any]:
    """Delete finished jobs (with their steps and events) older than the retention period, so the
    job tables, periodic runs included, do not grow forever. Runs hourly as a periodic singleton."""
    days = float(ctx.args.get("retention_days") or load_settings().job_retention_days)
    cutoff = utcnow() - dt.timedelta(days=days)
    deleted = 0
    while True:
        with ctx.transaction() as session:
            batch = service.prune_finished(session, finished_before=cutoff, limit=500)
        deleted += batch
        ctx.check_canceled()
        if batch < 500:
            break
    if deleted:
        ctx.log(f"pruned {deleted} finished job(s) older than {days:g} days", deleted=deleted)
    return {"deleted": deleted, "retention_days": days}


registry.periodic(PRUNE, PRUNE_INTERVAL_SECONDS)


PRUNE_AUDIT = "nodewright.prune_audit"


@job_handler(PRUNE_AUDIT, max_attempts=3)
def prune_audit(ctx: JobContext) -> dict[str, Any]:
    """Delete audit rows older than NODEWRIGHT_AUDIT_RETENTION_DAYS, hourly like the jobs: the audit
    log records refusals too, so without a bound it grows with whatever the internet sends."""
    days = float(ctx.args.get("retention_days") or load_settings().audit_retention_days)
    cutoff = utcnow() - dt.timedelta(days=days)
    deleted = 0
    while True:
        with ctx.transaction() as session:
            batch = audit.prune(session, before=cutoff, limit=1000)
        deleted += batch
        ctx.check_canceled()
        if batch < 1000:
            break
    if deleted:
        ctx.log(f"pruned {deleted} audit row(s) older than {days:g} days", deleted=deleted)
    return {"deleted": deleted, "retention_days": days}


registry.periodic(PRUNE_AUDIT, PRUNE_INTERVAL_SECONDS)
