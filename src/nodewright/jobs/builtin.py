"""Job kinds that ship with the engine itself: a no-op, for smoke tests and the benchmark."""

from __future__ import annotations

from typing import Any

from nodewright.jobs.context import JobContext
from nodewright.jobs.registry import job_handler

NOOP = "nodewright.noop"


@job_handler(NOOP, max_attempts=1)
def noop(ctx: JobContext) -> dict[str, Any] | None:
    """Does nothing; ``{"echo": ...}`` in the args comes back as the result."""
    if "echo" in ctx.args:
        return {"echo": ctx.args["echo"]}
    return None
