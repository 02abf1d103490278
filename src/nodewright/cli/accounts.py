"""``nodewright users ...`` and ``nodewright tokens ...``, over the HTTP API with an admin token.

``users create``, ``users reset-password``, ``tokens create`` and ``tokens revoke`` also run with
``--local``: they open the installation's database on its machine, so an operator who has no token
yet (or lost the admin password) can make one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from nodewright.cli.client import ApiError
from nodewright.cli.errors import die, fail, friendly_errors, say
from nodewright.cli.local import local_session, read_password
from nodewright.cli.options import JsonOption, LocalOption, TokenFile, UrlOption, client
from nodewright.cli.output import OutputOption, emit, parse, table
from nodewright.cli.times import relative
from nodewright.security.text import clean_line

users_app = typer.Typer(help="Dashboard and API users.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)


@users_app.command("create")
@friendly_errors
def users_create(
    username: Annotated[str, typer.Option(help="Login name.")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    local: LocalOption = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Create a user. The password is read from stdin, or generated and printed once (then it must
    be changed at the first sign-in)."""
    password, generated = read_password()
    if local:
        _create_locally(username, role, password, generated)
        shown = password if generated else None
    else:
        try:
            with client(url, token_file) as api:
                body = {"username": username, "role": role, "password": None if generated else password}
                shown = _shown(api.post("/api/users", json=body))
        except ApiError as exc:
            die(exc)
    say(f"created user {username!r} with role {role}")
    _show_once(shown, "the first sign-in")


def _shown(answer: dict[str, Any]) -> str | None:
    """The password a server generated, as one safe line (a hostile server cannot forge output)."""
    password = answer.get("password")
    return clean_line(password) if isinstance(password, str) and password else None


def _create_locally(username: str, role: str, password: str, generated: bool) -> None:
    from nodewright.security import accounts, audit

    with local_session(write=True) as (_ctx, session):
        user = accounts.create_user(session, username, password, role, must_change=generated)
        audit.record(session, actor="cli", action="user.create", target=f"user:{user.username}",
                     outcome="ok", detail={"role": user.role})  # fmt: skip


def _show_once(password: str | None, when: str) -> None:
    if password:
        say(f"password: {password}")
        say(f"(shown once; the dashboard asks for a new one at {when})")


@users_app.command("reset-password")
@friendly_errors
def users_reset_password(
    username: Annotated[str, typer.Argument(help="Login name.")],
    local: LocalOption = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Set a new password (from stdin, or generated and printed once) that must be changed at the next
    sign-in, and end the user's sessions."""
    from nodewright.security import accounts

    password, generated = read_password()
    accounts.validate_password(password)
    if local:
        _reset_locally(username, password)
        shown = password if generated else None
    else:
        try:
            with client(url, token_file) as api:
                answer = api.post(f"/api/users/{quote(username, safe='')}/password",
                                  json={"password": None if generated else password})  # fmt: skip
        except ApiError as exc:
            die(exc)
        shown = _shown(answer)
    say(f"password of {username!r} changed; their sessions were ended")
    _show_once(shown, "the next sign-in")


def _reset_locally(username: str, password: str) -> None:
    """As ``POST /api/users/{name}/password``: generated or given, a reset password is one the user
    must change at the next sign-in."""
    from nodewright.security import accounts, audit

    with local_session(write=True) as (_ctx, session):
        user = accounts.get_user(session, username)
        if user is None:
            fail(f"no user named {username!r}", code=3)
        accounts.set_password(session, user, password, must_change=True)
        audit.record(
            session, actor="cli", action="user.reset_password", target=f"user:{username}", outcome="ok"
        )


@tokens_app.command("create")
@friendly_errors
def tokens_create(
    user: Annotated[str, typer.Option("--user", help="User the token acts as.")],
    name: Annotated[str, typer.Option(help="Label to recognise the token by.")],
    local: LocalOption = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Create an API token; it is printed once, alone on the last line."""
    if local:
        from nodewright.security import api_tokens

        with local_session(write=True) as (_ctx, session):
            _token, _owner, plaintext = api_tokens.issue_token(session, user, name, actor="cli")
    else:
        try:
            with client(url, token_file) as api:
                plaintext = clean_line(
                    str(api.post("/api/tokens", json={"username": user, "name": name})["token"])
                )
        except ApiError as exc:
            die(exc)
    say(f"token {name!r} for {user!r} (shown once, store it now):")
    say(plaintext)


@tokens_app.command("revoke")
@friendly_errors
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id (see `nodewright tokens list`).")],
    local: LocalOption = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Revoke an API token."""
    if local:
        from nodewright.security import api_tokens

        with local_session(write=True) as (_ctx, session):
            if api_tokens.revoke_token(session, token_id, actor="cli") is None:
                fail(f"no token with id {token_id}", code=3)
    else:
        try:
            with client(url, token_file) as api:
                api.request("DELETE", f"/api/tokens/{token_id}")
        except ApiError as exc:
            die(exc)
    say(f"token {token_id} revoked")


# --- over the HTTP API (admin token) ---------------------------------------------------------------


@users_app.command("list")
def users_list(
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """Users with their roles (admin token)."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            rows = api.get("/api/users")
    except ApiError as exc:
        die(exc)
    if not emit(rows, shape):
        table(["ID", "USERNAME", "ROLE", "STATE", "CREATED"],
              [[str(u["id"]), u["username"], u["role"], "disabled" if u["disabled"] else "active",
                relative(u["created_at"])] for u in rows], colour=(3,))  # fmt: skip


def _update(
    username: str, change: dict[str, Any], url: str | None, token_file: Path | None
) -> dict[str, Any]:
    try:
        with client(url, token_file) as api:
            user: dict[str, Any] = api.request("PATCH", f"/api/users/{quote(username, safe='')}", json=change)
            return user
    except ApiError as exc:
        die(exc)


@users_app.command("set-role")
def users_set_role(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Argument(help="viewer, operator or admin.")],
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Change a user's role (the last enabled admin stays an admin)."""
    user = _update(username, {"role": role}, url, token_file)
    say(f"user {clean_line(str(user['username']))} is now {clean_line(str(user['role']))}")


@users_app.command("disable")
def users_disable(
    username: Annotated[str, typer.Argument(help="Login name.")],
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Switch a user off: no sign-in, their sessions end and their tokens stop working."""
    user = _update(username, {"disabled": True}, url, token_file)
    name = clean_line(str(user["username"]))
    say(f"user {name} disabled; their sessions were ended and their tokens stop working")


@users_app.command("enable")
def users_enable(
    username: Annotated[str, typer.Argument(help="Login name.")],
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Switch a disabled user back on."""
    user = _update(username, {"disabled": False}, url, token_file)
    say(f"user {clean_line(str(user['username']))} enabled")


@tokens_app.command("list")
def tokens_list(
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """API tokens (never the tokens themselves), admin token."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            rows = api.get("/api/tokens")
    except ApiError as exc:
        die(exc)
    if not emit(rows, shape):
        table(["ID", "NAME", "USER", "PREFIX", "CREATED", "LAST USED", "STATE"],
              [[str(t["id"]), t["name"], t["username"], t["prefix"], relative(t["created_at"]),
                relative(t.get("last_used_at")), "revoked" if t.get("revoked_at") else "active"]
               for t in rows], colour=(6,))  # fmt: skip
