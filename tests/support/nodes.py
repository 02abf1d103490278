"""Shared steps of the node tests: connect the simulator as a provider, wait for a node's status."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token


def connect_sim(client: TestClient, admin_headers: dict[str, str], sim: SimServer, **overrides: Any) -> int:
    """A provider connection to ``sim`` (a fresh project), with the nodes' SSH port; its id."""
    body = {
        "kind": "hetzner",
        "name": f"sim-{time.monotonic_ns()}",
        "token": random_token(),
        "api_endpoint": sim.api_url,
        "ssh_port": sim.config.ssh_port,
        **overrides,
    }
    response = client.post("/api/providers", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    provider_id: int = response.json()["id"]
    return provider_id


def wait_for_node(
    client: TestClient, headers: dict[str, str], node_id: int, *statuses: str, timeout: float = 240
) -> dict[str, Any]:
    """Poll the node until its status is one of ``statuses`` (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    node: dict[str, Any] = {}
    while time.monotonic() < deadline:
        node = client.get(f"/api/nodes/{node_id}", headers=headers).json()
        if node["status"] in statuses:
            return node
        time.sleep(0.2)
    raise AssertionError(f"node {node_id} stayed {node.get('status')}: {node.get('error')}")
