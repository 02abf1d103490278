"""``/providers``: connect a provider account, see its status, check it, rotate its token.

Handlers are plain ``def`` (provider calls block; FastAPI runs them in its thread pool), reading
their forms through ``Form`` parameters and checking the CSRF token themselves. The token field is
never filled in by the server, not even when the page is shown again after a refused token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.rendering import PageError, PageUser, render, require_page_role, require_user
from nodewright.db.models import ProviderConnection
from nodewright.providers import connections
from nodewright.providers.errors import ProviderError
from nodewright.security import web_sessions
from nodewright.security.roles import Role
from nodewright.security.secret import Secret

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)
MAX_ID = 2**31 - 1
BADGES = {
    "ok": "ok",
    "invalid": "bad",
    "read_only": "bad",
    "rate_limited": "warn",
    "unavailable": "warn",
    "unchecked": "muted",
    "error": "bad",
}


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _check_form(user: PageUser, csrf_token: str, *values: str) -> None:
    if not web_sessions.tokens_match(csrf_token, user.csrf_token):
        raise PageError(403, "Form expired", "The form's CSRF token is missing or wrong. Reload and retry.")
    if any("\x00" in v for v in values):
        raise PageError(422, "Invalid input", "A field must not contain a NUL character.")


def _row_view(row: ProviderConnection) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "status": row.status,
        "badge": BADGES.get(row.status, "muted"),
        "message": connections.status_message(row),
        "fingerprint": row.token_fingerprint,
        "endpoint": row.api_endpoint or "https://api.hetzner.cloud/v1",
        "checked": row.last_checked_at,
        "rate": (
            f"{int(row.rate_remaining or 0)} of {row.rate_limit} requests left"
            if row.rate_limit is not None
            else "not measured yet"
        ),
    }


def _page(
    request: Request,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    catalog_id: int | None = None,
    status_code: int = 200,
) -> Response:
    user = require_user(request)
    ctx = _ctx(request)
    rows = [_row_view(r) for r in connections.list_connections(ctx.database)]
    catalog = None
    catalog_error = None
    if catalog_id is not None:
        try:
            view = connections.get_catalog(ctx.database, ctx.box, catalog_id)
            catalog = {"view": view, "provider_id": catalog_id}
        except connections.ConnectionError_ as exc:
            catalog_error = exc.message
        except ProviderError as exc:
            catalog_error = f"{exc.message} {exc.hint or ''}".strip()
    return render(
        request,
        "providers.html",
        status_code=status_code,
        user=user,
        providers=rows,
        error=error,
        form=form or {},
        catalog=catalog,
        catalog_error=catalog_error,
    )


@router.get("/providers", response_class=HTMLResponse)
def providers_page(request: Request, catalog: int | None = Query(default=None, ge=1, le=MAX_ID)) -> Response:
    return _page(request, catalog_id=catalog)


@router.post("/providers", response_class=HTMLResponse)
def connect(
    request: Request,
    csrf_token: str = Form(""),
    name: str = Form(""),
    token: str = Form(""),
    api_endpoint: str = Form(""),
) -> Response:
    user = require_user(request)
    require_page_role(user, Role.admin)
    _check_form(user, csrf_token, name, token, api_endpoint)
    kept = {"name": name, "api_endpoint": api_endpoint}  # never the token
    secret = Secret(token.strip()) if token.strip() else None
    if not name.strip() or secret is None:
        field = "Name" if not name.strip() else "Token"
        return _page(request, error=f"{field} is required.", form=kept, status_code=422)
    endpoint = api_endpoint.strip() or None
    try:
        connections.create_connection(
            _ctx(request).database,
            _ctx(request).box,
            actor=user.actor,
            kind="hetzner",
            name=name.strip(),
            token=secret,
            api_endpoint=endpoint,
            allowed_endpoints=_ctx(request).settings.allowed_provider_endpoints,
        )
    except connections.ConnectionError_ as exc:
        return _page(
            request, error=f"Not connected ({exc.code}): {exc.message}", form=kept, status_code=exc.status
        )
    return RedirectResponse("/providers", status_code=303)


@router.post("/providers/{provider_id}/check")
def check(request: Request, provider_id: int = Path(ge=1, le=MAX_ID), csrf_token: str = Form("")) -> Response:
    user = require_user(request)
    require_page_role(user, Role.admin)
    _check_form(user, csrf_token)
    try:
        connections.check_connection(_ctx(request).database, _ctx(request).box, provider_id, actor=user.actor)
    except connections.ConnectionError_ as exc:
        raise PageError(exc.status, "Not found", exc.message) from None
    return RedirectResponse("/providers", status_code=303)


@router.post("/providers/{provider_id}/rotate", response_class=HTMLResponse)
def rotate(
    request: Request,
    provider_id: int = Path(ge=1, le=MAX_ID),
    csrf_token: str = Form(""),
    token: str = Form(""),
) -> Response:
    user = require_user(request)
    require_page_role(user, Role.admin)
    _check_form(user, csrf_token, token)
    if not token.strip():
        return _page(request, error="Paste the new token.", status_code=422)
    try:
        connections.update_connection(
            _ctx(request).database,
            _ctx(request).box,
            provider_id,
            actor=user.actor,
            token=Secret(token.strip()),
            allowed_endpoints=_ctx(request).settings.allowed_provider_endpoints,
        )
    except connections.ConnectionError_ as exc:
        return _page(request, error=f"Token not rotated ({exc.code}): {exc.message}", status_code=exc.status)
    connections.forget_catalog(_ctx(request).database, provider_id)
    return RedirectResponse("/providers", status_code=303)
