# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""The remediation ladder on real simulated nodes: a node whose sshd stays down (its config broken,
so it does not come back after a reboot) is rebooted, then re-provisioned (which cannot connect),
then replaced: one new server, provisioned and verified, and only then the old one released. The
node keeps its id and name and is ready again on the new server; the alerts tell the whole story.

Intervals are the 5 s minimum; waits are deadlines, never timing assertions.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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
from nodewright.watching.policy import policy_for, remediation_delay
from tests.fixtures.sim import ssh_sim_server  # noqa: F401
from tests.support.apps import RoleUser, create_role_users, make_settings
from tests.support.nodes import connect_sim, wait_for_node
from tests.support.quick_profile import write_quick_profile
from tests.support.system import require_binary
from tests.support.webhook_receiver import webhook_receiver

PROFILE = """
remediation:
  enabled: true
  reboots: 1
  reprovisions: 1
  replaces: 1
watch:
  interval_seconds: 5
  timeout_seconds: 5
  grace_seconds: 0
  failures_before_degraded: 2
  successes_before_ready: 1
"""
# Three failing steps (each: 2 failed checks at 5 s, the step's delay, the step, a grace), then the
# replacement's provisioning and two passing checks, on a shared 2-core machine.
LADDER_WITHIN = 600


@pytest.fixture
def app(
    db_url: str, tmp_path: Path, ssh_sim_server: SimServer
) -> Iterator[tuple[TestClient, dict[Role, RoleUser]]]:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    settings = make_settings(db_url, tmp_path / "data", embedded_workers=2, job_poll_interval=0.2,
                             node_connect_deadline=12.0)  # fmt: skip
    # The ladder is the subject, not Ansible's work: the marker-only profile keeps each of the
    # provisionings (first, re-provision, replacement) to seconds.
    write_quick_profile(settings.resolved_profiles_dir / "heal", PROFILE)
    with TestClient(create_app(settings)) as client:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        yield client, create_role_users(ctx)


def break_sshd(
    client: TestClient, headers: dict[str, str], ctx: AppContext, node: dict[str, object], provider_id: int
) -> None:
    """Stop sshd and break its config, so it stays down across a reboot."""
    evidence = client.get(f"/api/nodes/{node['id']}/evidence", headers=headers).json()["evidence"]
    ssh_info = node["ssh"]
    assert isinstance(ssh_info, dict)
    target = SshTarget(ssh_info["address"], ssh_info["port"], "root", evidence["host_key"]["public_key"])
    with (
        tempfile.TemporaryDirectory(prefix="nw-e2e-", dir="/tmp") as workdir,
        ssh_agent(
            load_client_private_key(ctx.database, ctx.box, provider_id), directory=Path(workdir)
        ) as sock,
    ):
        ssh = PinnedSsh(target, sock, Path(workdir))
        try:
            done = ssh.run("echo 'NoSuchOption yes' >> /etc/ssh/sshd_config; service ssh stop")
            assert done.returncode in (0, 255), done.stderr  # 255: the session ended with sshd
        finally:
            ssh.close()


