# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Nodes end to end on the simulator with real SSH nodes and real Ansible: POST /api/nodes -> 202 ->
acquire -> connect (pinned host key) -> provision (baseline profile) -> verify -> ready; DELETE ->
the server is gone at the simulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.providers.acquisition import load_client_private_key
from nodewright.provisioning.agent import ssh_agent
from nodewright.provisioning.ssh import PinnedSsh
from nodewright.provisioning.target import SshTarget
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, ssh_sim_server  # noqa: F401
from tests.support.apps import RoleUser, create_role_users, make_settings
from tests.support.system import require_binary


@pytest.fixture
def app(
    db_url: str, tmp_path: Path, ssh_sim_server: SimServer
) -> Iterator[tuple[TestClient, dict[Role, RoleUser]]]:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    settings = make_settings(db_url, tmp_path / "data", embedded_workers=2, job_poll_interval=0.2)
    with TestClient(create_app(settings)) as client:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        yield client, create_role_users(ctx)


def sim_servers(sim: SimServer) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = httpx.get(sim.base_url + "/_sim/servers").json()["servers"]
    return servers


def connect_provider(client: TestClient, admin: RoleUser, sim: SimServer) -> int:
    response = client.post(
        "/api/providers",
        json={"kind": "hetzner", "name": "sim", "token": random_token(), "api_endpoint": sim.api_url,
              "ssh_port": sim.config.ssh_port},
        headers=admin.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    provider_id: int = response.json()["id"]
    return provider_id


def wait_status(
    client: TestClient, viewer: RoleUser, node_id: int, *statuses: str, timeout: float = 240
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    node: dict[str, Any] = {}
    while time.monotonic() < deadline:
        node = client.get(f"/api/nodes/{node_id}", headers=viewer.headers).json()
        if node["status"] in statuses:
            return node
        time.sleep(0.2)
    raise AssertionError(f"node {node_id} stayed {node.get('status')} ({node.get('error')})")


def test_create_provision_verify_release(
    app: tuple[TestClient, dict[Role, RoleUser]], ssh_sim_server: SimServer, tmp_path: Path
) -> None:
    client, users = app
    admin, operator, viewer = users[Role.admin], users[Role.operator], users[Role.viewer]
    provider_id = connect_provider(client, admin, ssh_sim_server)
    operator_key = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop"
    )
    body = {
        "provider_id": provider_id,
        "name": "web-1",
        "location": "fsn1",
        "server_type": "cx22",
        "image": "ubuntu-24.04",
        "labels": {"role": "web"},
        "ssh_authorized_keys": [operator_key],
    }
    headers = {**operator.headers, "Idempotency-Key": "create-web-1"}
    created = client.post("/api/nodes", json=body, headers=headers)
    assert created.status_code == 202, created.text
    node, job = created.json()["node"], created.json()["job"]
    assert created.headers["location"] == f"/api/jobs/{job['id']}"
    assert (
        node["status"] == "pending" and node["contract"] == "provider/v1" and job["kind"] == "nodes.provision"
    )
    assert node["price"]["monthly_gross"]

    replay = client.post("/api/nodes", json=body, headers=headers)
    assert replay.status_code == 202 and replay.json()["node"]["id"] == node["id"]
    assert replay.json()["job"]["id"] == job["id"]
    conflict = client.post("/api/nodes", json={**body, "name": "web-2"}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"

    ready = wait_status(client, viewer, node["id"], "ready", "failed")
    assert ready["status"] == "ready", ready["error"]
    assert ready["server"]["id"] is not None and ready["ssh"]["command"]
    servers = sim_servers(ssh_sim_server)
    assert [s["id"] for s in servers] == [ready["server"]["id"]]  # exactly one server

    evidence = client.get(f"/api/nodes/{node['id']}/evidence", headers=viewer.headers).json()["evidence"]
    assert evidence["acquisition"]["server_id"] == ready["server"]["id"]
    assert evidence["acquisition"]["calls"] and all("status" in c for c in evidence["acquisition"]["calls"])
    assert evidence["connect"]["host_key_fingerprint"] == ready["host_key_fingerprint"]
    assert evidence["provision"]["recap"]["node"].get("failures", 0) == 0
    assert all(c["ok"] for c in evidence["checks"]) and len(evidence["checks"]) >= 4
    assert set(evidence["stages"]) == {"acquire", "connect", "provision", "verify"}

    # The marker is on the node, read over SSH pinned to the key nodewright generated for it.
    ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
    key = load_client_private_key(ctx.database, ctx.box, provider_id)
    target = SshTarget(
        ready["ssh"]["address"], ready["ssh"]["port"], "root", evidence["host_key"]["public_key"]
    )
    with ssh_agent(key, directory=tmp_path) as sock:
        marker = PinnedSsh(target, sock, tmp_path).run("cat /etc/nodewright/node.json")
    assert marker.returncode == 0, marker.stderr
    assert json.loads(marker.stdout)["node_id"] == node["id"]

    log = client.get(f"/api/jobs/{job['id']}/events", headers=viewer.headers).json()
    messages = [e["message"] for e in log["items"]]
    assert "task: Node marker" in messages and "node ready" in messages

    released = client.delete(f"/api/nodes/{node['id']}", headers=operator.headers)
    assert released.status_code == 202, released.text
    gone = wait_status(client, viewer, node["id"], "released", "failed", timeout=60)
    assert gone["status"] == "released", gone["error"]
    assert sim_servers(ssh_sim_server) == []
    again = client.delete(f"/api/nodes/{node['id']}", headers=operator.headers)
    assert again.status_code == 409
