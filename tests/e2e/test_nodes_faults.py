# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""A fault at each stage of node_provision ends in the right state, code and hint; once the cause is
fixed, POST /api/nodes/{id}/retry resumes from the stage that failed (earlier stages are not re-run)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import ssh_sim_server  # noqa: F401
from tests.support.apps import RoleUser, create_role_users, make_settings
from tests.support.nodes import connect_sim, wait_for_node
from tests.support.system import require_binary

MARKER_TASK = {
    "name": "Node marker",
    "ansible.builtin.copy": {
        "dest": "/etc/nodewright/node.json",
        "content": "{{ {'node_id': nw_node_id, 'profile': nw_profile, 'profile_version': nw_profile_version}"
        " | to_nice_json }}\n",
    },
}

pytestmark = pytest.mark.db_only(
    "postgresql",
    reason="stage faults and retry do not depend on the database; the end-to-end and kill tests run on both",
)


@dataclass
class World:
    client: TestClient
    users: dict[Role, RoleUser]
    sim: SimServer
    profiles: Path

    def headers(self, role: Role) -> dict[str, str]:
        return self.users[role].headers

    def provider(self, **overrides: Any) -> int:
        return connect_sim(self.client, self.headers(Role.admin), self.sim, **overrides)

    def create(self, provider_id: int, name: str, profile: str = "baseline") -> dict[str, Any]:
        body = {"provider_id": provider_id, "name": name, "location": "fsn1", "server_type": "cx23",
                "image": "ubuntu-24.04", "profile": profile}  # fmt: skip
        response = self.client.post("/api/nodes", json=body, headers=self.headers(Role.operator))
        assert response.status_code == 202, response.text
        node: dict[str, Any] = response.json()["node"]
        return node

    def wait(self, node_id: int, *statuses: str) -> dict[str, Any]:
        return wait_for_node(self.client, self.headers(Role.viewer), node_id, *statuses)

    def retry(self, node_id: int) -> dict[str, Any]:
        response = self.client.post(f"/api/nodes/{node_id}/retry", headers=self.headers(Role.operator))
        assert response.status_code == 202, response.text
        job: dict[str, Any] = response.json()["job"]
        ready = self.wait(node_id, "ready", "failed")
        assert ready["status"] == "ready", ready["error"]
        return job

    def messages(self, job_id: int) -> list[str]:
        events = self.client.get(
            f"/api/jobs/{job_id}/events?limit=1000", headers=self.headers(Role.viewer)
        ).json()
        return [e["message"] for e in events["items"]]

    def servers(self) -> list[dict[str, Any]]:
        servers: list[dict[str, Any]] = httpx.get(self.sim.base_url + "/_sim/servers").json()["servers"]
        return servers


def write_profile(root: Path, name: str, tasks: list[dict[str, Any]], checks: list[dict[str, str]]) -> None:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "profile.yml").write_text(yaml.safe_dump({"version": "1", "checks": checks}))
    marker_dir = {"ansible.builtin.file": {"path": "/etc/nodewright", "state": "directory"}}
    play = {"name": name, "hosts": "all", "gather_facts": False, "tasks": [marker_dir, MARKER_TASK, *tasks]}
    (directory / "playbook.yml").write_text(yaml.safe_dump([play]))


@pytest.fixture
def world(db_url: str, tmp_path: Path, ssh_sim_server: SimServer) -> Iterator[World]:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    profiles = tmp_path / "profiles"
    settings = make_settings(db_url, tmp_path / "data", embedded_workers=2, job_poll_interval=0.2,
                             profiles_dir=profiles, node_connect_deadline=20)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        yield World(client, create_role_users(ctx), ssh_sim_server, profiles)


