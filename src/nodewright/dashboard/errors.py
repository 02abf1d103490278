"""Errors a browser asked for (``Accept: text/html``) as a page in the dashboard's layout.

The API's problem handlers stay the single source of what went wrong (status, title, detail, all
redacted): for a browser the problem they built is rendered as the error page, with the same
status and headers (``Allow``, ``Retry-After``). API clients (``/api/...``, or no HTML in their
``Accept``) keep ``application/problem+json``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nodewright.api.problems import ProblemError
from nodewright.dashboard.rendering import PageUser, current_user, render

log = logging.getLogger(__name__)
MACHINE_PATHS = ("/api/", "/healthz", "/readyz", "/metrics", "/static/")
KEPT_HEADERS = ("allow", "retry-after")
HANDLED = (
    ProblemError,
    RequestValidationError,
    StarletteHTTPException,
    DataError,
    OverflowError,
    OperationalError,
    InterfaceError,
    Exception,
)

Handler = Callable[[Request, Exception], Any]


def wants_html(request: Request) -> bool:
    """A browser navigating to a page: HTML accepted, and preferred over JSON."""
    if request.url.path.startswith(MACHINE_PATHS):
        return False
    accept = request.headers.get("accept", "").lower()
    html = accept.find("text/html")
    if html == -1:
        return False
    json_at = accept.find("json")
    return json_at == -1 or html < json_at


def _user(request: Request) -> PageUser | None:
    try:
        return current_user(request)
    except Exception:  # the database itself may be what failed: the page shows without a user
        return None


def _as_page(original: Handler) -> Handler:
    def handler(request: Request, exc: Exception) -> Response:
        problem: Response = original(request, exc)
        if not wants_html(request):
            return problem
        try:
            body = json.loads(bytes(problem.body))
        except ValueError:
            body = {}
        title = str(body.get("title") or "Error")
        message = str(body.get("detail") or "Something went wrong.")
        hint = body.get("hint")
        page = render(
            request,
            "error.html",
            status_code=problem.status_code,
            title=title,
            message=message,
            hint=str(hint) if hint else None,
            errors=body.get("errors") or [],
            user=_user(request),
        )
        for name in KEPT_HEADERS:
            if name in problem.headers:
                page.headers[name] = problem.headers[name]
        return page

    return handler


def install_html_errors(app: FastAPI) -> None:
    """Wrap the problem handlers installed before (``install_problem_handlers``)."""
    for kind in HANDLED:
        original = app.exception_handlers.get(kind)
        if original is not None:
            app.add_exception_handler(kind, _as_page(original))
