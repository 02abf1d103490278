"""Audit entries for mutations; the first-start admin; readiness when migrations are pending."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import delete

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db import migrate
from nodewright.db.engine import make_engine
from nodewright.db.models import User
from nodewright.security import accounts
from nodewright.security.roles import Role
from tests.support.apps import RoleUser


def test_mutations_are_audited(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    admin = role_users[Role.admin].headers
    client.post(
        "/api/users",
        json={"username": "audited", "role": "viewer", "password": "long enough pw 1"},
        headers=admin,
    )
    token_id = client.post("/api/tokens", json={"username": "audited", "name": "t"}, headers=admin).json()[
        "id"
    ]
    client.delete(f"/api/tokens/{token_id}", headers=admin)
    items = client.get("/api/audit", headers=admin).json()["items"]
    actions = [(i["action"], i["target"], i["outcome"]) for i in items]
    assert ("user.create", "user:audited", "ok") in actions
    assert ("token.create", f"token:{token_id}", "ok") in actions
    assert ("token.revoke", f"token:{token_id}", "ok") in actions
    assert items[0]["id"] > items[-1]["id"]  # newest first
    mine = [i for i in items if i["target"] in ("user:audited", f"token:{token_id}")]
    assert len(mine) == 3 and all(i["actor"] == "user:admin-user/token:admin-token" for i in mine)
    filtered = client.get("/api/audit?action=token.revoke", headers=admin).json()["items"]
    assert [i["action"] for i in filtered] == ["token.revoke"]


def test_bootstrap_admin_only_once(app_context: AppContext) -> None:
    with app_context.database.session(write=True) as session:
        first = accounts.bootstrap_admin(session)
    assert first is not None and first.username == "admin" and len(first.password) >= 12
    with app_context.database.session(write=True) as session:
        assert accounts.bootstrap_admin(session) is None
        user = accounts.authenticate(session, "admin", first.password)
        assert user is not None and user.role == "admin"


def test_readyz_reports_pending_migrations(db_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=db_url)
    with TestClient(create_app(settings, start_workers=False)) as client:
        assert client.get("/readyz").status_code == 200
        engine = make_engine(db_url)
        try:
            migrate.downgrade(engine, "0001")
            response = client.get("/readyz")
        finally:
            migrate.upgrade(engine)
            engine.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "migrations_pending" and "nodewright db upgrade" in body["hint"]


def _denied(client: TestClient, admin: dict[str, str]) -> list[tuple[str, str, str, str]]:
    items = client.get("/api/audit?limit=500", headers=admin).json()["items"]
    return [
        (i["actor"], i["action"], i["target"], i["detail"].get("reason"))
        for i in items
        if i["outcome"] == "denied"
    ]


def test_refused_mutations_are_audited(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    """A known caller's refused attempt to change something is in the audit log as denied."""
    from tests.integration.test_dashboard_auth import login

    admin = role_users[Role.admin].headers
    body = {"username": "sneaky", "role": "admin", "password": "long enough pw 1"}
    assert client.post("/api/users", json=body, headers=role_users[Role.viewer].headers).status_code == 403
    assert client.get("/api/users", headers=role_users[Role.viewer].headers).status_code == 403  # a read
    csrf = login(client, "operator-user")
    assert client.post("/api/users", json=body).status_code == 403  # session, no CSRF header
    assert client.post("/tokens", data={"name": "x", "csrf_token": csrf}).status_code == 403  # page
    denied = _denied(client, admin)
    assert ("user:viewer-user/token:viewer-token", "POST /api/users", "/api/users", "forbidden") in denied
    assert ("user:operator-user", "POST /api/users", "/api/users", "csrf_failed") in denied
    assert ("user:operator-user", "POST /tokens", "/tokens", "forbidden") in denied
    assert len(denied) == 3  # reads are not mutations


def test_longest_actor_names_are_audited(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    """user:<64 characters>/token:<64 characters> is longer than the actor column: the change
    must still go through (PostgreSQL refuses over-long values)."""
    from nodewright.security import api_tokens

    with app_context.database.session(write=True) as session:
        user = accounts.create_user(session, "a" * 64, "long enough pw 1", Role.admin)
        _token, plaintext = api_tokens.create_token(session, user, "t" * 64, actor="test")
    response = client.post(
        "/api/users",
        json={"username": "made-by-long", "role": "viewer", "password": "long enough pw 1"},
        headers={"Authorization": f"Bearer {plaintext}"},
    )
    assert response.status_code == 201, response.text
    items = client.get("/api/audit", headers=role_users[Role.admin].headers).json()["items"]
    assert any(i["target"] == "user:made-by-long" and i["actor"].startswith("user:aaaa") for i in items)


def test_bootstrap_admin_when_processes_start_together(app_context: AppContext) -> None:
    """Only one of several processes starting at once creates `admin` and shows a password; the
    others start normally."""
    from tests.integration.test_secretbox import _at_once

    with app_context.database.session(write=True) as session:
        session.execute(delete(User))
    results = _at_once(8, lambda: accounts.bootstrap_admin_once(app_context.database))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert len([r for r in results if isinstance(r, accounts.Bootstrap)]) == 1
