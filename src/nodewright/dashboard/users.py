"""``/users`` (admins): list, create, change roles, disable and enable, reset a password. A password
made here is shown once and must be changed at its first sign-in."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.rendering import PostedForm, checked_form, render, require_page_role, require_user
from nodewright.db.models import User
from nodewright.security import accounts, audit
from nodewright.security.passwords import generate_password
from nodewright.security.roles import Role

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _page(
    request: Request,
    *,
    shown: tuple[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    user = require_user(request)
    require_page_role(user, Role.admin)
    with _ctx(request).database.session() as session:
        users = [
            {"username": u.username, "role": u.role, "disabled": u.disabled, "created_at": u.created_at,
             "must_change": u.must_change_password}
            for u in session.scalars(select(User).order_by(User.username))
        ]  # fmt: skip
    return render(request, "users.html", status_code=status_code, user=user, users=users, shown=shown,
                  error=error, roles=[r.value for r in Role])  # fmt: skip


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request) -> Response:
    return _page(request)


def _admin(request: Request, form: dict[str, str]) -> str:
    user = require_user(request)
    require_page_role(user, Role.admin)
    checked_form(form, user)
    return user.actor


@router.post("/users", response_class=HTMLResponse)
def create_user(request: Request, form: PostedForm) -> Response:
    actor = _admin(request, form)
    username, role = (form.get("username") or "").strip(), form.get("role") or ""
    password = generate_password()
    try:
        with _ctx(request).database.session(write=True) as session:
            created = accounts.create_user(session, username, password, role, must_change=True)
            audit.record(session, actor=actor, action="user.create", target=f"user:{created.username}",
                         outcome="ok", detail={"role": created.role})  # fmt: skip
    except accounts.AccountError as exc:
        return _page(
            request,
            error=f"{exc.field.capitalize()} {exc.message}.",
            status_code=409 if exc.kind == "conflict" else 422,
        )
    return _page(request, shown=(username, password), status_code=201)


@router.post("/users/{username}", response_class=HTMLResponse)
def update_user(request: Request, username: str, form: PostedForm) -> Response:
    """One form per user: ``action`` is role, disable, enable or reset."""
    actor = _admin(request, form)
    action = form.get("action") or ""
    ctx = _ctx(request)
    try:
        with ctx.database.session(write=True) as session:
            if action == "reset":
                target = accounts.get_user(session, username)
                if target is None:
                    raise accounts.AccountError("username", f"no user named {username!r}", kind="not_found")
                password = generate_password()
                accounts.set_password(session, target, password, must_change=True)
                audit.record(
                    session,
                    actor=actor,
                    action="user.reset_password",
                    target=f"user:{username}",
                    outcome="ok",
                )
            elif action in ("role", "disable", "enable"):
                change: dict[str, object] = (
                    {"role": form.get("role") or ""}
                    if action == "role"
                    else {"disabled": action == "disable"}
                )
                role = (form.get("role") or "") if action == "role" else None
                disabled = None if action == "role" else action == "disable"
                accounts.update_user(session, username, role=role, disabled=disabled)
                audit.record(session, actor=actor, action="user.update", target=f"user:{username}",
                             outcome="ok", detail=change)  # fmt: skip
                password = None
            else:
                return _page(request, error=f"Unknown action {action[:32]!r}.", status_code=422)
    except accounts.AccountError as exc:
        status = {"not_found": 404, "conflict": 409}.get(exc.kind, 422)
        return _page(request, error=exc.message[:1].upper() + exc.message[1:] + ".", status_code=status)
    except ValueError:
        return _page(request, error="Choose a role: viewer, operator or admin.", status_code=422)
    if password is not None:
        return _page(request, shown=(username, password))
    return RedirectResponse("/users", status_code=303)
