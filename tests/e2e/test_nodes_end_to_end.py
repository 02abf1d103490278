# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Nodes end to end on the simulator with real SSH nodes and real Ansible: POST /api/nodes -> 202 ->
acquire -> connect (pinned host key) -> provision (baseline profile) -> verify -> ready; DELETE ->
the server is gone at the simulator."""

from __future__ import annotations

import json
import tempfile
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
from tests.support.nodes import connect_sim, wait_for_node
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


def test_create_provision_verify_release(
    app: tuple[TestClient, dict[Role, RoleUser]], ssh_sim_server: SimServer, tmp_path: Path
) -> None:
    client, users = app
    admin, operator, viewer = users[Role.admin], users[Role.operator], users[Role.viewer]
    provider_id = connect_sim(client, admin.headers, ssh_sim_server)
    operator_key = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop"
    )
    body = {
        "provider_id": provider_id,
        "name": "web-1",
        "location": "fsn1",
        "server_type": "cx23",
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

    ready = wait_for_node(client, viewer.headers, node["id"], "ready", "failed")
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
    gone = wait_for_node(client, viewer.headers, node["id"], "released", "failed", timeout=60)
    assert gone["status"] == "released", gone["error"]
    assert sim_servers(ssh_sim_server) == []
    again = client.delete(f"/api/nodes/{node['id']}", headers=operator.headers)
    assert again.status_code == 409


@pytest.mark.db_only("sqlite", reason="where secrets may surface does not depend on the database")
def test_node_secrets_never_leak(
    app: tuple[TestClient, dict[Role, RoleUser]],
    ssh_sim_server: SimServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The provider token, nodewright's client private key and the node's host private key appear
    nowhere but encrypted: not in API answers, pages, job events, evidence, audit, logs, the database,
    the environment of ansible-playbook, or files left behind by a run."""
    import logging

    from nodewright.db.models import Node
    from nodewright.security.redaction import RedactingFilter, install_logging_filter
    from tests.integration.test_dashboard_auth import login
    from tests.support.canary import database_dump

    client, users = app
    admin, operator = users[Role.admin], users[Role.operator]
    install_logging_filter(logging.getLogger())
    caplog.handler.addFilter(RedactingFilter())
    token = random_token()
    with caplog.at_level(logging.DEBUG):
        response = client.post(
            "/api/providers",
            json={"kind": "hetzner", "name": "canary", "token": token, "api_endpoint": ssh_sim_server.api_url,
                  "ssh_port": ssh_sim_server.config.ssh_port},
            headers=admin.headers,
        )  # fmt: skip
        provider_id = response.json()["id"]
        body = {"provider_id": provider_id, "name": "canary-1", "location": "fsn1", "server_type": "cx23",
                "image": "ubuntu-24.04", "labels": {token: "x"}}  # fmt: skip
        created = client.post("/api/nodes", json=body, headers=operator.headers)
        assert created.status_code == 422  # a 64-character label key: refused, and not echoed whole
        outputs_early = [created.text]
        body["labels"] = {}
        created = client.post("/api/nodes", json=body, headers=operator.headers)
        node_id, job_id = created.json()["node"]["id"], created.json()["job"]["id"]
        ready = wait_for_node(client, users[Role.viewer].headers, node_id, "ready", "failed")
        assert ready["status"] == "ready", ready["error"]
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        client_key = load_client_private_key(ctx.database, ctx.box, provider_id).reveal()
        with ctx.database.session() as session:
            node = session.get(Node, node_id)
            assert node is not None and node.host_key_secret_id is not None
            host_key = ctx.box.load(session, node.host_key_secret_id).reveal()
        target = SshTarget(
            ready["ssh"]["address"], ready["ssh"]["port"], "root", ready_key(client, users, node_id)
        )
        with ssh_agent(
            load_client_private_key(ctx.database, ctx.box, provider_id), directory=tmp_path
        ) as sock:
            node_env = (
                PinnedSsh(target, sock, tmp_path)
                .run("cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; cat /etc/nodewright/node.json")
                .stdout
            )
        outputs = [*outputs_early, created.text, node_env]
        for path in ("/api/nodes", f"/api/nodes/{node_id}", f"/api/nodes/{node_id}/evidence",
                     f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/events?limit=1000", "/api/orphans",
                     "/api/providers", f"/api/providers/{provider_id}", "/api/audit?limit=500"):  # fmt: skip
            answer = client.get(path, headers=admin.headers)
            assert answer.status_code == 200, path
            outputs.append(answer.text)
        login(client, "operator-user")
        for page in ("/nodes", f"/nodes/{node_id}", f"/jobs/{job_id}", "/providers"):
            outputs.append(client.get(page).text)
        released = client.delete(f"/api/nodes/{node_id}", headers=operator.headers)
        assert (
            wait_for_node(client, users[Role.viewer].headers, node_id, "released", "failed", timeout=60)[
                "status"
            ]
            == "released"
        )
        outputs.append(
            client.get(f"/api/jobs/{released.json()['job']['id']}/events", headers=admin.headers).text
        )

    everything = "\n".join(outputs)
    dump = database_dump(ctx.database)
    leftovers = "".join(
        p.read_text(errors="replace") for p in Path(tempfile.gettempdir()).glob("nw-*/**/*") if p.is_file()
    )
    for name, secret in (("provider token", token), ("client key", client_key), ("host key", host_key)):
        body_of_key = secret.strip().splitlines()[1] if "PRIVATE KEY" in secret else secret
        assert body_of_key not in everything, f"{name} in an API answer, page, job event or the node's env"
        assert body_of_key not in caplog.text, f"{name} in a log record"
        assert body_of_key not in dump, f"{name} in the database in plaintext"
        assert body_of_key not in leftovers, f"{name} in a file a run left behind"


def ready_key(client: TestClient, users: dict[Role, RoleUser], node_id: int) -> str:
    evidence = client.get(f"/api/nodes/{node_id}/evidence", headers=users[Role.viewer].headers).json()
    key: str = evidence["evidence"]["host_key"]["public_key"]
    return key
