"""The landing page and the admin's API-token page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from nodewright.api.ids import TokenId
from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.rendering import (
    PageError,
    PostedForm,
    checked_form,
    render,
    require_page_role,
    require_user,
)
from nodewright.security import accounts, api_tokens
from nodewright.security.roles import Role

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    user = require_user(request)
    return render(request, "home.html", user=user)


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