# The ladder's database logic runs on both databases in tests/integration/test_remediation.py; these
# real-node runs take minutes each and run once.
@pytest.mark.db_only(
    "sqlite", reason="real-node ladder: minutes per run; the logic is tested on both databases"
)
def test_a_node_whose_sshd_stays_down_is_rebooted_reprovisioned_then_replaced(
    app: tuple[TestClient, dict[Role, RoleUser]], ssh_sim_server: SimServer
) -> None:
    client, users = app
    operator = users[Role.operator].headers
    admin = users[Role.admin].headers
    ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
    provider_id = connect_sim(client, admin, ssh_sim_server)
    with webhook_receiver() as receiver:
        hook = client.post("/api/webhooks", json={"name": "ops", "url": receiver.url}, headers=admin)
        assert hook.status_code == 201, hook.text
        body = {"provider_id": provider_id, "name": "healme", "location": "fsn1", "server_type": "cx23",
                "image": "ubuntu-24.04", "profile": "heal"}  # fmt: skip
        created = client.post("/api/nodes", json=body, headers=operator)
        assert created.status_code == 202, created.text
        node_id = created.json()["node"]["id"]
        ready = wait_for_node(client, operator, node_id, "ready", "failed")
        assert ready["status"] == "ready", ready["error"]
        old_server = ready["server"]["id"]
        break_sshd(client, operator, ctx, ready, provider_id)
        wait_for_node(client, operator, node_id, "degraded", timeout=120)

        deadline = time.monotonic() + LADDER_WITHIN
        steps: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            health = client.get(f"/api/nodes/{node_id}/health", headers=operator).json()
            steps = [(r["action"], r["state"]) for r in reversed(health["remediations"])]
            if steps and steps[-1] == ("replace", "succeeded"):
                break
            assert not any(s == "exhausted" for _a, s in steps), steps
            time.sleep(1)
        assert steps == [("reboot", "failed"), ("reprovision", "failed"), ("replace", "succeeded")], steps
        node = client.get(f"/api/nodes/{node_id}", headers=operator).json()
        assert node["status"] == "ready" and node["name"] == "healme"
        new_server = node["server"]["id"]
        assert new_server != old_server

        # One server at the provider: the new one; the old one was released after it was ready.
        requests = httpx.get(ssh_sim_server.base_url + "/_sim/requests", params={"limit": 5000}).json()[
            "requests"
        ]
        paths = [(e["method"], e["path"]) for e in requests]
        creates = [i for i, p in enumerate(paths) if p == ("POST", "/v1/servers")]
        deletes = [i for i, p in enumerate(paths) if p == ("DELETE", f"/v1/servers/{old_server}")]
        assert len(creates) == 2 and len(deletes) == 1  # the node's first server, its replacement
        assert creates[-1] < deletes[0]  # never released first

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # In the order they happened: each delivery is a job of its own, so two events of one
            # transaction (recovered, remediation_succeeded) may arrive in either order.
            bodies = sorted(
                (json.loads(m.body) for m in receiver.received),
                key=lambda b: dt.datetime.fromisoformat(b["timestamp"].replace("Z", "+00:00")),
            )
            types = [b["type"] for b in bodies]
            if types.count("node.recovered") >= 1 and "node.remediation_succeeded" in types:
                break
            time.sleep(0.5)
    types = [t for t in types if t != "node.ready"]
    assert types == [
        "node.degraded",
        "node.remediation_started", "node.remediation_failed",
        "node.remediation_started", "node.remediation_failed",
        "node.remediation_started", "node.recovered", "node.remediation_succeeded",
    ], types  # fmt: skip
    last = next(b for b in reversed(bodies) if b["type"] == "node.remediation_succeeded")
    assert last["data"]["remediation"]["action"] == "replace"


@pytest.mark.db_only(
    "sqlite", reason="real-node brake: minutes per run; the logic is tested on both databases"
)
def test_the_brake_engages_when_half_the_fleet_fails_at_once_and_nothing_is_remediated(
    app: tuple[TestClient, dict[Role, RoleUser]], ssh_sim_server: SimServer
) -> None:
    """Two of a connection's three nodes go down together (powered off behind nodewright's back, as
    a provider incident does): both become degraded, the brake engages, and no remediation acts."""
    client, users = app
    operator, admin = users[Role.operator].headers, users[Role.admin].headers
    provider_id = connect_sim(client, admin, ssh_sim_server)
    ids = []
    for i in range(3):
        body = {"provider_id": provider_id, "name": f"fleet-{i}", "location": "fsn1", "server_type": "cx23",
                "image": "ubuntu-24.04", "profile": "heal"}  # fmt: skip
        created = client.post("/api/nodes", json=body, headers=operator)
        assert created.status_code == 202, created.text
        ids.append(created.json()["node"]["id"])
    nodes = [wait_for_node(client, operator, node_id, "ready", "failed") for node_id in ids]
    assert [n["status"] for n in nodes] == ["ready"] * 3, [n["error"] for n in nodes]
    control = ssh_sim_server.base_url + "/_sim/servers"
    for node in nodes[:2]:
        httpx.post(f"{control}/{node['server']['id']}/poweroff").raise_for_status()
    for node in nodes[:2]:
        wait_for_node(client, operator, node["id"], "degraded", timeout=180)
    deadline = time.monotonic() + 60
    brakes: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        brakes = client.get("/api/brakes", headers=operator).json()["items"]
        if any(b["engaged"] for b in brakes):
            break
        time.sleep(0.5)
    assert [(b["provider_id"], b["engaged"], b["degraded"], b["watched"]) for b in brakes] == [
        (provider_id, True, 2, 3)
    ]
    # Past the longest a decided step waits before it starts: nothing was done to any server.
    ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
    waits = remediation_delay(policy_for("heal", ctx.settings))
    time.sleep(waits + 10)  # a deadline for the absence of an action, not a timing assertion
    requests = httpx.get(ssh_sim_server.base_url + "/_sim/requests", params={"limit": 5000}).json()[
        "requests"
    ]
    acted = [e["path"] for e in requests if e["method"] == "POST" and "/actions/" in e["path"]]
    assert acted == [], acted
    for node in nodes[:2]:
        steps = client.get(f"/api/nodes/{node['id']}/health", headers=operator).json()["remediations"]
        assert all(s["state"] == "held" for s in steps), steps
    audit = client.get("/api/audit", params={"limit": 500}, headers=admin).json()["items"]
    actions = [e["action"] for e in audit]
    assert "node.remediation_started" not in actions and actions.count("fleet.brake_engaged") == 1
