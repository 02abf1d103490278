"""Every failure as ``application/problem+json`` (RFC 9457) with a stable ``code``, never a traceback.

Handlers cover our own ``ProblemError``, request validation (malformed JSON included), unknown routes
and methods, oversize bodies and any unexpected exception.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from nodewright.security.redaction import redact

log = logging.getLogger(__name__)
PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    model_config = ConfigDict(json_schema_extra={"description": "RFC 9457 problem details"})

    type: str
    title: str
    status: int
    detail: str
    code: str
    retryable: bool = False
    hint: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        hint: str | None = None,
        retryable: bool = False,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.hint = hint
        self.retryable = retryable
        self.errors = errors
        self.headers = headers


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    hint: str | None = None,
    retryable: bool = False,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=f"urn:nodewright:problem:{code}",
        title=title,
        status=status,
        detail=redact(detail),
        code=code,
        retryable=retryable,
        hint=redact(hint) if hint else None,
        errors=errors,
    ).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problem_doc(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": _problem_content()}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc("Malformed request (for instance invalid JSON)"),
    401: problem_doc("Missing or invalid credentials"),
    403: problem_doc("The caller's role does not allow this"),
    404: problem_doc("No such resource"),
    413: problem_doc("Request body too large"),
    422: problem_doc("Invalid input; `errors` names each field"),
}


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        return ".".join(parts[1:]) or parts[0]
    return ".".join(parts)


def _validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return problem_response(
            400,
            "malformed_json",
            "Malformed JSON",
            "The request body is not valid JSON.",
            hint="Send a JSON object with Content-Type: application/json.",
        )
    fields = []
    for err in errors:
        name = _field_name(err.get("loc", ()))
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        elif err.get("type") == "missing":
            message = "field required"
        fields.append(FieldError(field=name or "body", message=message))
    names = ", ".join(sorted({f.field for f in fields}))
    return problem_response(
        422,
        "invalid_request",
        "Invalid request",
        f"Invalid value for: {names}.",
        errors=fields,
    )


def _problem_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        exc.code,
        exc.title,
        exc.detail,
        hint=exc.hint,
        retryable=exc.retryable,
        errors=exc.errors,
        headers=exc.headers,
    )


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("body_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    if exc.status_code == 404:
        detail = f"No route or resource at {request.url.path}."
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}."
    else:
        detail = str(exc.detail) if exc.detail else title
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return problem_response(exc.status_code, code, title, detail, headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route at this path accepts. Starlette's own ``Allow`` names only the
    first route that matched the path, but one path is often several routes (GET and POST
    /api/users)."""
    allowed = set()
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.add(method)
    return sorted(allowed)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


# A database that cannot be reached (PostgreSQL restarting, connections refused or terminated, a
# SQLite lock held past the busy timeout) is a temporary outage: 503 with Retry-After, not a 500.
DATABASE_RETRY_AFTER_SECONDS = 5


def _database_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.__class__.__name__)
    return problem_response(
        503,
        "database_unavailable",
        "Service unavailable",
        "The database cannot be reached right now.",
        hint="Retry after the time given in Retry-After.",
        retryable=True,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _unstorable_value_handler(request: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot hold (an id beyond its integer column, NUL in text on
    PostgreSQL) that no validation caught: still bad input, so a 400, not an internal error."""
    log.warning("unstorable value in %s %s: %s", request.method, request.url.path, exc.__class__.__name__)
    return problem_response(
        400,
        "invalid_value",
        "Invalid value",
        "A value in the request is out of range or holds characters that cannot be stored.",
    )


def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500,
        "internal_error",
        "Internal error",
        "An unexpected error occurred; it has been logged.",
        retryable=True,
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(DataError, _unstorable_value_handler)
    app.add_exception_handler(OverflowError, _unstorable_value_handler)
    app.add_exception_handler(OperationalError, _database_unavailable_handler)
    app.add_exception_handler(InterfaceError, _database_unavailable_handler)
    app.add_exception_handler(Exception, _unexpected_handler)


def not_found(what: str, ident: object) -> ProblemError:
    return ProblemError(404, "not_found", f"{what} not found", f"There is no {what.lower()} {ident}.")


def field_problem(field: str, message: str, *, status: int = 422) -> ProblemError:
    return ProblemError(
        status,
        "invalid_request",
        "Invalid request",
        f"Invalid value for: {field} ({message}).",
        errors=[FieldError(field=field, message=message)],
    )
