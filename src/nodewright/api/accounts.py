"""Users and API tokens over HTTP (admin), and ``GET /api/me`` for any caller."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from nodewright.api.deps import Admin, DatabaseDep, Viewer
from nodewright.api.ids import TokenId
from nodewright.api.problems import PROBLEM_RESPONSES, ProblemError, field_problem, not_found, problem_doc
from nodewright.api.routing import OneHopRoute
from nodewright.db.models import ApiToken
from nodewright.security import accounts, api_tokens, audit
from nodewright.security.api_tokens import TOKEN_NAME_PATTERN
from nodewright.security.passwords import generate_password
from nodewright.security.roles import Role

router = APIRouter(prefix="/api", tags=["accounts"], responses=PROBLEM_RESPONSES, route_class=OneHopRoute)


class Me(BaseModel):
    actor: str
    username: str | None
    role: str


class UserOut(BaseModel):
    id: int
    username: str
    role: Role
    disabled: bool
    created_at: dt.datetime


USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64, pattern=USERNAME_PATTERN)
    role: Role
    password: str | None = Field(
        default=None,
        min_length=12,
        max_length=1024,
        description="Omitted: one is generated, returned once, and must be changed at the first sign-in.",
    )


class UserCreated(UserOut):
    password: str | None = Field(
        description="The generated password (when none was given): shown only in this response."
    )


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str | None = Field(
        default=None,
        min_length=12,
        max_length=1024,
        description="Omitted: one is generated and returned once. Either way the user must change it "
        "at the next sign-in, and their dashboard sessions end.",
    )


class PasswordResetOut(BaseModel):
    username: str
    password: str | None = Field(description="The generated password: shown only in this response.")
    must_change_password: bool


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    disabled: bool | None = Field(
        default=None, description="A disabled user cannot sign in; their tokens stop working."
    )


class TokenOut(BaseModel):
    id: int
    name: str
    username: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64, pattern=USERNAME_PATTERN)
    name: str = Field(min_length=1, max_length=64, pattern=TOKEN_NAME_PATTERN)


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself. Shown only in this response; store it now.")


@router.get("/me", summary="Who is calling")
def me(caller: Viewer) -> Me:
    return Me(actor=caller.actor, username=caller.username, role=caller.role)


@router.get("/users", summary="List users")
def list_users(_caller: Admin, database: DatabaseDep) -> list[UserOut]:
    from sqlalchemy import select

    from nodewright.db.models import User

    with database.session() as session:
        return [
            UserOut(
                id=u.id, username=u.username, role=Role(u.role), disabled=u.disabled, created_at=u.created_at
            )
            for u in session.scalars(select(User).order_by(User.id))
        ]


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses={409: problem_doc("A user with that name exists")},
)
def create_user(body: UserCreate, caller: Admin, database: DatabaseDep) -> UserCreated:
    generated = generate_password() if body.password is None else None
    try:
        with database.session(write=True) as session:
            user = accounts.create_user(
                session, body.username, generated or body.password or "", body.role,
                must_change=generated is not None,
            )  # fmt: skip
            audit.record(
                session,
                actor=caller.actor,
                action="user.create",
                target=f"user:{user.username}",
                outcome="ok",
                detail={"role": user.role},
            )
            out = UserCreated(
                id=user.id,
                username=user.username,
                role=Role(user.role),
                disabled=user.disabled,
                created_at=user.created_at,
                password=generated,
            )
    except accounts.AccountError as exc:
        status_code = 409 if "already exists" in exc.message else 422
        if status_code == 409:
            raise ProblemError(409, "conflict", "User exists", exc.message) from None
        raise field_problem(exc.field, exc.message) from None
    return out


@router.patch(
    "/users/{username}",
    summary="Change a user's role, or disable or enable them",
    responses={404: problem_doc("No such user"), 409: problem_doc("The last enabled admin")},
)
def update_user(
    body: UserUpdate,
    caller: Admin,
    database: DatabaseDep,
    username: str = PathParam(max_length=64, pattern=USERNAME_PATTERN),
) -> UserOut:
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise field_problem("role", "give a role or disabled: nothing to change")
    try:
        with database.session(write=True) as session:
            user = accounts.update_user(session, username, role=body.role, disabled=body.disabled)
            audit.record(
                session,
                actor=caller.actor,
                action="user.update",
                target=f"user:{user.username}",
                outcome="ok",
                detail={k: (v.value if isinstance(v, Role) else v) for k, v in changes.items()},
            )
            return UserOut(
                id=user.id, username=user.username, role=Role(user.role), disabled=user.disabled,
                created_at=user.created_at,
            )  # fmt: skip
    except accounts.AccountError as exc:
        if exc.kind == "not_found":
            raise not_found("User", username) from None
        raise ProblemError(409, "conflict", "Refused", exc.message) from None


@router.post(
    "/users/{username}/password",
    summary="Reset a user's password (one-time: it must be changed at the next sign-in)",
    responses={404: problem_doc("No such user")},
)
def reset_password(
    caller: Admin,
    database: DatabaseDep,
    body: PasswordReset | None = None,
    username: str = PathParam(max_length=64, pattern=USERNAME_PATTERN),
) -> PasswordResetOut:
    given = body.password if body is not None else None
    generated = generate_password() if given is None else None
    try:
        with database.session(write=True) as session:
            user = accounts.get_user(session, username)
            if user is None:
                raise not_found("User", username)
            accounts.set_password(session, user, generated or given or "", must_change=True)
            audit.record(session, actor=caller.actor, action="user.reset_password",
                         target=f"user:{username}", outcome="ok")  # fmt: skip
    except accounts.AccountError as exc:
        raise field_problem("password", exc.message) from None
    return PasswordResetOut(username=username, password=generated, must_change_password=True)


def _token_out(token: ApiToken, username: str) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        username=username,
        prefix=token.prefix,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


@router.get("/tokens", summary="List API tokens (never the tokens themselves)")
def list_tokens(_caller: Admin, database: DatabaseDep) -> list[TokenOut]:
    with database.session() as session:
        return [_token_out(t, t.user.username) for t in api_tokens.list_tokens(session)]


@router.post("/tokens", status_code=status.HTTP_201_CREATED, summary="Create an API token")
def create_token(body: TokenCreate, caller: Admin, database: DatabaseDep) -> TokenCreated:
    with database.session(write=True) as session:
        try:
            token, owner, plaintext = api_tokens.issue_token(
                session, body.username, body.name, actor=caller.actor
            )
        except accounts.AccountError as exc:
            raise field_problem(exc.field, exc.message) from None
        return TokenCreated(**_token_out(token, owner.username).model_dump(), token=plaintext)


@router.delete("/tokens/{token_id}", summary="Revoke an API token")
def revoke_token(token_id: TokenId, caller: Admin, database: DatabaseDep) -> TokenOut:
    with database.session(write=True) as session:
        token = api_tokens.revoke_token(session, token_id, actor=caller.actor)
        if token is None:
            raise not_found("Token", token_id)
        return _token_out(token, token.user.username)
