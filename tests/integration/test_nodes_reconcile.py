# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Reconcile against the simulator: a server deleted behind our back makes its node lost, a powered-off
server is shown, a node whose job ended silently is settled to failed, and servers with our labels
that no node holds are orphans to delete (or, when nodewright can pin them, adopt)."""

from __future__ import annotations

import threading

import hcloud
import httpx
import pytest
from fastapi.testclient import TestClient
from hcloud.images import Image
from hcloud.server_types import ServerType
from sqlalchemy import select

from nodewright.context import AppContext
from nodewright.db.models import Job, Node
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.registry import load_handler_modules
from nodewright.jobs.registry import registry as default_registry
from nodewright.nodes.reconcile import RECONCILE_ALL_KIND
from nodewright.providers.acquisition import installation_id
from nodewright.providers.base import LABEL_INSTALLATION, LABEL_NODE
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import RoleUser
from tests.support.jobs import run_next

load_handler_modules()


def drain(ctx: AppContext) -> list[str]:
    outcomes = []
    while (outcome := run_next(ctx.database, registry=default_registry)) is not None:
        outcomes.append(outcome)
    return outcomes


def add_node(
    ctx: AppContext, provider_id: int, name: str, status: str, server_id: int | None, **extra: object
) -> int:
    with ctx.database.session(write=True) as session:
        node = Node(
            name=name, contract="provider/v1", provider_id=provider_id, location="fsn1", server_type="cx23",
            image="ubuntu-24.04", labels={}, profile="baseline", ssh_authorized_keys=[], status=status,
            server_id=server_id, evidence={}, created_by="test", **extra,
        )  # fmt: skip
        session.add(node)
        session.flush()
        return int(node.id)


@pytest.fixture
def setup(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> tuple[int, hcloud.Client]:
    token = random_token()
    response = client.post(
        "/api/providers",
        json={"kind": "hetzner", "name": "sim", "token": token, "api_endpoint": sim.api_url},
        headers=role_users[Role.admin].headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], hcloud.Client(token=token, api_endpoint=sim.api_url, poll_interval=0.02)


def make_server(cloud: hcloud.Client, name: str, labels: dict[str, str]) -> int:
    created = cloud.servers.create(
        name, server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"), labels=labels
    )
    created.action.wait_until_finished()
    assert created.server.id is not None
    return created.server.id


def test_reconcile_marks_lost_off_stuck_and_orphans(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    setup: tuple[int, hcloud.Client],
) -> None:
    provider_id, cloud = setup
    ours = {LABEL_INSTALLATION: installation_id(app_context.database)}
    healthy_id = add_node(app_context, provider_id, "healthy", "ready", None)
    gone_id = add_node(app_context, provider_id, "gone", "ready", None)
    off_id = add_node(app_context, provider_id, "sleepy", "ready", None)
    servers = {}
    for node_id, name in ((healthy_id, "healthy"), (gone_id, "gone"), (off_id, "sleepy")):
        servers[node_id] = make_server(cloud, name, {**ours, LABEL_NODE: str(node_id)})
        with app_context.database.session(write=True) as session:
            row = session.get(Node, node_id)
            assert row is not None
            row.server_id = servers[node_id]
    orphan_server = make_server(cloud, "stray", {**ours, LABEL_NODE: "999999"})
    make_server(cloud, "not-ours", {LABEL_INSTALLATION: "someone-else", LABEL_NODE: "1"})
    cloud.servers.get_by_id(servers[gone_id]).delete().wait_until_finished()  # behind our back
    cloud.servers.get_by_id(servers[off_id]).power_off().wait_until_finished()
    with app_context.database.session(write=True) as session:
        dead = enqueue(session, "nodewright.noop", {})
        session.flush()
        dead.state, dead.error = "failed", {"code": "worker_lost", "message": "the worker was lost"}
    stuck_id = add_node(app_context, provider_id, "stuck", "provisioning", None)
    with app_context.database.session(write=True) as session:
        stuck = session.get(Node, stuck_id)
        assert stuck is not None
        stuck.job_id = dead.id

    with app_context.database.session(write=True) as session:
        enqueue(session, RECONCILE_ALL_KIND, {})
    assert "failed" not in drain(app_context)

    viewer = role_users[Role.viewer].headers
    nodes = {n["id"]: n for n in client.get("/api/nodes", headers=viewer).json()["items"]}
    assert nodes[healthy_id]["status"] == "ready" and nodes[healthy_id]["server"]["status"] == "running"
    assert nodes[gone_id]["status"] == "lost" and nodes[gone_id]["error"]["code"] == "server_gone"
    assert nodes[gone_id]["error"]["hint"]
    assert nodes[off_id]["status"] == "ready" and nodes[off_id]["server"]["status"] == "off"
    assert nodes[stuck_id]["status"] == "failed" and nodes[stuck_id]["error"]["code"] == "worker_lost"

    orphans = client.get("/api/orphans", headers=viewer).json()
    assert [(o["server_id"], o["name"], o["node_id"]) for o in orphans] == [(orphan_server, "stray", 999999)]
    operator = role_users[Role.operator].headers
    refused = client.post(f"/api/orphans/{orphans[0]['id']}/adopt", headers=operator)
    assert refused.status_code == 409 and "delete" in refused.json()["detail"]
    deleting = client.post(f"/api/orphans/{orphans[0]['id']}/delete", headers=operator)
    assert deleting.status_code == 202, deleting.text
    assert drain(app_context) == ["succeeded"]
    assert cloud.servers.get_by_id(servers[healthy_id]).id == servers[healthy_id]
    with pytest.raises(hcloud.APIException):
        cloud.servers.get_by_id(orphan_server)
    assert client.get("/api/orphans", headers=viewer).json() == []
    with app_context.database.session() as session:
        assert session.scalars(select(Job.state).where(Job.kind == "nodes.reconcile")).all() == ["succeeded"]


def test_a_node_released_while_reconcile_looks_is_not_made_lost(
    app_context: AppContext, setup: tuple[int, hcloud.Client], sim: SimServer
) -> None:
    """Reconcile decides "gone" from the provider, then writes: a node released (or retried, or
    adopted) in between keeps the state its own job gave it."""
    provider_id, cloud = setup
    ours = {LABEL_INSTALLATION: installation_id(app_context.database)}
    node_id = add_node(app_context, provider_id, "leaving", "ready", None)
    server_id = make_server(cloud, "leaving", {**ours, LABEL_NODE: str(node_id)})
    with app_context.database.session(write=True) as session:
        row = session.get(Node, node_id)
        assert row is not None
        row.server_id = server_id
        enqueue(session, "nodes.reconcile", {"provider_id": provider_id})
    while cloud.servers.get_by_id(server_id).status != "running":  # its create action still holds it
        threading.Event().wait(0.02)
    cloud.servers.get_by_id(server_id).delete().wait_until_finished()
    # Hold reconcile's direct lookup of the server while the node's release finishes.
    control = httpx.Client(base_url=sim.base_url + "/_sim")
    control.post(
        "/faults", json={"kind": "slow", "method": "GET", "path": f"/v1/servers/{server_id}", "delay": 5}
    ).raise_for_status()
    outcome: list[str | None] = []
    worker = threading.Thread(
        target=lambda: outcome.append(run_next(app_context.database, registry=default_registry))
    )
    worker.start()
    while not any(f["fired"] for f in control.get("/faults").json()["faults"]):
        assert worker.is_alive()
        threading.Event().wait(0.01)
    with app_context.database.session(write=True) as session:
        row = session.get(Node, node_id)
        assert row is not None
        row.status, row.server_status = "released", "deleted"
    worker.join()
    assert outcome == ["succeeded"]
    with app_context.database.session() as session:
        row = session.get(Node, node_id)
        assert row is not None
        assert (row.status, row.server_status, row.error_code) == ("released", "deleted", None)


def test_an_orphan_a_node_took_back_is_not_deleted(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    setup: tuple[int, hcloud.Client],
) -> None:
    """A node failed before it recorded its server: reconcile lists the server as an orphan. The node
    is retried and its acquire adopts the server by its labels; the stale orphan entry must not let
    anyone delete the server the node now holds."""
    provider_id, cloud = setup
    ours = {LABEL_INSTALLATION: installation_id(app_context.database)}
    node_id = add_node(app_context, provider_id, "comeback", "failed", None)
    server_id = make_server(cloud, "comeback", {**ours, LABEL_NODE: str(node_id)})
    with app_context.database.session(write=True) as session:
        enqueue(session, RECONCILE_ALL_KIND, {})
    assert "failed" not in drain(app_context)
    viewer, operator = role_users[Role.viewer].headers, role_users[Role.operator].headers
    orphans = client.get("/api/orphans", headers=viewer).json()
    assert [o["server_id"] for o in orphans] == [server_id]
    with app_context.database.session(write=True) as session:  # what the retried acquire records
        row = session.get(Node, node_id)
        assert row is not None
        row.server_id, row.status = server_id, "provisioning"
    refused = client.post(f"/api/orphans/{orphans[0]['id']}/delete", headers=operator)
    assert refused.status_code == 409, refused.text
    assert f"node {node_id}" in refused.json()["detail"]
    drain(app_context)
    assert cloud.servers.get_by_id(server_id).id == server_id


def test_an_orphan_delete_queued_before_a_node_took_it_back_spares_it(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    setup: tuple[int, hcloud.Client],
) -> None:
    provider_id, cloud = setup
    ours = {LABEL_INSTALLATION: installation_id(app_context.database)}
    node_id = add_node(app_context, provider_id, "comeback", "failed", None)
    server_id = make_server(cloud, "comeback", {**ours, LABEL_NODE: str(node_id)})
    with app_context.database.session(write=True) as session:
        enqueue(session, RECONCILE_ALL_KIND, {})
    assert "failed" not in drain(app_context)
    orphans = client.get("/api/orphans", headers=role_users[Role.viewer].headers).json()
    queued = client.post(f"/api/orphans/{orphans[0]['id']}/delete", headers=role_users[Role.operator].headers)
    assert queued.status_code == 202, queued.text
    with app_context.database.session(write=True) as session:  # the node is retried first
        row = session.get(Node, node_id)
        assert row is not None
        row.status = "acquiring"
    assert drain(app_context) == ["failed"]
    assert cloud.servers.get_by_id(server_id).id == server_id
    with app_context.database.session() as session:
        job = session.scalars(select(Job).where(Job.kind == "nodes.orphan_delete")).one()
        assert job.error is not None and job.error["code"] == "conflict"
