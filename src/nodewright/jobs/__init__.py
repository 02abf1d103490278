"""Durable job engine on the application's own database (no broker).

Infrastructure mutations run only as jobs: enqueued in the caller's transaction, claimed with
``FOR UPDATE SKIP LOCKED`` (PostgreSQL) or ``BEGIN IMMEDIATE`` (SQLite), one running job per resource
enforced by a partial unique index, leases renewed by heartbeat, every write fenced by
``(lease_owner, attempt)``, and step outputs checkpointed so a requeued job resumes where it stopped.
"""

from nodewright.jobs.context import JobContext
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.errors import JobCanceled, JobError, LeaseLost, RetryableError, TerminalError
from nodewright.jobs.registry import Registry, job_handler, registry
from nodewright.jobs.states import JobState

__all__ = [
    "JobCanceled",
    "JobContext",
    "JobError",
    "JobState",
    "LeaseLost",
    "Registry",
    "RetryableError",
    "TerminalError",
    "enqueue",
    "job_handler",
    "registry",
]
