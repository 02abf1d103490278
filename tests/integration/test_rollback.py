# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""docs/rollback.md, performed step by step: gate off, reads keep working, pinned contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import create_role_users, make_settings


def test_the_three_rollback_steps(db_url: str, tmp_path: Path, sim: SimServer) -> None:
    settings = make_settings(db_url, tmp_path / "data")
    with TestClient(create_app(settings, start_workers=False)) as client:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        users = create_role_users(ctx)
        admin, operator, viewer = (users[r].headers for r in (Role.admin, Role.operator, Role.viewer))
        provider = client.post(
            "/api/providers",
            json={"kind": "hetzner", "name": "sim", "token": random_token(), "api_endpoint": sim.api_url},
            headers=admin,
        ).json()["id"]
        request = {"provider_id": provider, "name": "web-1", "location": "fsn1", "server_type": "cx23",
                   "image": "ubuntu-24.04"}  # fmt: skip
        assert client.post("/api/nodes", json=request, headers=operator).status_code == 202

        # Step 1: the gate goes off from another process (the CLI), no restart.
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
        env |= {"NODEWRIGHT_DATA_DIR": str(tmp_path / "cli"), "NODEWRIGHT_DATABASE_URL": db_url}
        env["NODEWRIGHT_SECRET_KEYS"] = settings.secret_keys.get_secret_value()  # type: ignore[union-attr]
        command = [sys.executable, "-m", "nodewright.cli", "gates", "set", "provider_create", "off"]
        command.append("--local")
        off = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert off.returncode == 0, off.stderr
        refused = client.post("/api/nodes", json={**request, "name": "web-2"}, headers=operator)
        assert refused.status_code == 503 and refused.json()["code"] == "feature_disabled"

        # Step 2: provider diagnosis and every read path still work.
        for path in ("/api/providers", f"/api/providers/{provider}", f"/api/providers/{provider}/catalog",
                     "/api/nodes", "/api/gates", "/api/jobs"):  # fmt: skip
            assert client.get(path, headers=viewer).status_code == 200, path
        assert client.post(f"/api/providers/{provider}/check", headers=admin).status_code == 200

    # Step 3: restart pinned to provider/v1; another contract version is refused by name.
    pinned = make_settings(db_url, tmp_path / "data", node_contracts=["provider/v1"])
    pinned.secret_keys = settings.secret_keys
    with TestClient(create_app(pinned, start_workers=False)) as client:
        assert client.put("/api/gates", json={"provider_create": True}, headers=admin).status_code == 200
        other = client.post(
            "/api/nodes", json={**request, "name": "web-3", "contract": "provider/v2"}, headers=operator
        )
        assert other.status_code == 422 and other.json()["errors"][0]["field"] == "contract"
        ok = client.post(
            "/api/nodes", json={**request, "name": "web-3", "contract": "provider/v1"}, headers=operator
        )
        assert ok.status_code == 202 and ok.json()["node"]["contract"] == "provider/v1"
    schema = create_app(pinned, start_workers=False).openapi()["components"]["schemas"]["NodeCreateBody"]
    assert schema["x-contract"] == "provider/v1"
