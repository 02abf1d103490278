"""Ready nodes whose servers exist in the simulator (made with the real hcloud SDK), without
provisioning them: for tests of what happens after ``ready`` (watching, remediation)."""

from __future__ import annotations

import datetime as dt
import socket
import time

import hcloud
from fastapi.testclient import TestClient
from hcloud.images import Image
from hcloud.server_types import ServerType

from nodewright.context import AppContext
from nodewright.db.models import Node
from nodewright.db.types import utcnow
from nodewright.providers.acquisition import client_key, generate_host_key, installation_id
from nodewright.providers.base import LABEL_INSTALLATION, LABEL_NODE
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def connect(client: TestClient, admin: dict[str, str], sim: SimServer) -> tuple[int, hcloud.Client]:
    token = random_token()
    response = client.post(
        "/api/providers",
        json={"kind": "hetzner", "name": "sim", "token": token, "api_endpoint": sim.api_url},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], hcloud.Client(token=token, api_endpoint=sim.api_url, poll_interval=0.02)


def add_ready_nodes(
    ctx: AppContext,
    provider_id: int,
    cloud: hcloud.Client,
    count: int,
    *,
    profile: str = "baseline",
    prefix: str = "w",
    ssh_port: int | None = None,
) -> list[int]:
    """``count`` ready nodes (labels role=web|db alternating), each holding a running server.

    With ``ssh_port`` each node's SSH target is 127.0.0.1 on that port (a closed one: SSH is refused
    at once) with a host key of its own, as a provisioned node has; otherwise it has no SSH target.
    The simulator's server addresses are never used: without SSH nodes nothing listens there.
    """
    owner = installation_id(ctx.database)
    if ssh_port is not None:
        client_key(ctx.database, ctx.box, provider_id)  # the connection's key, made at first acquire
    ids = []
    for i in range(count):
        with ctx.database.session(write=True) as session:
            node = Node(
                name=f"{prefix}{i}", contract="provider/v1", provider_id=provider_id, location="fsn1",
                server_type="cx23", image="ubuntu-24.04", labels={"role": "web" if i % 2 else "db"},
                profile=profile, ssh_authorized_keys=[], status="ready", evidence={}, created_by="test",
                ready_at=utcnow() - dt.timedelta(days=1),
            )  # fmt: skip
            session.add(node)
            session.flush()
            node_id = node.id
        created = cloud.servers.create(
            f"{prefix}{i}", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
            labels={LABEL_INSTALLATION: owner, LABEL_NODE: str(node_id)},
        )  # fmt: skip
        created.action.wait_until_finished()
        with ctx.database.session(write=True) as session:
            row = session.get(Node, node_id)
            assert row is not None
            row.server_id = created.server.id
            if ssh_port is not None:
                row.ssh_address, row.ssh_port, row.ssh_user = "127.0.0.1", ssh_port, "root"
                row.host_public_key = generate_host_key().public_openssh.strip()
        ids.append(node_id)
    deadline = time.monotonic() + 60
    while any(s.status != "running" for s in cloud.servers.get_all()) and time.monotonic() < deadline:
        time.sleep(0.1)  # a deadline, not a timing assertion: the servers finish booting
    return ids
