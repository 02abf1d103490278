"""The API's error envelope and the HTTP status that belongs to each error code.

Clients branch on ``error.code`` (and hcloud-go also on the status), so the pairing must match the
real API's table exactly.
"""

from __future__ import annotations

from typing import Any

STATUS_BY_CODE: dict[str, int] = {
    "json_error": 400,
    "unauthorized": 401,
    "token_readonly": 401,
    "forbidden": 403,
    "maintenance": 403,
    "resource_limit_exceeded": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "uniqueness_error": 409,
    "conflict": 409,
    "deprecated_api_endpoint": 410,
    "resource_unavailable": 412,
    "primary_ip_version_mismatch": 412,
    "invalid_input": 422,
    "service_error": 422,
    "unsupported_error": 422,
    "placement_error": 422,
    "server_not_stopped": 422,
    "invalid_server_type": 422,
    "locked": 423,
    "protected": 423,
    "rate_limit_exceeded": 429,
    "server_error": 500,
    "unknown_error": 500,
    "bad_gateway": 502,
    "unavailable": 503,
    "timeout": 504,
}

DEFAULT_MESSAGES: dict[str, str] = {
    "json_error": "invalid JSON",
    "unauthorized": "unable to authenticate",
    "token_readonly": "token is read-only",
    "forbidden": "insufficient permissions for this request",
    "maintenance": "cannot perform operation due to maintenance",
    "resource_limit_exceeded": "project limit exceeded",
    "not_found": "not found",
    "method_not_allowed": "method not allowed",
    "uniqueness_error": "one or more fields must be unique",
    "conflict": "resource has changed during the request, please retry",
    "deprecated_api_endpoint": "this endpoint is deprecated",
    "resource_unavailable": "error during placement",
    "invalid_input": "invalid input",
    "service_error": "service error",
    "unsupported_error": "action is not supported",
    "placement_error": "error during placement",
    "locked": "cannot perform operation because server is locked",
    "protected": "server is protected",
    "rate_limit_exceeded": "limit of 3600 requests per hour reached",
    "server_error": "internal server error",
    "unknown_error": "Unknown Error",
    "bad_gateway": "bad gateway",
    "unavailable": "service unavailable",
    "timeout": "request timeout",
}


def status_for(code: str) -> int:
    """Unknown codes are server-side surprises, which the real API reports as 500."""
    return STATUS_BY_CODE.get(code, 500)


class ApiError(Exception):
    """Raised anywhere in request handling; the app turns it into the error envelope."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.message = message if message is not None else DEFAULT_MESSAGES.get(code, code)
        self.details = details
        self.status = status if status is not None else status_for(code)
        super().__init__(f"{self.message} ({self.code})")

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def invalid_input(fields: dict[str, list[str]], message: str = "invalid input in fields") -> ApiError:
    """``details.fields`` is what clients show to humans for validation failures."""
    names = ", ".join(fields)
    return ApiError(
        "invalid_input",
        f"{message} '{names}'" if names else message,
        {"fields": [{"name": name, "messages": msgs} for name, msgs in fields.items()]},
    )


def not_found(what: str = "") -> ApiError:
    return ApiError("not_found", f"{what} not found" if what else "not found")