def test_acquire_fault_quota(world: World) -> None:
    provider_id = world.provider()
    with world.sim.control() as control:
        control.set_server_limit(0)
    node = world.create(provider_id, "quota-1")
    failed = world.wait(node["id"], "failed")
    assert failed["stage"] == "acquire"
    assert failed["error"]["code"] == "quota_exceeded" and failed["error"]["hint"]
    assert world.servers() == []
    with world.sim.control() as control:
        control.set_server_limit(None)
    world.retry(node["id"])
    assert len(world.servers()) == 1


def test_connect_fault_wrong_login_then_fixed(world: World) -> None:
    provider_id = world.provider(ssh_user="ghost")
    node = world.create(provider_id, "login-1")
    failed = world.wait(node["id"], "failed")
    assert failed["stage"] == "connect" and failed["error"]["code"] == "ssh_auth_failed"
    assert "key was refused" in failed["error"]["hint"]
    fixed = world.client.patch(f"/api/providers/{provider_id}", json={"ssh_user": "root"},
                               headers=world.headers(Role.admin))  # fmt: skip
    assert fixed.status_code == 200, fixed.text
    job = world.retry(node["id"])
    assert "stage acquire already done: skipped" in world.messages(job["id"])
    assert len(world.servers()) == 1  # the same server, not a second one


def test_connect_ends_when_the_server_is_deleted_behind_its_back(world: World) -> None:
    """A server deleted while connect waits for SSH (in the provider's console; a demo whose
    simulator restarted empty) ends the stage as server_gone, not at the connect deadline."""
    provider_id = world.provider(ssh_port=9)  # nothing listens there: connect keeps trying
    node = world.create(provider_id, "gone-1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = world.client.get(f"/api/nodes/{node['id']}", headers=world.headers(Role.viewer)).json()
        if seen["stage"] == "connect" and seen["server"]["id"]:
            break
        time.sleep(0.2)
    assert seen["stage"] == "connect", seen
    with world.sim.control() as control:
        control.delete_server(seen["server"]["id"])
    # The connect deadline here is 20 s; the provider is asked every 5 s.
    failed = wait_for_node(world.client, world.headers(Role.viewer), node["id"], "failed", timeout=18)
    assert failed["stage"] == "connect" and failed["error"]["code"] == "server_gone", failed["error"]
    assert "no longer exists" in failed["error"]["message"] and failed["error"]["hint"]


def test_provision_fault_failing_task_then_fixed(world: World) -> None:
    provider_id = world.provider()
    write_profile(
        world.profiles,
        "app",
        [{"name": "install the app", "ansible.builtin.shell": "echo no-app-here >&2; exit 7"}],
        [],
    )
    node = world.create(provider_id, "app-1", profile="app")
    failed = world.wait(node["id"], "failed")
    assert failed["stage"] == "provision" and failed["error"]["code"] == "provisioning_failed"
    assert "install the app" in failed["error"]["message"] and "no-app-here" in failed["error"]["message"]
    write_profile(world.profiles, "app", [{"name": "install the app", "ansible.builtin.command": "true"}], [])
    job = world.retry(node["id"])
    messages = world.messages(job["id"])
    assert "stage acquire already done: skipped" in messages and "task: install the app" in messages


def test_verify_fault_failing_check_then_fixed(world: World) -> None:
    provider_id = world.provider()
    write_profile(
        world.profiles, "svc", [], [{"name": "service answers", "command": "test -e /etc/nw-service-ok"}]
    )
    node = world.create(provider_id, "svc-1", profile="svc")
    failed = world.wait(node["id"], "failed")
    assert failed["stage"] == "verify" and failed["error"]["code"] == "readiness_failed"
    assert "service answers" in failed["error"]["message"]
    evidence = world.client.get(
        f"/api/nodes/{node['id']}/evidence", headers=world.headers(Role.viewer)
    ).json()
    assert [c["ok"] for c in evidence["evidence"]["checks"]][-1] is False
    write_profile(
        world.profiles,
        "svc",
        [],
        [{"name": "service answers", "command": "test -e /etc/nodewright/node.json"}],
    )
    job = world.retry(node["id"])
    assert "stage provision already done: skipped" in world.messages(job["id"])
