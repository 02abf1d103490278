"""Building the real app against a test database, and users with tokens for each role."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db.models import User
from nodewright.security import api_tokens
from nodewright.security.passwords import hash_password
from nodewright.security.roles import Role

TEST_PASSWORD = "correct horse battery staple"


def make_settings(db_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": db_url,
        "secret_keys": SecretStr(Fernet.generate_key().decode()),
        "embedded_workers": 0,
        # Tests sign in many times a second; the production budget (1/s) is tested on its own.
        "password_checks_per_second": 1000.0,
        # Connecting a provider calls its endpoint: tests reach loopback simulators only, never the
        # real API (a request without api_endpoint, or a generated URL, is refused as bad input).
        "provider_endpoints": "http://127.0.0.1:",
        # Webhook receivers in tests listen on loopback, which only this explicit entry allows.
        "webhook_endpoints": "http://127.0.0.1:",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextmanager
def opened_context(settings: Settings) -> Iterator[AppContext]:
    """An app context on ``settings``, closed at the end (one "process" of the app)."""
    ctx = AppContext.open(settings)
    try:
        yield ctx
    finally:
        ctx.close()


@dataclass(frozen=True)
class RoleUser:
    username: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@functools.cache
def _test_password_hash() -> str:
    # argon2 is deliberately slow (~0.2 s); hashing once per run keeps three users per test cheap.
    return hash_password(TEST_PASSWORD)


def create_role_users(ctx: AppContext) -> dict[Role, RoleUser]:
    users: dict[Role, RoleUser] = {}
    with ctx.database.session(write=True) as session:
        for role in Role:
            user = User(username=f"{role.value}-user", password_hash=_test_password_hash(), role=role.value)
            session.add(user)
            session.flush()
            _token, plaintext = api_tokens.create_token(session, user, f"{role.value}-token", actor="test")
            users[role] = RoleUser(user.username, role, plaintext)
    return users
