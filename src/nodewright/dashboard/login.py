"""Login and logout. The login form carries a double-submit CSRF token since no session exists yet."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.rendering import (
    PageError,
    PostedForm,
    checked_form,
    current_user,
    render,
    require_user,
)
from nodewright.security import accounts, audit, web_sessions

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _login_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    ctx = _ctx(request)
    token, cookie = ctx.signer.new_login_csrf()
    response = render(
        request, "login.html", status_code=status_code, csrf_token=token, error=error, user=None
    )
    response.set_cookie(
        web_sessions.LOGIN_CSRF_COOKIE,
        cookie,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=ctx.settings.cookie_secure,
        path="/login",
    )
    return response


def _anonymous_actor(username: str, *, known: bool) -> str:
    """The audit actor of a refused sign-in. What was typed is kept only when it names an existing
    account: people type their password into the user field, and a password can look like a user
    name. A name that is no account is not kept at all."""
    if known and accounts.USERNAME_RE.match(username):
        return f"anonymous:{username}"
    return "anonymous:(unknown user)"


_REFUSED_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Try again later - nodewright</title>"
    '<link rel=stylesheet href="/static/style.css"><main class=narrow><h1>Sign in</h1>'
    '<p class=error>{message}</p><p><a href="/login">Back to the sign-in form</a></p></main></html>'
)


def _refused(message: str, wait: int) -> Response:
    """A refusal (throttled, or every password-check slot busy) is a small fixed page: no template,
    no new CSRF token, no database work, so a flood of refused sign-ins costs next to nothing."""
    response = HTMLResponse(_REFUSED_PAGE.format(message=html.escape(message)), status_code=429)
    response.headers["Retry-After"] = str(wait)
    return response


_BUSY = "The server is busy checking other sign-ins. Try again in a moment."


def _route_path(scope: Scope) -> str:
    """The path the router sees: uvicorn puts ``--root-path`` in front of ``path``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class LoginShedMiddleware:
    """Refuses ``POST /login`` while the password-check budget is spent, on the event loop and before
    the request's body is read: no form parse, no CSRF check, no thread-pool hop. A flood of sign-ins
    then costs a dictionary lookup and a fixed answer each, and leaves the thread pool to everyone
    else. What gets past it is checked again by the route (the budget may be spent in between)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _route_path(scope) == "/login":
            gate = scope["app"].state.ctx.password_gate
            if gate.would_refuse():
                await _refused(_BUSY, gate.retry_after())(scope, receive, send)
                return
        await self.app(scope, receive, send)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    if current_user(request) is not None:
        return RedirectResponse("/", status_code=303)
    return _login_page(request)


@router.post("/login")
def login(request: Request, form: PostedForm) -> Response:
    """A plain ``def``: the database and argon2 work runs in the thread pool, never on the loop."""
    ctx = _ctx(request)
    if not ctx.signer.check_login_csrf(
        form.get("csrf_token"), request.cookies.get(web_sessions.LOGIN_CSRF_COOKIE)
    ):
        raise PageError(
            403, "Form expired", "The login form's CSRF token is missing or wrong. Reload and retry."
        )
    # No NUL reaches the database (PostgreSQL refuses it in text); no account has one in its name.
    username = (form.get("username") or "").strip().replace("\x00", "\N{REPLACEMENT CHARACTER}")
    password = form.get("password") or ""
    address = request.client.host if request.client else "unknown"
    # Checked before the password, for known and unknown usernames alike: no guess is evaluated
    # while throttled, and a refusal does not reveal whether the account exists.
    wait = ctx.login_throttle.known_retry_after(username, address)
    if wait is None:
        if ctx.password_gate.would_refuse():
            # No password would be checked now anyway: refuse before asking the database for the
            # shared counts (the shed middleware let this through a moment ago, the budget is spent).
            return _refused(_BUSY, ctx.password_gate.retry_after())
        wait = ctx.login_throttle.retry_after(username, address)
    if wait is not None:
        # One audit row per throttle window with a count, not one per refused request (made-up
        # names all count as one unknown user); no query per refusal.
        ctx.refusal_tally.record(
            ctx.database,
            actor=_anonymous_actor(username, known=username in ctx.known_usernames),
            action="login",
            target=f"dashboard from {address}",
            outcome="throttled",
        )
        minutes = max(1, -(-wait // 60))
        return _refused(f"Too many failed sign-ins. Try again in {minutes} minute(s).", wait)
    if not ctx.password_gate.try_acquire():
        # Every password check slot is busy: refuse at once rather than queue unauthenticated work.
        return _refused(_BUSY, ctx.password_gate.retry_after())
    try:
        check = accounts.check_login(ctx.database, username, password)
    finally:
        ctx.password_gate.release()
    user = check.user
    if user is None:
        ctx.login_throttle.failed(username, address)
        with ctx.database.session(write=True) as session:
            audit.record(
                session,
                actor=_anonymous_actor(username, known=check.known),
                action="login",
                target="dashboard",
                outcome="denied",
            )
        return _login_page(request, "Unknown user or wrong password.", status_code=401)
    ctx.login_throttle.succeeded(username, address)
    with ctx.database.session(write=True) as session:
        web_sessions.purge_expired(session)
        session_id = web_sessions.start_session(session, user, ctx.settings.session_max_age_seconds)
        audit.record(session, actor=f"user:{user.username}", action="login", target="dashboard", outcome="ok")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        web_sessions.SESSION_COOKIE,
        ctx.signer.sign(session_id),
        max_age=ctx.settings.session_max_age_seconds,
        httponly=True,
        samesite="lax",
        secure=ctx.settings.cookie_secure,
        path="/",
    )
    response.delete_cookie(web_sessions.LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, form: PostedForm) -> Response:
    ctx = _ctx(request)
    user = require_user(request)
    checked_form(form, user)
    with ctx.database.session(write=True) as session:
        web_sessions.end_session(session, user.session_id)
        audit.record(session, actor=user.actor, action="logout", target="dashboard", outcome="ok")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web_sessions.SESSION_COOKIE, path="/")
    return response
