"""Templates, the signed-in user of a page, and CSRF checks for dashboard forms."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from nodewright.context import AppContext
from nodewright.dashboard import formatting
from nodewright.db.models import User
from nodewright.security import web_sessions
from nodewright.security.roles import Role

templates = Jinja2Templates(directory=str(resources.files("nodewright.dashboard") / "templates"))
templates.env.filters["money"] = formatting.money
templates.env.filters["ago"] = formatting.ago
templates.env.filters["clock"] = formatting.clock


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to /login."""


class PasswordChangeRequired(Exception):
    """Raised for a user whose password was made for them; the app sends them to /account/password."""


# What a user who must change their password may still reach.
PASSWORD_CHANGE_PATHS = frozenset({"/account/password", "/logout"})


class PageError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@dataclass(frozen=True)
class PageUser:
    id: int
    username: str
    role: Role
    session_id: str
    csrf_token: str
    must_change_password: bool = False

    @property
    def actor(self) -> str:
        return f"user:{self.username}"

    def can(self, role: Role) -> bool:
        return self.role.allows(role)

    @property
    def can_admin(self) -> bool:
        return self.can(Role.admin)

    @property
    def can_operate(self) -> bool:
        return self.can(Role.operator)


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def current_user(request: Request) -> PageUser | None:
    ctx = _ctx(request)
    cookie = request.cookies.get(web_sessions.SESSION_COOKIE)
    if not cookie:
        return None
    session_id = ctx.signer.unsign(cookie)
    if session_id is None:
        return None
    with ctx.database.session() as session:
        user: User | None = web_sessions.resolve_session(session, session_id)
        if user is None:
            return None
        return PageUser(user.id, user.username, Role(user.role), session_id, ctx.signer.csrf_for(session_id),
                        bool(user.must_change_password))  # fmt: skip


def require_user(request: Request) -> PageUser:
    user = current_user(request)
    if user is None:
        raise LoginRequired
    if user.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise PasswordChangeRequired
    return user


def require_page_role(user: PageUser, role: Role) -> None:
    if not user.can(role):
        raise PageError(
            403, "Forbidden", f"This page needs the {role.value} role; you have {user.role.value}."
        )


async def posted_form(request: Request) -> dict[str, str]:
    """The posted form's text fields. The only async step of a form post: reading the body is I/O
    for the event loop, while the route itself is a plain ``def`` that runs in the thread pool (it
    touches the database, and blocking work must never run on the loop)."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


PostedForm = Annotated[dict[str, str], Depends(posted_form)]


def checked_form(form: dict[str, str], user: PageUser) -> dict[str, str]:
    """The posted form, after checking its CSRF token against the session's."""
    sent = form.get("csrf_token")
    if not isinstance(sent, str) or not web_sessions.tokens_match(sent, user.csrf_token):
        raise PageError(403, "Form expired", "The form's CSRF token is missing or wrong. Reload and retry.")
    for name, value in form.items():
        if "\x00" in value:
            # PostgreSQL cannot store or compare text holding NUL: refuse it here, naming the field.
            raise PageError(422, "Invalid input", f"The field {name!r} must not contain a NUL character.")
    return form


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)
