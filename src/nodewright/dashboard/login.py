"""Login and logout. The login form carries a double-submit CSRF token since no session exists yet."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from nodewright.context import AppContext
from nodewright.dashboard.rendering import PageError, checked_form, current_user, render, require_user
from nodewright.security import accounts, audit, web_sessions

router = APIRouter(include_in_schema=False)


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


def _anonymous_actor(username: str) -> str:
    """The audit actor of a failed sign-in. What was typed is kept only when it could be a user
    name: people type their password into the user field, and the audit log must hold no secret."""
    if accounts.USERNAME_RE.match(username):
        return f"anonymous:{username}"
    return "anonymous:(not a valid user name)"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    if current_user(request) is not None:
        return RedirectResponse("/", status_code=303)
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = _ctx(request)
    form = await request.form()
    token = form.get("csrf_token")
    if not ctx.signer.check_login_csrf(
        token if isinstance(token, str) else None, request.cookies.get(web_sessions.LOGIN_CSRF_COOKIE)
    ):
        raise PageError(
            403, "Form expired", "The login form's CSRF token is missing or wrong. Reload and retry."
        )
    # No NUL reaches the database (PostgreSQL refuses it in text); no account has one in its name.
    username = str(form.get("username") or "").strip().replace("\x00", "\N{REPLACEMENT CHARACTER}")
    password = str(form.get("password") or "")
    address = request.client.host if request.client else "unknown"
    # Checked before the password, for known and unknown usernames alike: no guess is evaluated
    # while throttled, and a refusal does not reveal whether the account exists.
    wait = ctx.login_throttle.retry_after(username, address)
    if wait is not None:
        with ctx.database.session(write=True) as session:
            audit.record(
                session,
                actor=_anonymous_actor(username),
                action="login",
                target="dashboard",
                outcome="throttled",
            )
        minutes = max(1, -(-wait // 60))
        response = _login_page(
            request,
            f"Too many failed sign-ins for this user from your address. Try again in {minutes} minute(s).",
            status_code=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    with ctx.database.session(write=True) as session:
        user = accounts.authenticate(session, username, password)
        if user is None:
            audit.record(
                session,
                actor=_anonymous_actor(username),
                action="login",
                target="dashboard",
                outcome="denied",
            )
        else:
            web_sessions.purge_expired(session)
            session_id = web_sessions.start_session(session, user, ctx.settings.session_max_age_seconds)
            audit.record(
                session, actor=f"user:{user.username}", action="login", target="dashboard", outcome="ok"
            )
    if user is None:
        ctx.login_throttle.failed(username, address)
        return _login_page(request, "Unknown user or wrong password.", status_code=401)
    ctx.login_throttle.succeeded(username, address)
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
async def logout(request: Request) -> Response:
    ctx = _ctx(request)
    user = require_user(request)
    await checked_form(request, user)
    with ctx.database.session(write=True) as session:
        web_sessions.end_session(session, user.session_id)
        audit.record(session, actor=user.actor, action="logout", target="dashboard", outcome="ok")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web_sessions.SESSION_COOKIE, path="/")
    return response
