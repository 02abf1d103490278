"""FastAPI dependencies: the app context, the database, and the caller with a role check.

API calls authenticate with ``Authorization: Bearer <api token>``. The dashboard's own scripts may
call the API with the session cookie; for any method that changes state they must then also send the
session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from nodewright.api.problems import ProblemError
from nodewright.context import AppContext
from nodewright.db.database import Database
from nodewright.security import api_tokens, audit, web_sessions
from nodewright.security.roles import Role

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    actor: str
    role: str
    user_id: int | None
    username: str | None = None
    via: str = "token"  # "token" or "session"
    # The credential itself, so that a long-lived response (an event stream) can check it again.
    token_id: int | None = None
    session_id: str | None = field(default=None, repr=False)


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_database(request: Request) -> Database:
    return get_context(request).database


# The dependencies themselves are coroutines: FastAPI runs a plain ``def`` dependency in the thread
# pool, a hand-off that costs more than the attribute lookup it would run there.
async def _context_dependency(request: Request) -> AppContext:
    return get_context(request)


async def _database_dependency(request: Request) -> Database:
    return get_database(request)


ContextDep = Annotated[AppContext, Depends(_context_dependency)]
DatabaseDep = Annotated[Database, Depends(_database_dependency)]


def _unauthenticated(detail: str) -> ProblemError:
    return ProblemError(
        401,
        "unauthenticated",
        "Authentication required",
        detail,
        hint="Send Authorization: Bearer <token>; create one with `nodewright tokens create` (or "
        "with `--local` on the server's machine).",
        headers={"WWW-Authenticate": 'Bearer realm="nodewright"'},
    )


def audit_denied(ctx: AppContext, request: Request, actor: str, reason: str) -> None:
    """Record a refused attempt to change state by a known caller (a forbidden role, a failed CSRF
    check): the mutation did not happen, but the attempt belongs in the audit log."""
    if request.method in SAFE_METHODS:
        return
    route = request.scope.get("route")
    template = getattr(route, "path", None) or request.url.path
    with ctx.database.session(write=True) as session:
        audit.record(
            session,
            actor=actor,
            action=f"{request.method} {template}"[:64],
            target=request.url.path[:255],
            outcome="denied",
            detail={"reason": reason},
        )


def authenticate(request: Request) -> Principal:
    ctx = get_context(request)
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthenticated("The Authorization header must be 'Bearer <token>'.")
        with ctx.database.session() as session:
            found = api_tokens.resolve_token(session, value.strip())
        if found is None:
            raise _unauthenticated("The API token is unknown, revoked or malformed.")
        token, token_user = found
        if api_tokens.needs_touch(token):
            # Its own short write transaction: on SQLite a read transaction that turns into a write
            # fails at once ("database is locked") when a worker wrote in between.
            with ctx.database.session(write=True) as session:
                api_tokens.touch(session, token.id)
        return Principal(
            f"user:{token_user.username}/token:{token.name}",
            token_user.role,
            token_user.id,
            token_user.username,
            token_id=token.id,
        )
    cookie = request.cookies.get(web_sessions.SESSION_COOKIE)
    if cookie:
        session_id = ctx.signer.unsign(cookie)
        if session_id is not None:
            with ctx.database.session() as session:
                user = web_sessions.resolve_session(session, session_id)
            if user is not None:
                if request.method not in SAFE_METHODS:
                    sent = request.headers.get("x-csrf-token")
                    if not web_sessions.tokens_match(sent, ctx.signer.csrf_for(session_id)):
                        audit_denied(ctx, request, f"user:{user.username}", "csrf_failed")
                        raise ProblemError(
                            403,
                            "csrf_failed",
                            "CSRF check failed",
                            "A session-authenticated request that changes state needs X-CSRF-Token.",
                        )
                return Principal(
                    f"user:{user.username}",
                    user.role,
                    user.id,
                    user.username,
                    via="session",
                    session_id=session_id,
                )
    raise _unauthenticated("No credentials were sent.")


def _require(role: Role) -> object:
    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        if not Role(principal.role).allows(role):
            audit_denied(get_context(request), request, principal.actor, "forbidden")
            raise ProblemError(
                403,
                "forbidden",
                "Forbidden",
                f"This needs the {role.value} role; the caller has {principal.role}.",
                hint="Ask an admin for a token of a user with that role.",
            )
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(_require(Role.viewer))]
Operator = Annotated[Principal, Depends(_require(Role.operator))]
Admin = Annotated[Principal, Depends(_require(Role.admin))]
