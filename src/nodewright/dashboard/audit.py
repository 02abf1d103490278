"""``/audit`` (admins): the audit log, newest first, with filters and paging."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.rendering import render, require_page_role, require_user
from nodewright.security import audit
from nodewright.security.roles import Role

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)
PAGE = 100
FILTERS = ("action", "actor", "target", "outcome")


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request) -> Response:
    user = require_user(request)
    require_page_role(user, Role.admin)
    ctx: AppContext = request.app.state.ctx
    query = request.query_params
    filters = {key: query[key].strip()[:200] for key in FILTERS if query.get(key, "").strip()}
    before = query.get("before", "")
    before_id = int(before) if before.isascii() and before.isdecimal() and 0 < int(before) < 2**31 else None
    with ctx.database.session() as session:
        rows = audit.list_events(
            session, limit=PAGE, before_id=before_id, action=filters.get("action"),
            actor=filters.get("actor"), target=filters.get("target"), outcome=filters.get("outcome"),
        )  # fmt: skip
        events = [
            {"id": r.id, "at": r.at, "actor": r.actor, "action": r.action, "target": r.target,
             "outcome": r.outcome, "detail": r.detail, "count": r.count}
            for r in rows
        ]  # fmt: skip
    more = events[-1]["id"] if len(events) == PAGE else None
    return render(request, "audit.html", user=user, events=events, filters=filters, more=more,
                  now=dt.datetime.now(dt.UTC))  # fmt: skip
