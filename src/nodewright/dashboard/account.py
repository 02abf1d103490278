"""``/account/password``: everyone changes their own password here; a user whose password was made
for them (the bootstrap admin's, a generated or reset one) is sent here first and can reach nothing
else until they have chosen their own."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.rendering import PostedForm, checked_form, render, require_user
from nodewright.db.models import User
from nodewright.security import accounts, audit
from nodewright.security.passwords import MIN_PASSWORD_LENGTH, verify_password

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _page(
    request: Request, *, errors: dict[str, str] | None = None, done: bool = False, status_code: int = 200
) -> Response:
    user = require_user(request)
    return render(request, "account.html", status_code=status_code, user=user, errors=errors or {}, done=done,
                  minimum=MIN_PASSWORD_LENGTH)  # fmt: skip


@router.get("/account/password", response_class=HTMLResponse)
def password_form(request: Request) -> Response:
    return _page(request, done=request.query_params.get("changed") == "1")


@router.post("/account/password", response_class=HTMLResponse)
def change_password(request: Request, form: PostedForm) -> Response:
    """A plain ``def``: argon2 runs in the thread pool."""
    user = require_user(request)
    checked_form(form, user)
    current, new, again = form.get("current", ""), form.get("new", ""), form.get("again", "")
    errors: dict[str, str] = {}
    if new != again:
        errors["again"] = "The two new passwords differ."
    elif new == current:
        errors["new"] = "Choose a password other than the current one."
    else:
        try:
            accounts.validate_password(new)
        except accounts.AccountError as exc:
            errors["new"] = f"The new password {exc.message}."
    ctx = _ctx(request)
    address = request.client.host if request.client else "unknown"
    # Guesses of the current password count as failed sign-ins (a stolen session does not make
    # the password guessable faster than the login form).
    wait = ctx.login_throttle.known_retry_after(user.username, address)
    if wait is not None and not errors:
        errors["current"] = f"Too many wrong passwords. Try again in {max(1, -(-wait // 60))} minute(s)."
    if not errors:
        with ctx.database.session(write=True) as session:
            row = session.get(User, user.id)
            if row is None or not verify_password(row.password_hash, current):
                errors["current"] = "That is not your current password."
                _record(session, user.actor, user.username, "denied")
            else:
                accounts.set_password(session, row, new, must_change=False, keep_session=user.session_id)
                _record(session, user.actor, user.username, "ok")
    if errors.get("current") == "That is not your current password.":
        ctx.login_throttle.failed(user.username, address)  # its own transaction, after ours
    if errors:
        return _page(request, errors=errors, status_code=422)
    return RedirectResponse("/account/password?changed=1", status_code=303)


def _record(session: Session, actor: str, username: str, outcome: str) -> None:
    audit.record(
        session, actor=actor, action="user.change_password", target=f"user:{username}", outcome=outcome
    )
