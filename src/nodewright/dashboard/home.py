"""The landing page and the admin's API-token page."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from nodewright.api.ids import TokenId
from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.health import badge
from nodewright.dashboard.providers import BADGES
from nodewright.dashboard.rendering import (
    PageError,
    PostedForm,
    checked_form,
    render,
    require_page_role,
    require_user,
)
from nodewright.db.database import Database
from nodewright.nodes import service as nodes_service
from nodewright.nodes.states import NodeStatus
from nodewright.providers import connections
from nodewright.security import accounts, api_tokens
from nodewright.security.roles import Role
from nodewright.watching import service as watch_service

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ATTENTION_LIMIT = 20
NODES_LIMIT = 5000


def _overview(database: Database, session: Session) -> dict[str, Any]:
    """The fleet at a glance: nodes by status, what they cost, the ones that need a look, providers."""
    fleet = nodes_service.fleet_summary(session)
    live = nodes_service.list_nodes(
        session, exclude_statuses=[NodeStatus.released.value], limit=NODES_LIMIT
    ).items
    views = watch_service.health_of(session, live)
    attention = [
        {
            "id": n.id,
            "name": n.name,
            "status": n.status,
            "badge": badge(n.status, views[n.id]),
            "error": n.error_code,
        }
        for n in live
        if n.status in (NodeStatus.failed.value, NodeStatus.lost.value)
        or views[n.id].health in ("failing", "degraded")
    ][:ATTENTION_LIMIT]
    providers = [
        {
            "id": p.id,
            "name": p.name,
            "status": p.status,
            "badge": BADGES.get(p.status, "muted"),
            "message": connections.status_message(p),
            "checked": p.last_checked_at,
        }
        for p in connections.list_connections(database)
    ]
    return {"fleet": fleet, "attention": attention, "providers": providers}


FAVICON = resources.files("nodewright.dashboard") / "static" / "favicon.svg"


@router.get("/favicon.ico")
def favicon() -> Response:
    """The icon browsers ask for by themselves (base.html links the same SVG)."""
    return Response(
        FAVICON.read_bytes(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    user = require_user(request)
    database = _ctx(request).database
    with database.session() as session:
        overview = _overview(database, session)
    return render(request, "home.html", user=user, statuses=[s.value for s in NodeStatus], **overview)


def _tokens_page(
    request: Request, *, created: str | None = None, error: str | None = None, status_code: int = 200
) -> Response:
    user = require_user(request)
    require_page_role(user, Role.admin)
    with _ctx(request).database.session() as session:
        tokens = [
            {
                "id": t.id,
                "name": t.name,
                "username": t.user.username,
                "prefix": t.prefix,
                "created_at": t.created_at,
                "last_used_at": t.last_used_at,
                "revoked_at": t.revoked_at,
            }
            for t in api_tokens.list_tokens(session)
        ]
    return render(
        request,
        "tokens.html",
        status_code=status_code,
        user=user,
        tokens=tokens,
        created=created,
        error=error,
    )


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request) -> Response:
    return _tokens_page(request)


@router.post("/tokens", response_class=HTMLResponse)
def create_token(request: Request, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.admin)
    checked_form(form, user)
    name = form.get("name", "").strip()
    username = form.get("username", "").strip() or user.username
    with _ctx(request).database.session(write=True) as session:
        try:
            _token, _owner, plaintext = api_tokens.issue_token(session, username, name, actor=user.actor)
        except accounts.AccountError as exc:
            return _tokens_page(request, error=f"Token {exc.field}: {exc.message}.", status_code=422)
    return _tokens_page(request, created=plaintext)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: TokenId, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.admin)
    checked_form(form, user)
    with _ctx(request).database.session(write=True) as session:
        if api_tokens.revoke_token(session, token_id, actor=user.actor) is None:
            raise PageError(404, "Not found", f"There is no token {token_id}.")
    return RedirectResponse("/tokens", status_code=303)
