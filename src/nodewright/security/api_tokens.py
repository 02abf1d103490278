"""API tokens: shown once at creation, stored hashed, revocable, last use recorded."""

from __future__ import annotations

import datetime as dt
import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nodewright.db.models import ApiToken, User
from nodewright.security import audit
from nodewright.security.accounts import AccountError, get_user
from nodewright.security.hashing import token_hash

TOKEN_PREFIX = "nwt_"  # noqa: S105 (a marker, not a credential)
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$"  # noqa: S105 (a pattern, not a credential)
TOKEN_NAME_RE = re.compile(TOKEN_NAME_PATTERN, re.ASCII)
# Writing last_used_at on every request would turn every read into a write; minute precision is enough.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def issue_token(session: Session, username: str, name: str, *, actor: str) -> tuple[ApiToken, User, str]:
    """Create a token for the user named ``username`` (an ``AccountError`` names what is wrong)."""
    owner = get_user(session, username)
    if owner is None:
        raise AccountError("username", f"no user named {username!r}", kind="not_found")
    token, plaintext = create_token(session, owner, name, actor=actor)
    return token, owner, plaintext


def validate_token_name(name: str) -> str:
    """One rule for every way in (API, dashboard, CLI): a name ends up in the audit actor string and
    on pages, so no control characters (CR/LF, escapes), no bidi overrides, no zero-width marks."""
    name = name.strip()
    if not TOKEN_NAME_RE.fullmatch(name):
        raise AccountError(
            "name", "must be 1-64 characters: letters, digits, spaces and . _ @ - (a letter or digit first)"
        )
    return name


def create_token(session: Session, user: User, name: str, *, actor: str) -> tuple[ApiToken, str]:
    """A new token for ``user``, audited in the caller's transaction; the plaintext is returned once."""
    name = validate_token_name(name)
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=token_hash(plaintext), prefix=plaintext[:12])
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="token.create",
        target=f"token:{token.id}",
        outcome="ok",
        detail={"user": user.username, "name": token.name},
    )
    return token, plaintext


def resolve_token(session: Session, plaintext: str) -> tuple[ApiToken, User] | None:
    if not plaintext.startswith(TOKEN_PREFIX):
        return None
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash(plaintext))
    ).first()
    if row is None:
        return None
    token, user = row[0], row[1]
    if token.revoked_at is not None or user.disabled:
        return None
    return token, user


def needs_touch(token: ApiToken) -> bool:
    last = token.last_used_at
    return last is None or dt.datetime.now(dt.UTC) - last >= LAST_USED_RESOLUTION


def touch(session: Session, token_id: int) -> None:
    session.execute(
        update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=dt.datetime.now(dt.UTC))
    )


def revoke_token(session: Session, token_id: int, *, actor: str) -> ApiToken | None:
    """Revoke (idempotently) and audit; ``None`` when there is no such token."""
    token = session.get(ApiToken, token_id)
    if token is None:
        return None
    if token.revoked_at is None:
        token.revoked_at = dt.datetime.now(dt.UTC)
    audit.record(session, actor=actor, action="token.revoke", target=f"token:{token.id}", outcome="ok")
    return token


def list_tokens(session: Session, user_id: int | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return list(session.scalars(query))
