"""Audit entries for mutations; the first-start admin; readiness when migrations are pending."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db import migrate
from nodewright.db.engine import make_engine
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
    assert all(i["actor"] == "user:admin-user/token:admin-token" for i in items)
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
