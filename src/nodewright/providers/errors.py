"""The provider-agnostic error taxonomy (DESIGN.md section 4) and the error that carries it.

Every adapter turns whatever its provider answers into a ``ProviderError`` with one of these stable
codes, so that nodes/, jobs/, the API and the dashboard never see a provider's own vocabulary. A job
handler turns it into a ``JobError`` (``to_job_error``), which keeps the retry decision and the
earliest retry time (``retry_after``, from the provider's rate-limit reset) with it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from nodewright.jobs.errors import JobError
from nodewright.security.text import clean_line


class ErrorCode(StrEnum):
    credentials_invalid = "credentials_invalid"
    permission_denied = "permission_denied"
    rate_limited = "rate_limited"
    provider_unavailable = "provider_unavailable"
    provider_busy = "provider_busy"
    capacity_unavailable = "capacity_unavailable"
    invalid_combination = "invalid_combination"
    quota_exceeded = "quota_exceeded"
    name_conflict = "name_conflict"
    action_failed = "action_failed"
    # The thing asked for does not exist. Only an answer that says so in the provider's own words
    # ever becomes this code: a rate limit, a 5xx or a proxy's HTML 404 never does.
    not_found = "not_found"
    # The provider refused the request in a way that no operator action in nodewright explains
    # (malformed request, removed endpoint): a bug or an API change, reported as it came.
    provider_error = "provider_error"
    deadline_exceeded = "deadline_exceeded"


# Default operator hints per code; a mapping rule or the raising code may give a sharper one.
DEFAULT_HINTS: dict[ErrorCode, str | None] = {
    ErrorCode.credentials_invalid: "Token rejected: paste a new token.",
    ErrorCode.permission_denied: "Read-only token: create a Read & Write token.",
    ErrorCode.rate_limited: "Wait for the provider's rate limit to reset; nodewright retries by itself.",
    ErrorCode.provider_unavailable: None,
    ErrorCode.provider_busy: None,
    ErrorCode.capacity_unavailable: "Pick another location or server type.",
    ErrorCode.invalid_combination: "Pick a location, server type and image from the catalog.",
    ErrorCode.quota_exceeded: "Raise the project's server limit at the provider, or release a node.",
    ErrorCode.name_conflict: "A server not made by nodewright has this name: choose another name.",
    ErrorCode.action_failed: "See the provider's message; the failed server was cleaned up.",
    ErrorCode.not_found: None,
    ErrorCode.provider_error: "The provider refused the request unexpectedly; see its message.",
    ErrorCode.deadline_exceeded: "The provider did not finish in time; retry the node.",
}


class ProviderError(Exception):
    """A provider failure in taxonomy terms. The message is safe to show (never a token)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retryable: bool,
        hint: str | None = None,
        retry_after: float | None = None,
        field: str | None = None,
        provider_code: str | None = None,
        http_status: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        # One line, control characters shown escaped: the message is often the provider's own text,
        # and it reaches the node's error, the connection's status, the job log and the CLI.
        message = clean_line(str(message))
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.hint = clean_line(hint) if hint is not None else DEFAULT_HINTS.get(code)
        self.retry_after = retry_after
        self.field = field
        self.provider_code = provider_code
        self.http_status = http_status
        self.correlation_id = correlation_id

    def to_job_error(self) -> JobError:
        return JobError(
            self.code.value,
            self.message,
            retryable=self.retryable,
            retry_after=self.retry_after,
            hint=self.hint,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "message": self.message,
            "retryable": self.retryable,
            "hint": self.hint,
            "retry_after": self.retry_after,
            "field": self.field,
            "provider_code": self.provider_code,
            "http_status": self.http_status,
            "correlation_id": self.correlation_id,
        }

    def __repr__(self) -> str:
        return (
            f"ProviderError(code={self.code.value!r}, retryable={self.retryable!r}, message={self.message!r})"
        )
