"""Job states and the transitions between them.

``retry_wait`` jobs are claimable as soon as their ``run_after`` passes (no promotion sweep): one
claim query covers both, and a retry starts with the same latency as a fresh job.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELING = "canceling"
    CANCELED = "canceled"


ALL_STATES: tuple[str, ...] = tuple(s.value for s in JobState)
# Waiting for a worker; claimable once run_after has passed.
CLAIMABLE: tuple[str, ...] = (JobState.QUEUED.value, JobState.RETRY_WAIT.value)
# A worker holds the lease; the partial unique index allows one such job per resource key.
HOLDING: tuple[str, ...] = (JobState.RUNNING.value, JobState.CANCELING.value)
# Still going to run; a dedup key is unique among these (matches uq_jobs_pending_dedup_key).
PENDING: tuple[str, ...] = (JobState.QUEUED.value, JobState.RUNNING.value, JobState.RETRY_WAIT.value)
TERMINAL: tuple[str, ...] = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELED.value)

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELED}),
    JobState.RETRY_WAIT: frozenset({JobState.RUNNING, JobState.CANCELED}),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.RETRY_WAIT,
            JobState.CANCELING,
            JobState.QUEUED,  # lease expired or handed back at shutdown
        }
    ),
    JobState.CANCELING: frozenset({JobState.CANCELED, JobState.SUCCEEDED, JobState.FAILED, JobState.QUEUED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELED: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return JobState(target) in TRANSITIONS[JobState(current)]


def is_terminal(state: str) -> bool:
    return state in TERMINAL
