"""``PATCH /api/users/{name}`` and the audit filters' edges: the last enabled admin stays one even
when two admins demote each other at the same moment (PostgreSQL, where the count could race), an
empty change and a bad name are refused, and a date the database cannot hold is a 422, not a 500."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from nodewright.context import AppContext
from nodewright.security import accounts
from nodewright.security.roles import Role
from tests.support.apps import RoleUser


def test_patch_refuses_nothing_to_change_and_bad_names(
    client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    admin = role_users[Role.admin].headers
    empty = client.patch("/api/users/viewer-user", json={}, headers=admin)
    assert empty.status_code == 422 and "nothing to change" in empty.text
    assert client.patch("/api/users/Bad%20Name", json={"role": "viewer"}, headers=admin).status_code == 422
    assert client.patch("/api/users/nobody", json={"role": "viewer"}, headers=admin).status_code == 404
    assert client.patch("/api/users/viewer-user", json={"role": "root"}, headers=admin).status_code == 422


def test_a_password_reset_is_one_time_and_ends_the_users_sessions(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    admin = role_users[Role.admin].headers
    generated = client.post("/api/users/viewer-user/password", headers=admin)
    assert generated.status_code == 200, generated.text
    body = generated.json()
    assert body["must_change_password"] is True and len(body["password"]) >= 12
    assert generated.headers["cache-control"] == "no-store"
    given = client.post("/api/users/viewer-user/password", json={"password": "chosen by the admin"},
                        headers=admin)  # fmt: skip
    assert given.status_code == 200 and given.json()["password"] is None
    with app_context.database.session() as session:
        user = accounts.get_user(session, "viewer-user")
        assert user is not None and user.must_change_password
        assert accounts.verify_password(user.password_hash, "chosen by the admin")
    short = client.post("/api/users/viewer-user/password", json={"password": "short"}, headers=admin)
    assert short.status_code == 422 and "password" in short.text
    assert client.post("/api/users/nobody/password", headers=admin).status_code == 404
    made = client.post("/api/users", json={"username": "newbie", "role": "viewer"}, headers=admin)
    assert made.status_code == 201 and len(made.json()["password"]) >= 12
    with app_context.database.session() as session:
        newbie = accounts.get_user(session, "newbie")
        assert newbie is not None and newbie.must_change_password


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+01:00"])
def test_audit_since_out_of_range_is_a_422(
    client: TestClient, role_users: dict[Role, RoleUser], since: str
) -> None:
    answer = client.get("/api/audit", params={"since": since}, headers=role_users[Role.admin].headers)
    assert answer.status_code == 422 and "since" in answer.text


@pytest.mark.db_only("postgresql", reason="SQLite serialises writers: the race cannot happen there")
def test_two_admins_demoting_each_other_at_once_leave_one_admin(app_context: AppContext) -> None:
    db = app_context.database
    with db.session(write=True) as session:
        accounts.create_user(session, "ann", "ann-password-123", Role.admin)
        accounts.create_user(session, "bob", "bob-password-123", Role.admin)
    second: dict[str, object] = {}

    def demote_ann() -> None:
        try:
            with db.session(write=True) as session:
                accounts.update_user(session, "ann", role=Role.viewer)
            second["outcome"] = "done"
        except accounts.AccountError as exc:
            second["outcome"] = exc.kind

    with db.session(write=True) as session:
        accounts.update_user(session, "bob", role=Role.viewer)  # not committed yet
        thread = threading.Thread(target=demote_ann)
        thread.start()
        thread.join(1.5)
        # Without the lock the other transaction counts two admins and commits at once.
        assert thread.is_alive(), second
    thread.join(30)
    assert second == {"outcome": "conflict"}
    with db.session() as session:
        ann, bob = accounts.get_user(session, "ann"), accounts.get_user(session, "bob")
        assert ann is not None and bob is not None
        assert (ann.role, bob.role) == ("admin", "viewer")
