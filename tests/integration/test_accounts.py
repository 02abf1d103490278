"""Account details an operator relies on: old password hashes are upgraded at login."""

from __future__ import annotations

from argon2 import PasswordHasher

from nodewright.context import AppContext
from nodewright.db.models import User
from nodewright.security import accounts
from nodewright.security.passwords import needs_rehash


def test_login_upgrades_a_weak_hash(app_context: AppContext) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("an old long password")
    assert needs_rehash(weak)
    with app_context.database.session(write=True) as session:
        session.add(User(username="old", password_hash=weak, role="viewer"))
    with app_context.database.session(write=True) as session:
        assert accounts.authenticate(session, "old", "wrong password!!") is None
    with app_context.database.session() as session:
        user = accounts.get_user(session, "old")
        assert user is not None and user.password_hash == weak  # a failed login changes nothing
    with app_context.database.session(write=True) as session:
        assert accounts.authenticate(session, "old", "an old long password") is not None
    with app_context.database.session() as session:
        user = accounts.get_user(session, "old")
        assert user is not None and user.password_hash != weak and not needs_rehash(user.password_hash)
        assert accounts.authenticate(session, "old", "an old long password") is not None
