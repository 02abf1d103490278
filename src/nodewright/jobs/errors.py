"""Errors a handler raises, and the exceptions the engine uses to stop a handler.

A ``JobError`` carries a taxonomy code (DESIGN.md section 4) that operators see, whether a retry can
help, an optional earliest retry time (``retry_after`` seconds, e.g. from a rate limit reset) and a
hint. Anything else a handler raises becomes ``internal_error`` with a generic message: the
traceback goes to the (redacted) server log, never to the API.
"""

from __future__ import annotations

from typing import Any

INTERNAL_ERROR = "internal_error"
WORKER_LOST = "worker_lost"
UNKNOWN_KIND = "unknown_kind"
DEADLINE_EXCEEDED = "deadline_exceeded"
CANCELED = "canceled"

GENERIC_INTERNAL_MESSAGE = "the job failed unexpectedly; details are in the server log"


class JobError(Exception):
    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        # str(): the message is stored as JSON text; an exception object would not serialize (and
        # would escape redaction, which scrubs strings).
        super().__init__(str(message))
        self.code = code
        self.message = str(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.hint = hint

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "hint": self.hint,
            "retry_after": self.retry_after,
        }

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(code={self.code!r}, message={self.message!r}, retryable={self.retryable!r})"


class RetryableError(JobError):
    """A transient failure: the job goes to ``retry_wait`` while attempts remain."""

    def __init__(
        self, code: str, message: str, *, retry_after: float | None = None, hint: str | None = None
    ) -> None:
        super().__init__(code, message, retryable=True, retry_after=retry_after, hint=hint)


class TerminalError(JobError):
    """A failure no retry can fix: the job fails at once with its code and hint."""

    def __init__(self, code: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(code, message, retryable=False, hint=hint)


class JobCanceled(Exception):
    """Raised inside a handler by ``ctx.check_canceled()`` once a cancel was requested."""


class LeaseLost(Exception):
    """The job is no longer ours (lease expired and requeued, or handed back): stop touching it."""


def internal_error() -> JobError:
    return JobError(INTERNAL_ERROR, GENERIC_INTERNAL_MESSAGE, retryable=True)
