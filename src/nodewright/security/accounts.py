"""Users: creation, authentication, the first-start bootstrap admin."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nodewright.db.database import Database
from nodewright.db.models import User
from nodewright.security.passwords import (
    MIN_PASSWORD_LENGTH,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from nodewright.security.roles import Role

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
BOOTSTRAP_USERNAME = "admin"


class AccountError(ValueError):
    """Bad input for an account operation; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str, *, kind: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.kind = kind  # invalid (bad input), not_found, conflict: what the CLI's exit code says


def validate_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):  # match() would let a trailing newline through ($)
        raise AccountError("username", "must be 1-64 characters: lower-case letters, digits, '.', '_' or '-'")
    return username


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    return password


def create_user(
    session: Session, username: str, password: str, role: Role | str, *, must_change: bool = False
) -> User:
    validate_username(username)
    validate_password(password)
    try:
        role = Role(role)
    except ValueError:
        raise AccountError("role", f"must be one of {', '.join(r.value for r in Role)}") from None
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountError("username", f"user {username!r} already exists", kind="conflict")
    user = User(username=username, password_hash=hash_password(password), role=role.value,
                must_change_password=must_change)  # fmt: skip
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled:
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


@dataclass(frozen=True)
class LoginCheck:
    """The outcome of a password check: the user when it succeeded; ``known`` tells whether the
    typed name is an existing account (only then may the name be kept in the audit log)."""

    user: User | None
    known: bool


def check_login(database: Database, username: str, password: str) -> LoginCheck:
    """Verify a password with no transaction open while argon2 runs.

    The user is read in a short read transaction, the hash is verified with none open (on SQLite a
    write transaction held for the ~50 ms of argon2 serialised every sign-in and, under a flood,
    made other writers fail with "database is locked"), and a rehash, when the parameters changed,
    is its own short write.
    """
    with database.session() as session:
        user = get_user(session, username)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled:
        return LoginCheck(None, user is not None)
    if needs_rehash(user.password_hash):
        new_hash = hash_password(password)
        with database.session(write=True) as session:
            session.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
    return LoginCheck(user, True)


class KnownUsernames:
    """The set of user names, re-read at most every ``ttl`` seconds: lets a flood of refused
    sign-ins be attributed (known account or not) without a query per request."""

    def __init__(self, database: Database, ttl: float = 5.0) -> None:
        self.database = database
        self.ttl = ttl
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def __contains__(self, username: object) -> bool:
        with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                with self.database.session() as session:
                    self._names = frozenset(session.scalars(select(User.username)))
                self._read_at = time.monotonic()
            return username in self._names


def get_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


@dataclass(frozen=True)
class Bootstrap:
    username: str
    password: str


def bootstrap_admin(session: Session) -> Bootstrap | None:
    """Create ``admin`` with a generated password when no user exists yet; else do nothing."""
    if session.scalar(select(func.count()).select_from(User)):
        return None
    password = generate_password()
    create_user(session, BOOTSTRAP_USERNAME, password, Role.admin, must_change=True)
    return Bootstrap(BOOTSTRAP_USERNAME, password)


def bootstrap_admin_once(database: Database) -> Bootstrap | None:
    """:func:`bootstrap_admin` in its own transaction, safe when several processes start at once:
    the one whose insert wins prints the password; the others find the user there (None)."""
    try:
        with database.session(write=True) as session:
            return bootstrap_admin(session)
    except IntegrityError:
        with database.session() as session:
            if get_user(session, BOOTSTRAP_USERNAME) is not None:
                return None
        raise


def update_user(
    session: Session, username: str, *, role: Role | str | None = None, disabled: bool | None = None
) -> User:
    """Change a user's role or switch them off. The last enabled admin can be neither demoted nor
    disabled (nobody could administer the installation over HTTP again)."""
    from sqlalchemy import delete, select

    from nodewright.db.models import WebSession

    user = get_user(session, username)
    if user is None:
        raise AccountError("username", f"no user named {username!r}", kind="not_found")
    new_role = Role(role).value if role is not None else user.role
    new_disabled = user.disabled if disabled is None else disabled
    if user.role == Role.admin.value and not user.disabled and (new_role != Role.admin.value or new_disabled):
        # The enabled admins' rows are locked before they are counted: two admins demoting each
        # other at once would otherwise both count two and both go through (PostgreSQL; SQLite
        # serialises writers anyway and has no FOR UPDATE).
        admins = session.scalars(
            select(User.id).where(User.role == Role.admin.value, User.disabled.is_(False)).with_for_update()
        ).all()
        if len(admins) <= 1:
            raise AccountError(
                "username",
                f"{username!r} is the last enabled admin: make another admin first",
                kind="conflict",
            )
    user.role, user.disabled = new_role, new_disabled
    if new_disabled:
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.flush()
    return user


def set_password(
    session: Session, user: User, password: str, *, must_change: bool, keep_session: str | None = None
) -> None:
    """A new password for ``user``; every dashboard session but ``keep_session`` ends. ``must_change``:
    the password was made for them (a reset), so the dashboard asks them to choose their own."""
    from sqlalchemy import delete

    from nodewright.db.models import WebSession
    from nodewright.security.hashing import token_hash

    validate_password(password)
    user.password_hash = hash_password(password)
    user.must_change_password = must_change
    ended = delete(WebSession).where(WebSession.user_id == user.id)
    if keep_session is not None:
        ended = ended.where(WebSession.token_hash != token_hash(keep_session))
    session.execute(ended)
    session.flush()
