"""``nodewright users ...`` and ``nodewright tokens ...``.

``users create``, ``users reset-password``, ``tokens create`` and ``tokens revoke`` are local: they
open the installation's database on its machine, so an operator who has no token yet (or lost the
admin password) can make one. The other account commands go over the HTTP API with an admin token.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nodewright.cli.errors import fail, friendly_errors
from nodewright.cli.local import open_context, read_password

users_app = typer.Typer(help="Dashboard and API users.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)


@users_app.command("create")
@friendly_errors
def users_create(
    username: Annotated[str, typer.Option(help="Login name.")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
) -> None:
    """Create a user. The password is read from stdin, or generated and printed once."""
    from nodewright.security import accounts, audit

    password, generated = read_password()
    ctx = open_context()
    try:
        with ctx.database.session(write=True) as session:
            user = accounts.create_user(session, username, password, role)
            audit.record(
                session,
                actor="cli",
                action="user.create",
                target=f"user:{user.username}",
                outcome="ok",
                detail={"role": user.role},
            )
    finally:
        ctx.close()
    typer.echo(f"created user {username!r} with role {role}")
    if generated:
        typer.echo(f"password: {password}")


@users_app.command("reset-password")
@friendly_errors
def users_reset_password(username: Annotated[str, typer.Argument(help="Login name.")]) -> None:
    """Set a new password (from stdin, or generated and printed) and end the user's sessions."""
    from sqlalchemy import delete

    from nodewright.db.models import WebSession
    from nodewright.security import accounts, audit
    from nodewright.security.passwords import hash_password

    password, generated = read_password()
    accounts.validate_password(password)
    ctx = open_context()
    try:
        with ctx.database.session(write=True) as session:
            user = accounts.get_user(session, username)
            if user is None:
                fail(f"no user named {username!r}", code=3)
            user.password_hash = hash_password(password)
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))
            audit.record(
                session, actor="cli", action="user.reset_password", target=f"user:{username}", outcome="ok"
            )
    finally:
        ctx.close()
    typer.echo(f"password of {username!r} changed; their sessions were ended")
    if generated:
        typer.echo(f"password: {password}")


@tokens_app.command("create")
@friendly_errors
def tokens_create(
    user: Annotated[str, typer.Option("--user", help="User the token acts as.")],
    name: Annotated[str, typer.Option(help="Label to recognise the token by.")],
) -> None:
    """Create an API token; it is printed once, alone on the last line."""
    from nodewright.security import api_tokens

    ctx = open_context()
    try:
        with ctx.database.session(write=True) as session:
            _token, _owner, plaintext = api_tokens.issue_token(session, user, name, actor="cli")
    finally:
        ctx.close()
    typer.echo(f"token {name!r} for {user!r} (shown once, store it now):")
    typer.echo(plaintext)


@tokens_app.command("revoke")
@friendly_errors
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="Token id (see GET /api/tokens).")]) -> None:
    """Revoke an API token."""
    from nodewright.security import api_tokens

    ctx = open_context()
    try:
        with ctx.database.session(write=True) as session:
            if api_tokens.revoke_token(session, token_id, actor="cli") is None:
                fail(f"no token with id {token_id}", code=3)
    finally:
        ctx.close()
    typer.echo(f"token {token_id} revoked")
