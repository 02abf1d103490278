"""Dashboard sessions: a random session id in a signed, HttpOnly, SameSite cookie.

The server keeps only the id's hash, so logout and expiry are real revocation, and the signature lets
a forged cookie be rejected before any database lookup. The CSRF token of a session is derived from
the session id with an HMAC, so nothing more needs storing; anonymous forms (login) use a signed
double-submit cookie instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodewright.db.models import AppMeta, User, WebSession
from nodewright.security.hashing import token_hash
from nodewright.security.secretbox import SESSION_KEY_META, SecretBox

SESSION_COOKIE = "nw_session"
LOGIN_CSRF_COOKIE = "nw_login_csrf"


def tokens_match(sent: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one.

    Compared as UTF-8 bytes: ``hmac.compare_digest`` raises ``TypeError`` for a ``str`` holding
    non-ASCII characters, which would turn a forged token into a 500 instead of a refusal.
    """
    if not sent:
        return False
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode())


def load_signing_key(session: Session, box: SecretBox) -> str:
    """The cookie-signing key: random, shared by every process through the database, encrypted."""
    row = session.get(AppMeta, SESSION_KEY_META)
    if row is None:
        key = secrets.token_urlsafe(32)
        session.add(AppMeta(key=SESSION_KEY_META, value=box.encrypt(key)))
        session.flush()
        return key
    return box.decrypt(row.value).reveal()


class SessionSigner:
    def __init__(self, signing_key: str, max_age_seconds: int) -> None:
        self._key = signing_key.encode()
        self._serializer = URLSafeTimedSerializer(signing_key, salt="nodewright.session")
        self._login_serializer = URLSafeTimedSerializer(signing_key, salt="nodewright.login-csrf")
        self.max_age_seconds = max_age_seconds

    def sign(self, session_id: str) -> str:
        return self._serializer.dumps(session_id)

    def unsign(self, cookie: str) -> str | None:
        try:
            value = self._serializer.loads(cookie, max_age=self.max_age_seconds)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def csrf_for(self, session_id: str) -> str:
        return hmac.new(self._key, b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()

    def account_digest(self, account: str) -> str:
        """A keyed digest of what was typed into the sign-in form's user field, the same in every
        process: the shared throttle counts by it without storing the text, which is often a
        password typed into the wrong field."""
        return hmac.new(self._key, b"account:" + account.encode(), hashlib.sha256).hexdigest()

    def new_login_csrf(self) -> tuple[str, str]:
        """(form token, cookie value) for a form shown before login."""
        token = secrets.token_urlsafe(24)
        return token, self._login_serializer.dumps(token)

    def check_login_csrf(self, form_token: str | None, cookie: str | None) -> bool:
        if not form_token or not cookie:
            return False
        try:
            expected = self._login_serializer.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return isinstance(expected, str) and tokens_match(form_token, expected)


def start_session(session: Session, user: User, max_age_seconds: int) -> str:
    session_id = secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.UTC)
    session.add(
        WebSession(
            user_id=user.id,
            token_hash=token_hash(session_id),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=max_age_seconds),
        )
    )
    return session_id


def resolve_session(session: Session, session_id: str) -> User | None:
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == token_hash(session_id))
    ).first()
    if row is None:
        return None
    web_session, user = row[0], row[1]
    if web_session.expires_at <= dt.datetime.now(dt.UTC) or user.disabled:
        return None
    return user


def end_session(session: Session, session_id: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(session_id)))


def purge_expired(session: Session) -> int:
    result = session.execute(delete(WebSession).where(WebSession.expires_at <= dt.datetime.now(dt.UTC)))
    return int(getattr(result, "rowcount", 0) or 0)
