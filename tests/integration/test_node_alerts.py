# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Node transitions raise webhooks through the real job flow on the simulator: reconcile makes a
node whose server vanished ``lost`` (one ``node.lost``, and none on the next pass), and a release
job sends ``node.released``."""

from __future__ import annotations

import json
import time

import hcloud
from fastapi.testclient import TestClient

from nodewright.context import AppContext
from nodewright.db.models import Node
from nodewright.jobs.enqueue import enqueue
from nodewright.nodes.reconcile import RECONCILE_ALL_KIND
from nodewright.providers.acquisition import installation_id
from nodewright.providers.base import LABEL_INSTALLATION, LABEL_NODE
from nodewright.security.roles import Role
from tests.fixtures.sim import sim, sim_server  # noqa: F401
from tests.integration.test_nodes_reconcile import add_node, drain, make_server, setup  # noqa: F401
from tests.integration.test_webhooks import verify
from tests.support.apps import RoleUser
from tests.support.webhook_receiver import webhook_receiver


def delete_when_unlocked(cloud: hcloud.Client, server_id: int) -> None:
    """Delete behind nodewright's back, once the simulator's boot action released its lock."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cloud.servers.get_by_id(server_id).delete().wait_until_finished()
            return
        except hcloud.APIException as exc:
            if exc.code != "locked" or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_lost_and_released_nodes_raise_webhooks(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    setup: tuple[int, hcloud.Client],
) -> None:
    provider_id, cloud = setup
    admin = role_users[Role.admin].headers
    with webhook_receiver() as receiver:
        created = client.post("/api/webhooks", json={"name": "ops", "url": receiver.url}, headers=admin)
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        ours = {LABEL_INSTALLATION: installation_id(app_context.database)}
        node_id = add_node(app_context, provider_id, "doomed", "ready", None)
        server_id = make_server(cloud, "doomed", {**ours, LABEL_NODE: str(node_id)})
        with app_context.database.session(write=True) as session:
            row = session.get(Node, node_id)
            assert row is not None
            row.server_id = server_id
        delete_when_unlocked(cloud, server_id)
        for _ in range(2):  # the second pass finds the node lost already: no second event
            with app_context.database.session(write=True) as session:
                enqueue(session, RECONCILE_ALL_KIND, {})
            assert "failed" not in drain(app_context)
        assert [json.loads(m.body)["type"] for m in receiver.received] == ["node.lost"]
        body = json.loads(receiver.received[0].body)
        assert body["data"]["node"] == {"id": node_id, "name": "doomed", "status": "lost"}
        assert body["data"]["links"]["api"].endswith(f"/api/nodes/{node_id}")
        assert "no longer exists" in body["data"]["reason"]
        assert verify(secret, receiver.received[0])

        released = client.delete(f"/api/nodes/{node_id}", headers=role_users[Role.operator].headers)
        assert released.status_code == 202, released.text
        assert drain(app_context) == ["succeeded", "succeeded"]  # the release, then its delivery
        types = [json.loads(m.body)["type"] for m in receiver.received]
        assert types == ["node.lost", "node.released"]
        assert json.loads(receiver.received[1].body)["data"]["node"]["status"] == "released"
