"""The small availability and hygiene fixes: strict path ids, ``Allow`` on 405, token names on the
dashboard, private SQLite files, 503 on a database outage."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from nodewright.context import AppContext
from nodewright.db import migrate
from nodewright.db.engine import make_engine
from nodewright.db.models import ApiToken, AuditEvent
from nodewright.security.roles import Role
from tests.integration.test_dashboard_auth import login
from tests.support.apps import RoleUser
from tests.support.databases import postgres_admin_url

LOOSE_IDS = ["1.0", "1e0", "+1", " 1", "01.", "\u0661", "0x1", "1_0"]


@pytest.mark.parametrize("loose", LOOSE_IDS)
def test_loosely_written_ids_are_refused(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], loose: str
) -> None:
    admin = role_users[Role.admin].headers
    response = client.delete(f"/api/tokens/{loose}", headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "token_id"
    assert client.get(f"/api/jobs/{loose}", headers=admin).status_code == 422
    with app_context.database.session() as session:
        assert session.scalar(select(ApiToken.revoked_at).where(ApiToken.id == 1)) is None
    csrf = login(client, "admin-user")
    page = client.post(f"/tokens/{loose}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert 400 <= page.status_code < 500
    with app_context.database.session() as session:
        assert session.scalar(select(ApiToken.revoked_at).where(ApiToken.id == 1)) is None
    # The plain form still works.
    assert client.delete("/api/tokens/1", headers=admin).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("PUT", "/api/users", "GET, POST"),
        ("PATCH", "/api/tokens", "GET, POST"),
        ("GET", "/api/tokens/1", "DELETE"),
        ("DELETE", "/api/jobs", "GET"),
        ("PUT", "/login", "GET, POST"),
    ],
)
def test_405_allow_lists_every_method_of_the_path(
    client: TestClient, role_users: dict[Role, RoleUser], method: str, path: str, expected: str
) -> None:
    response = client.request(method, path, headers=role_users[Role.admin].headers)
    assert response.status_code == 405
    assert response.headers["allow"] == expected
    assert response.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "name",
    ["line\r\nbreak", "esc\x1b[31mred", "bidi\u202egnp.exe", "zero\u200bwidth", "tab\there", "ünï"],
)
def test_dashboard_token_names_follow_the_api_rule(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], name: str
) -> None:
    csrf = login(client, "admin-user")
    page = client.post("/tokens", data={"name": name, "csrf_token": csrf})
    assert page.status_code == 422
    assert "Token name" in page.text
    api = client.post(
        "/api/tokens", json={"username": "viewer-user", "name": name}, headers=role_users[Role.admin].headers
    )
    assert api.status_code == 422
    with app_context.database.session() as session:
        names = set(session.scalars(select(ApiToken.name)))
        details = [str(d) for d in session.scalars(select(AuditEvent.detail))]
        actors = list(session.scalars(select(AuditEvent.actor)))
    assert name.strip() not in names
    assert not [d for d in details + actors if name.strip() in d]


def test_sqlite_database_files_are_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "fresh" / "nodewright.db"
        path.parent.mkdir()
        engine = make_engine(f"sqlite:///{path}")
        migrate.upgrade(engine)
        with engine.connect() as conn:  # keep it open: -wal and -shm exist while connected
            conn.execute(text("SELECT 1"))
            for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                assert name.exists(), name
                assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
        engine.dispose()
        # A file left world-readable by an earlier version is tightened when it is opened.
        path.chmod(0o644)
        make_engine(f"sqlite:///{path}").dispose()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)


@pytest.mark.db_only("postgresql", "a PostgreSQL outage")
def test_postgresql_outage_is_503_with_retry_after(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], db_url: str
) -> None:
    admin_url = postgres_admin_url()
    assert admin_url is not None
    name = make_url(db_url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    headers = role_users[Role.viewer].headers
    assert client.get("/api/jobs", headers=headers).status_code == 200
    try:
        with admin.connect() as conn:
            # New connections are refused and the pooled ones are terminated: what a restart does.
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
        for path in ("/api/jobs", "/api/me"):
            response = client.get(path, headers=headers)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            body = response.json()
            assert body["code"] == "database_unavailable" and body["retryable"] is True
            assert "Traceback" not in response.text and "psycopg" not in response.text
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert client.get("/api/jobs", headers=headers).status_code == 200
