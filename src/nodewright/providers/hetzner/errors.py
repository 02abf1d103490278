"""Hetzner answers -> the taxonomy: ONE table, read top to bottom, with a test per row per step.

The table is keyed by Hetzner's error ``code`` when the answer carries the JSON error envelope, and
by HTTP status when it does not (a load balancer's HTML page, an empty body). Two rules matter more
than the rest: an answer without the envelope is never read as "not found" (a proxy's 404 page says
nothing about our server), and a rate limit or a 5xx is never read as anything but transient.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from nodewright.providers.errors import ErrorCode, ProviderError


@dataclass(frozen=True)
class Rule:
    code: ErrorCode
    retryable: bool
    hint: str | None = None  # None: the taxonomy's default hint


# Hetzner error code (JSON envelope) -> taxonomy. Sources: the API's error table, the operation
# tables for servers, and how hcloud-python/-go, Terraform and CAPH treat each code.
CODE_TABLE: dict[str, Rule] = {
    "unauthorized": Rule(ErrorCode.credentials_invalid, False),
    "token_readonly": Rule(ErrorCode.permission_denied, False),
    "forbidden": Rule(
        ErrorCode.permission_denied, False, "The token lacks a permission: create a Read & Write token."
    ),
    "maintenance": Rule(ErrorCode.provider_unavailable, True),
    "resource_limit_exceeded": Rule(ErrorCode.quota_exceeded, False),
    "not_found": Rule(ErrorCode.not_found, False),
    "uniqueness_error": Rule(ErrorCode.name_conflict, False),
    "conflict": Rule(ErrorCode.provider_busy, True),
    "locked": Rule(ErrorCode.provider_busy, True),
    "service_error": Rule(ErrorCode.provider_busy, True),
    "resource_unavailable": Rule(ErrorCode.capacity_unavailable, False),
    "placement_error": Rule(ErrorCode.capacity_unavailable, False),
    "invalid_input": Rule(ErrorCode.invalid_combination, False),
    "invalid_server_type": Rule(ErrorCode.invalid_combination, False),
    "json_error": Rule(ErrorCode.provider_error, False),
    "method_not_allowed": Rule(ErrorCode.provider_error, False),
    "unsupported_error": Rule(ErrorCode.provider_error, False),
    "deprecated_api_endpoint": Rule(
        ErrorCode.provider_error, False, "Hetzner removed this API: upgrade nodewright."
    ),
    "protected": Rule(
        ErrorCode.provider_error, False, "The server is protected at Hetzner: remove its protection."
    ),
    "rate_limit_exceeded": Rule(ErrorCode.rate_limited, True),
    "limit_reached": Rule(ErrorCode.rate_limited, True),
    "server_error": Rule(ErrorCode.provider_unavailable, True),
    "bad_gateway": Rule(ErrorCode.provider_unavailable, True),
    "unavailable": Rule(ErrorCode.provider_unavailable, True),
    "timeout": Rule(ErrorCode.provider_unavailable, True),
    "robot_unavailable": Rule(ErrorCode.provider_unavailable, True),
    "unknown_error": Rule(ErrorCode.provider_unavailable, True),
}

# HTTP status -> taxonomy, for answers without an envelope and for envelope codes not in the table.
# 404 without an envelope is a proxy's page, not Hetzner saying "no such server": transient.
STATUS_TABLE: dict[int, Rule] = {
    401: Rule(ErrorCode.credentials_invalid, False),
    403: Rule(ErrorCode.permission_denied, False),
    404: Rule(ErrorCode.provider_unavailable, True),
    409: Rule(ErrorCode.provider_busy, True),
    423: Rule(ErrorCode.provider_busy, True),
    429: Rule(ErrorCode.rate_limited, True),
}
# Any 5xx (and a 2xx whose body is not JSON) is the provider being unwell: retry with backoff.
SERVER_SIDE = Rule(ErrorCode.provider_unavailable, True)
# Anything else: a request the provider refused for a reason we do not know. Not retried blind.
OTHER = Rule(ErrorCode.provider_error, False)
# The network failed before any answer (refused, reset, DNS, client timeout).
NETWORK = Rule(ErrorCode.provider_unavailable, True)
# An action that ended in status "error".
ACTION_ERROR = Rule(ErrorCode.action_failed, True)


def rule_for(code: str | int) -> Rule:
    """The rule for a Hetzner error code (str, from the envelope) or a bare HTTP status (int)."""
    if isinstance(code, str):
        if code in CODE_TABLE:
            return CODE_TABLE[code]
        return OTHER
    if code in STATUS_TABLE:
        return STATUS_TABLE[code]
    if code >= 500 or 200 <= code < 300:
        return SERVER_SIDE
    return OTHER


def rule_for_status_fallback(code: str, status: int | None) -> Rule:
    """An envelope code we do not know: decide by its HTTP status instead (5xx stays transient)."""
    if code in CODE_TABLE or status is None:
        return rule_for(code)
    return rule_for(status)


def retry_after_from_reset(reset: str | None, now: dt.datetime) -> float | None:
    """Seconds until ``RateLimit-Reset`` (epoch seconds) but no more than the time for one request
    to come back (the bucket refills gradually; waiting for a full bucket would waste time)."""
    if not reset:
        return None
    try:
        reset_at = float(reset)
    except ValueError:
        return None
    return max(0.0, reset_at - now.timestamp())


def map_api_error(
    code: str | int,
    message: str,
    *,
    step: str,
    http_status: int | None,
    correlation_id: str | None,
    details: Any = None,
    headers: dict[str, str] | None = None,
    now: dt.datetime | None = None,
) -> ProviderError:
    """Build the ProviderError for one failed call of lifecycle ``step`` (create, poll, fetch, ...)."""
    rule = rule_for_status_fallback(code, http_status) if isinstance(code, str) else rule_for(code)
    now = now or dt.datetime.now(dt.UTC)
    retry_after = None
    hint = rule.hint
    if rule.code is ErrorCode.rate_limited:
        headers = headers or {}
        retry_after = _seconds_for_one_request(headers, now)
        reset = headers.get("ratelimit-reset")
        try:
            until = dt.datetime.fromtimestamp(float(reset), dt.UTC).strftime("%H:%M UTC") if reset else None
        except (ValueError, OverflowError, OSError):
            until = None  # a header that is no time (a proxy's, a bug) must not hide the rate limit
        if until is not None:
            hint = f"Rate limited until {until}; nodewright waits and retries by itself."
    field = None
    if isinstance(details, dict) and details.get("fields"):
        names = [str(f.get("name")) for f in details["fields"] if isinstance(f, dict) and f.get("name")]
        field = ",".join(names) or None
    if isinstance(code, int):
        text = f"Hetzner answered HTTP {code} without an API error during {step}"
    else:
        text = f"Hetzner refused {step}: {message} ({code})"
    if field:
        text += f" [field: {field}]"
    return ProviderError(
        rule.code,
        text,
        retryable=rule.retryable,
        hint=hint,
        retry_after=retry_after,
        field=field,
        provider_code=str(code),
        http_status=http_status,
        correlation_id=correlation_id,
    )


def _seconds_for_one_request(headers: dict[str, str], now: dt.datetime) -> float | None:
    """When the bucket will hold one request again: (reset - now) / (limit - remaining) per request."""
    try:
        reset = float(headers["ratelimit-reset"])
        limit = int(headers["ratelimit-limit"])
        remaining = int(headers.get("ratelimit-remaining", "0"))
    except (KeyError, ValueError):
        return None
    if not math.isfinite(reset):
        return None
    until_full = max(0.0, reset - now.timestamp())
    missing = max(1, limit - remaining)
    # At most an hour: Hetzner's bucket refills completely within one; a far-off reset is bogus.
    return min(3600.0, max(1.0, until_full / missing))


def map_network_error(exc: BaseException, *, step: str) -> ProviderError:
    return ProviderError(
        NETWORK.code,
        f"Hetzner could not be reached during {step}: {type(exc).__name__}",
        retryable=NETWORK.retryable,
        hint=NETWORK.hint,
    )


def map_action_error(
    action_id: int, command: str | None, error: dict[str, Any] | None, *, step: str
) -> ProviderError:
    code = (error or {}).get("code") or "unknown_error"
    message = (error or {}).get("message") or "the action failed"
    return ProviderError(
        ACTION_ERROR.code,
        f"Hetzner action {command or 'action'} {action_id} failed during {step}: {message} ({code})",
        retryable=ACTION_ERROR.retryable,
        hint=ACTION_ERROR.hint,
        provider_code=str(code),
    )
