"""``/webhooks`` (admin): endpoints, their delivery log, "send again" and the test event.

A new or rotated secret is shown on the page that answers the form post, once; it is never put in
a redirect, a cookie or any later page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from nodewright.alerts import deliveries, endpoints
from nodewright.alerts.events import EVENT_TYPES
from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.rendering import PageError, PageUser, render, require_page_role, require_user
from nodewright.security import web_sessions
from nodewright.security.roles import Role

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)
MAX_ID = 2**31 - 1


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _admin(request: Request) -> PageUser:
    user = require_user(request)
    require_page_role(user, Role.admin)
    return user


def _check_form(user: PageUser, csrf_token: str, *values: str) -> None:
    if not web_sessions.tokens_match(csrf_token, user.csrf_token):
        raise PageError(403, "Form expired", "The form's CSRF token is missing or wrong. Reload and retry.")
    if any("\x00" in v for v in values):
        raise PageError(422, "Invalid input", "A field must not contain a NUL character.")


def _page(
    request: Request,
    *,
    selected: int | None = None,
    error: str | None = None,
    new_secret: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    user = _admin(request)
    ctx = _ctx(request)
    rows = endpoints.list_endpoints(ctx.database)
    log = None
    if selected is not None:
        try:
            log = deliveries.list_deliveries(ctx.database, selected)
        except endpoints.WebhookError as exc:
            raise PageError(404, "Not found", exc.message) from None
    return render(
        request,
        "webhooks.html",
        status_code=status_code,
        user=user,
        webhooks=rows,
        selected=selected,
        deliveries=log,
        error=error,
        new_secret=new_secret,
        form=form or {},
        event_types=EVENT_TYPES,
    )


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request, endpoint: int | None = Query(default=None, ge=1, le=MAX_ID)) -> Response:
    return _page(request, selected=endpoint)


@router.post("/webhooks", response_class=HTMLResponse)
async def create(request: Request) -> Response:
    form = await request.form()
    name, url, csrf = (str(form.get(k, "")) for k in ("name", "url", "csrf_token"))
    events = [str(v) for v in form.getlist("events")]
    return await _in_pool(_create, request, name.strip(), url.strip(), csrf, events)


async def _in_pool(fn: Any, *args: Any) -> Response:
    from starlette.concurrency import run_in_threadpool

    response: Response = await run_in_threadpool(fn, *args)
    return response


def _create(request: Request, name: str, url: str, csrf: str, events: list[str]) -> Response:
    user = _admin(request)
    _check_form(user, csrf, name, url, *events)
    kept = {"name": name, "url": url}
    ctx = _ctx(request)
    try:
        found = endpoints.create_endpoint(
            ctx.database,
            ctx.box,
            actor=user.actor,
            name=name,
            url=url,
            events=events,
            allowed=ctx.settings.allowed_webhook_endpoints,
        )
    except endpoints.WebhookError as exc:
        field = f" ({exc.field})" if exc.field else ""
        return _page(request, error=f"Not added{field}: {exc.message}", form=kept, status_code=exc.status)
    shown = {"name": found.endpoint.name, "secret": found.secret.reveal()}
    return _page(request, selected=found.endpoint.id, new_secret=shown, status_code=201)


@router.post("/webhooks/{webhook_id}/rotate", response_class=HTMLResponse)
def rotate(request: Request, webhook_id: int = Path(ge=1, le=MAX_ID), csrf_token: str = Form("")) -> Response:
    user = _admin(request)
    _check_form(user, csrf_token)
    ctx = _ctx(request)
    try:
        found = endpoints.rotate_secret(ctx.database, ctx.box, webhook_id, actor=user.actor)
    except endpoints.WebhookError as exc:
        raise PageError(exc.status, "Not found", exc.message) from None
    shown = {"name": found.endpoint.name, "secret": found.secret.reveal()}
    return _page(request, selected=webhook_id, new_secret=shown)


@router.post("/webhooks/{webhook_id}/test")
def test_event(
    request: Request, webhook_id: int = Path(ge=1, le=MAX_ID), csrf_token: str = Form("")
) -> Response:
    user = _admin(request)
    _check_form(user, csrf_token)
    try:
        deliveries.send_test(_ctx(request).database, webhook_id, actor=user.actor)
    except endpoints.WebhookError as exc:
        raise PageError(exc.status, "Not found", exc.message) from None
    return RedirectResponse(f"/webhooks?endpoint={webhook_id}", status_code=303)


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
def redeliver(
    request: Request,
    webhook_id: int = Path(ge=1, le=MAX_ID),
    delivery_id: int = Path(ge=1, le=MAX_ID),
    csrf_token: str = Form(""),
) -> Response:
    user = _admin(request)
    _check_form(user, csrf_token)
    try:
        deliveries.redeliver(_ctx(request).database, webhook_id, delivery_id, actor=user.actor)
    except endpoints.WebhookError as exc:
        raise PageError(exc.status, "Not found", exc.message) from None
    return RedirectResponse(f"/webhooks?endpoint={webhook_id}", status_code=303)


@router.post("/webhooks/{webhook_id}/delete")
def delete(request: Request, webhook_id: int = Path(ge=1, le=MAX_ID), csrf_token: str = Form("")) -> Response:
    user = _admin(request)
    _check_form(user, csrf_token)
    try:
        endpoints.delete_endpoint(_ctx(request).database, webhook_id, actor=user.actor)
    except endpoints.WebhookError as exc:
        raise PageError(exc.status, "Not found", exc.message) from None
    return RedirectResponse("/webhooks", status_code=303)
