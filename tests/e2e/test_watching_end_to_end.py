# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Watching a real node on the simulator: stop sshd inside a ready node -> the watcher makes it
degraded (node.degraded once, what failed recorded); start sshd again -> ready (node.recovered).
Both events reach a real HTTP receiver on loopback through the real ``webhooks.deliver`` jobs of the
embedded workers, signed per Standard Webhooks (verified by the test's own code, from the spec).

Intervals are the 5 s minimum (no lower test-only default); the grace after ready is 0. Waits are
deadlines, never timing assertions. sshd is stopped and started through an SSH master connection
opened before the stop: open sessions outlive the listener (the node's init stops only the
listener), so the test can bring it back.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
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
from tests.fixtures.sim import ssh_sim_server  # noqa: F401
from tests.integration.test_webhooks import verify
from tests.support.apps import RoleUser, create_role_users, make_settings
from tests.support.nodes import connect_sim, wait_for_node
from tests.support.system import require_binary
from tests.support.webhook_receiver import Received, Receiver, webhook_receiver

INTERVAL, FAILURES, SUCCESSES, TIMEOUT = 5.0, 3, 2, 5.0
# failures_before_degraded x interval + timeout, plus the jitter, the tick and the claim latency.
DEGRADED_WITHIN = FAILURES * INTERVAL * 1.1 + TIMEOUT + 30


@pytest.fixture
def app(
    db_url: str, tmp_path: Path, ssh_sim_server: SimServer
) -> Iterator[tuple[TestClient, dict[Role, RoleUser]]]:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    settings = make_settings(
        db_url, tmp_path / "data", embedded_workers=2, job_poll_interval=0.2,
        watch_interval_seconds=INTERVAL, watch_timeout_seconds=TIMEOUT, watch_grace_seconds=0,
        watch_failures_before_degraded=FAILURES, watch_successes_before_ready=SUCCESSES,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        yield client, create_role_users(ctx)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.mark.db_only(
    "sqlite",
    reason="real sshd stopped and started: once; the watch logic runs on both databases in tests/integration",
)
def test_sshd_stopped_degrades_and_started_recovers(
    app: tuple[TestClient, dict[Role, RoleUser]], ssh_sim_server: SimServer, receiver: Receiver
) -> None:
    client, users = app
    operator = users[Role.operator].headers
    ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
    provider_id = connect_sim(client, users[Role.admin].headers, ssh_sim_server)
    hook = client.post(
        "/api/webhooks", json={"name": "ops", "url": receiver.url}, headers=users[Role.admin].headers
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    body = {"provider_id": provider_id, "name": "watched-1", "location": "fsn1", "server_type": "cx23",
            "image": "ubuntu-24.04"}  # fmt: skip
    created = client.post("/api/nodes", json=body, headers=operator)
    assert created.status_code == 202, created.text
    node_id = created.json()["node"]["id"]
    ready = wait_for_node(client, operator, node_id, "ready", "failed")
    assert ready["status"] == "ready", ready["error"]
    # Watched while healthy: passing checks are recorded.
    wait_until_health(client, operator, node_id, lambda h: h["health"]["health"] == "passing", 60)

    public_key = client.get(f"/api/nodes/{node_id}/evidence", headers=operator).json()["evidence"]["host_key"]
    target = SshTarget(ready["ssh"]["address"], ready["ssh"]["port"], "root", public_key["public_key"])
    with (
        tempfile.TemporaryDirectory(prefix="nw-e2e-", dir="/tmp") as workdir,
        ssh_agent(
            load_client_private_key(ctx.database, ctx.box, provider_id), directory=Path(workdir)
        ) as sock,
    ):
        ssh = PinnedSsh(target, sock, Path(workdir), multiplex=True)
        try:
            assert ssh.run("true").returncode == 0  # the master connection, kept open
            stopped = ssh.run("service ssh stop")
            assert stopped.returncode == 0, stopped.stderr
            degraded = wait_for_node(client, operator, node_id, "degraded", timeout=DEGRADED_WITHIN)
            assert degraded["health"]["health"] == "degraded"
            assert degraded["health"]["degraded_since"] is not None
            failed_names = [f["name"] for f in degraded["health"]["last_failure"]]
            assert "ssh with the pinned host key" in failed_names
            started = ssh.run("service ssh start")
            assert started.returncode == 0, started.stderr
            recovered = wait_for_node(client, operator, node_id, "ready", timeout=DEGRADED_WITHIN)
            assert recovered["health"]["health"] == "passing"
        finally:
            ssh.close()
    audit = client.get("/api/audit", params={"limit": 500}, headers=users[Role.admin].headers).json()
    actions = [e["action"] for e in audit["items"] if e["target"] == f"node:{node_id}"]
    assert actions.count("node.degraded") == 1 and actions.count("node.recovered") == 1
    assert actions.count("node.ready") == 1
    timeline = client.get(f"/api/nodes/{node_id}/health", headers=operator).json()
    healths = [c["health"] for c in reversed(timeline["checks"])]
    assert "degraded" in healths and healths[-1] == "passing"
    page = client.get(f"/nodes/{node_id}", headers=operator)
    assert page.status_code in (200, 303)

    # The alerts, as the receiver got them (the delivery jobs run on the embedded workers).
    wanted = {"node.ready", "node.degraded", "node.recovered"}
    wait_until(lambda: wanted <= {event_type(m) for m in receiver.received}, 60, "the three alerts")
    types = [event_type(m) for m in receiver.received]
    assert types.count("node.degraded") == 1 and types.count("node.recovered") == 1, types
    assert types.index("node.degraded") < types.index("node.recovered")
    key = secret.removeprefix("whsec_")
    for message in receiver.received:
        assert verify(secret, message), message.headers
        assert key not in message.body.decode() and key not in json.dumps(message.headers)
        assert message.headers["webhook-id"].startswith("msg_")
    by_type = {event_type(m): m for m in receiver.received}
    assert len({m.headers["webhook-id"] for m in receiver.received}) == len(receiver.received)
    for kind, status, reason_word in (
        ("node.degraded", "degraded", f"{FAILURES} failed checks in a row"),
        ("node.recovered", "ready", f"{SUCCESSES} passing checks in a row"),
    ):
        body = json.loads(by_type[kind].body)
        assert sorted(body) == ["data", "timestamp", "type"] and body["type"] == kind
        assert body["timestamp"].endswith("Z")
        data = body["data"]
        assert data["node"] == {"id": node_id, "name": "watched-1", "status": status}
        assert data["reason"].startswith(reason_word), data["reason"]
        assert data["links"]["api"].endswith(f"/api/nodes/{node_id}")
        assert data["links"]["node"].endswith(f"/nodes/{node_id}")
    # The check can fail: a body changed by one byte, or another secret, does not verify.
    degraded_message = by_type["node.degraded"]
    tampered = degraded_message.body.replace(b'"degraded"', b'"ready"', 1)
    assert tampered != degraded_message.body
    assert not verify(secret, Received(degraded_message.path, degraded_message.headers, tampered))
    other = client.post(
        "/api/webhooks", json={"name": "other", "url": receiver.url}, headers=users[Role.admin].headers
    ).json()["secret"]
    assert not verify(other, degraded_message)
    log = client.get(f"/api/webhooks/{hook.json()['id']}/deliveries", headers=users[Role.admin].headers)
    rows = {d["event_type"]: d for d in log.json()}
    for kind in ("node.degraded", "node.recovered"):
        assert (rows[kind]["status"], rows[kind]["attempts"], rows[kind]["last_status_code"]) == (
            "succeeded", 1, 200)  # fmt: skip
        assert rows[kind]["event_id"] == by_type[kind].headers["webhook-id"]
        assert rows[kind]["body"] == by_type[kind].body.decode()


def event_type(message: Received) -> str:
    kind: str = json.loads(message.body)["type"]
    return kind


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def wait_until_health(
    client: TestClient,
    headers: dict[str, str],
    node_id: int,
    predicate: Callable[[Any], bool],
    timeout: float,
) -> None:
    """Poll the node's health until ``predicate`` holds (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/nodes/{node_id}/health", headers=headers).json()
        if predicate(body):
            return
        time.sleep(0.5)
    raise AssertionError(f"node {node_id} health stayed {body['health']}")
