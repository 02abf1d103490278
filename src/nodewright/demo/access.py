"""The API token the demo works with: it creates its node through the API as the bootstrap admin, and
saves the token as the CLI context ``demo`` so that the ``nodewright nodes ssh demo-1`` it prints
needs no login. One token per data directory lives at a time: each start revokes the last one's."""

from __future__ import annotations

from sqlalchemy import select

from nodewright.context import AppContext
from nodewright.db.models import ApiToken
from nodewright.demo.connection import ACTOR
from nodewright.security import api_tokens
from nodewright.security.accounts import BOOTSTRAP_USERNAME, AccountError, get_user
from nodewright.security.secret import Secret

TOKEN_NAME = "demo CLI"  # noqa: S105 (the token's label, not a credential)


class NoAccess(Exception):
    """Why the demo has no token (the message is a line for the operator)."""


def demo_token(ctx: AppContext) -> tuple[Secret, str, str]:
    """A new token for the bootstrap admin (the previous demo token revoked): the token, the user's
    name and role. ``NoAccess`` when that user is gone or disabled."""
    with ctx.database.session(write=True) as session:
        user = get_user(session, BOOTSTRAP_USERNAME)
        if user is None or user.disabled:
            raise NoAccess(f"the user '{BOOTSTRAP_USERNAME}' is gone or disabled")
        earlier = session.scalars(
            select(ApiToken).where(
                ApiToken.user_id == user.id, ApiToken.name == TOKEN_NAME, ApiToken.revoked_at.is_(None)
            )
        )
        for token in list(earlier):
            api_tokens.revoke_token(session, token.id, actor=ACTOR)
        try:
            _token, plaintext = api_tokens.create_token(session, user, TOKEN_NAME, actor=ACTOR)
        except AccountError as exc:
            raise NoAccess(exc.message) from None
        return Secret(plaintext), user.username, str(user.role)
