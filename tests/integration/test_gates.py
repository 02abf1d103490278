"""Feature gates: switched by an admin at run time, audited, seen by every process, defaults from config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from nodewright import gates
from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.db.models import AuditEvent
from nodewright.security.roles import Role
from tests.support.apps import RoleUser, make_settings


def gate(client: TestClient, headers: dict[str, str]) -> dict[str, object]:
    body = client.get("/api/gates", headers=headers).json()
    return next(g for g in body["gates"] if g["name"] == "provider_create")


def test_put_switches_a_gate_and_audits_it(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    admin, viewer = role_users[Role.admin].headers, role_users[Role.viewer].headers
    assert gate(client, viewer) | {} == gate(client, viewer)
    before = gate(client, viewer)
    assert before["enabled"] is True and before["default"] is True and before["updated_by"] is None

    response = client.put("/api/gates", json={"provider_create": False}, headers=admin)
    assert response.status_code == 200, response.text
    after = gate(client, viewer)
    assert after["enabled"] is False and after["updated_by"] == "user:admin-user/token:admin-token"
    with app_context.database.session() as session:
        assert not gates.is_enabled(session, app_context.settings, gates.PROVIDER_CREATE)
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == "gate.set")).all()
        assert [(r.target, r.detail) for r in rows] == [
            ("gate:provider_create", {"enabled": False, "was": True})
        ]


def test_bad_gate_bodies_are_4xx_naming_the_field(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    admin = role_users[Role.admin].headers
    for body, field in (
        ({"provider_create": "false"}, "provider_create"),  # strings are not booleans
        ({"provider_create": 0}, "provider_create"),
        ({"nodes_delete": False}, "nodes_delete"),  # no such gate
        ({}, "body"),
    ):
        response = client.put("/api/gates", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.json()["detail"], response.json()
    with app_context.database.session() as session:
        assert gates.is_enabled(session, app_context.settings, gates.PROVIDER_CREATE)  # nothing half-written


def test_config_default_and_other_processes_see_a_change(db_url: str, tmp_path: Path) -> None:
    closed = make_settings(db_url, tmp_path / "a", gate_provider_create=False)
    with TestClient(create_app(closed, start_workers=False)) as first:
        ctx: AppContext = first.app.state.ctx  # type: ignore[attr-defined]
        with ctx.database.session() as session:
            assert not gates.is_enabled(session, closed, gates.PROVIDER_CREATE)  # the configured default

        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
        env |= {"NODEWRIGHT_DATA_DIR": str(tmp_path / "cli"), "NODEWRIGHT_DATABASE_URL": db_url}
        env["NODEWRIGHT_SECRET_KEYS"] = closed.secret_keys.get_secret_value()  # type: ignore[union-attr]
        cli = [sys.executable, "-m", "nodewright.cli", "gates", "--local"]
        switched = subprocess.run(
            [*cli[:-1], "set", "provider_create", "on", "--local"], env=env, capture_output=True, text=True
        )
        assert switched.returncode == 0, switched.stderr
        assert switched.stdout.startswith("provider_create: on (set by cli ")
        assert switched.stdout.rstrip().endswith("in the local installation")
        # The running app's process sees the other process's change without a restart.
        with ctx.database.session() as session:
            assert gates.is_enabled(session, closed, gates.PROVIDER_CREATE)

        listed = subprocess.run(cli, env=env, capture_output=True, text=True)
        assert listed.returncode == 0 and "provider_create: on" in listed.stdout
        for bad in (["set", "provider_create", "maybe"], ["set", "nope", "on"]):
            refused = subprocess.run([*cli, *bad], env=env, capture_output=True, text=True)
            assert refused.returncode != 0 and refused.stderr.strip() and "Traceback" not in refused.stderr
