"""``/maintenance``: the pauses of watching's consequences. A viewer reads them; an operator starts
one (a node, or a label selector, with a reason and a duration) and ends one early.

Validation and writing are the API's (``nodewright.api.watching.MaintenanceCreateBody``) and the
watching service's (``nodewright.watching.maintenance``): this page only turns its form into them,
so a pause started here is exactly one started with ``POST /api/maintenance``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from nodewright.api.ids import MaintenanceId
from nodewright.api.routing import OneHopRoute
from nodewright.api.watching import MaintenanceCreateBody
from nodewright.context import AppContext
from nodewright.dashboard.health import selector_text
from nodewright.dashboard.rendering import (
    PageError,
    PostedForm,
    checked_form,
    render,
    require_page_role,
    require_user,
)
from nodewright.db.models import MaintenanceWindow, Node
from nodewright.db.types import utcnow
from nodewright.nodes import service as nodes_service
from nodewright.nodes.states import NodeStatus
from nodewright.security.roles import Role
from nodewright.watching import maintenance

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)
MAX_ID = 2**31 - 1
MAX_NODES = 5000  # the node choices and the "covers" column; a fleet is small
DEFAULT_MINUTES = 60
MAX_MINUTES = int(maintenance.MAX_DURATION.total_seconds() // 60)
FORM_FIELDS = ("node_id", "selector", "reason", "duration_minutes")


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


class FormError(ValueError):
    """Bad input on the form: the message starts with the form field's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_selector(text: str) -> dict[str, str] | None:
    """``key=value`` pairs separated by commas or whitespace; None for an empty field."""
    pairs = [p for p in text.replace(",", " ").split() if p]
    selector: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FormError("selector", f"{pair[:40]!r} must be key=value (several: separated by commas)")
        selector[key] = value
    return selector or None


def parse_form(fields: dict[str, str]) -> MaintenanceCreateBody:
    """The API's request body from the form, every error named by the form's field."""
    node_text = fields.get("node_id", "").strip()
    node_id: int | None = None
    if node_text:
        if not (node_text.isascii() and node_text.isdecimal()) or not 1 <= int(node_text) <= MAX_ID:
            raise FormError("node_id", "must be a node id (a whole number)")
        node_id = int(node_text)
    selector = parse_selector(fields.get("selector", ""))
    minutes_text = fields.get("duration_minutes", "").strip()
    if not (minutes_text.isascii() and minutes_text.isdecimal()) or not 1 <= int(minutes_text) <= MAX_MINUTES:
        raise FormError("duration_minutes", f"must be a whole number of minutes from 1 to {MAX_MINUTES}")
    try:
        return MaintenanceCreateBody(
            node_id=node_id,
            selector=selector,
            reason=fields.get("reason", ""),
            duration_seconds=int(minutes_text) * 60,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "form"
        field = "duration_minutes" if field == "duration_seconds" else field
        message = str(first["msg"]).removeprefix("Value error, ")
        raise FormError(field, message) from None


def _window_row(window: MaintenanceWindow, nodes: list[Node], now: dt.datetime) -> dict[str, Any]:
    covered = [n for n in nodes if maintenance.matches(window, n)]
    return {
        "id": window.id,
        "node_id": window.node_id,
        "selector": selector_text(window.selector) if window.selector else "",
        "reason": window.reason,
        "starts_at": window.starts_at,
        "ends_at": window.ends_at,
        "created_by": window.created_by,
        "active": window.starts_at <= now < window.ends_at,
        "covers": [{"id": n.id, "name": n.name} for n in covered],
    }


def _page(
    request: Request,
    *,
    show_all: bool = False,
    form: dict[str, str] | None = None,
    error: str | None = None,
    error_field: str | None = None,
    status_code: int = 200,
) -> Response:
    user = require_user(request)
    ctx = _ctx(request)
    now = utcnow()
    with ctx.database.session() as session:
        live = [s.value for s in NodeStatus if s is not NodeStatus.released]
        page = nodes_service.list_nodes(session, statuses=live, limit=MAX_NODES)
        nodes = sorted(page.items, key=lambda n: n.id)
        windows = maintenance.list_windows(session, active_only=not show_all)
        rows = [_window_row(w, nodes, now) for w in windows]
        choices = [{"id": n.id, "name": n.name, "status": n.status} for n in nodes]
    return render(
        request,
        "maintenance.html",
        status_code=status_code,
        user=user,
        windows=rows,
        show_all=show_all,
        nodes=choices,
        can_operate=user.can(Role.operator),
        form=form or {"duration_minutes": str(DEFAULT_MINUTES)},
        error=error,
        error_field=error_field,
        max_minutes=MAX_MINUTES,
    )


@router.get("/maintenance", response_class=HTMLResponse)
def maintenance_page(
    request: Request,
    all_: bool = Query(False, alias="all"),
    node: int | None = Query(None, ge=1, le=MAX_ID),
) -> Response:
    form = {"duration_minutes": str(DEFAULT_MINUTES), "node_id": str(node) if node else ""}
    return _page(request, show_all=all_, form=form)


@router.post("/maintenance", response_class=HTMLResponse)
def start_pause(request: Request, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.operator)
    fields = checked_form(form, user)
    kept = {k: fields.get(k, "") for k in FORM_FIELDS}
    try:
        body = parse_form(fields)
        request_ = maintenance.PauseRequest(
            reason=body.reason,
            ends_at=utcnow() + dt.timedelta(seconds=body.duration_seconds or 0),
            node_id=body.node_id,
            selector=body.selector,
        )
        with _ctx(request).database.session(write=True) as session:
            maintenance.create(session, request_, actor=user.actor)
    except FormError as exc:
        return _page(request, form=kept, error=f"Not started: {exc}", error_field=exc.field, status_code=422)
    except maintenance.MaintenanceError as exc:
        field = "duration_minutes" if exc.field == "ends_at" else exc.field
        return _page(
            request,
            form=kept,
            error=f"Not started: {field}: {exc.message}",
            error_field=field,
            status_code=exc.status,
        )
    return RedirectResponse("/maintenance", status_code=303)


@router.post("/maintenance/{maintenance_id}/end")
def end_pause(request: Request, maintenance_id: MaintenanceId, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.operator)
    checked_form(form, user)
    with _ctx(request).database.session(write=True) as session:
        window = maintenance.end(session, maintenance_id, actor=user.actor)
    if window is None:
        raise PageError(404, "Not found", f"There is no maintenance pause {maintenance_id}.")
    return RedirectResponse("/maintenance", status_code=303)
