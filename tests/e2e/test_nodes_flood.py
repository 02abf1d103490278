# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""A hostile node floods, hangs after login or never closes its SSH channel: each ends at its stage's
deadline with ``deadline_exceeded`` (or, where the stage can finish, with the cut output marked),
the controller keeps only capped output, and a healthy node provisioned at the same time gets ready.

The profiles make their node hostile themselves: a task puts a line at the top of root's ~/.bashrc,
which Debian's bash reads for every command sshd runs, so every later session (the playbook's next
task, the readiness checks) meets it. (A new login shell in /etc/passwd would not do: sshd reads it
once per connection, and Ansible's tasks share one.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.output_limits import EVENT_TEXT_CAP, MARKER_PREFIX
from nodewright.provisioning.agent import ssh_agent
from nodewright.provisioning.ssh import DEADLINE_EXCEEDED, PinnedSsh
from nodewright.provisioning.target import SshTarget
from nodewright.security.roles import Role
from nodewright.security.secret import Secret
from nodewright.sim.server import SimServer
from tests.e2e.test_nodes_faults import MARKER_TASK, World
from tests.e2e.test_provisioning import node  # noqa: F401
from tests.fixtures.sim import ssh_sim_server  # noqa: F401
from tests.support.apps import create_role_users, make_settings
from tests.support.system import require_binary

pytestmark = pytest.mark.db_only("sqlite", reason="node output and deadlines do not depend on the database")

# The first line of root's ~/.bashrc, read before every command sshd runs.
BASHRC = {
    # prints without end and never runs the command
    "flood": "exec yes nodewright-flood",
    # prints 300 MiB, then exits without running the command (the node)
    "burst": "head -c 314572800 /dev/zero | tr '\\0' x; exit 0",
    # logs in, then waits for ever
    "hang": "exec sleep 100000",
    # runs the command, but a process it left behind holds the session's output open
    "linger": "sleep 100000 &",
}
VERIFY_DEADLINE = 10.0


def hostile_task(kind: str) -> dict[str, Any]:
    return {
        "name": f"make the node hostile ({kind})",
        "ansible.builtin.lineinfile": {"path": "/root/.bashrc", "insertbefore": "BOF", "line": BASHRC[kind]},
    }


def write_profile(root: Path, name: str, tasks: list[dict[str, Any]], timeout: float) -> None:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "profile.yml").write_text(yaml.safe_dump({"version": "1", "timeout_seconds": timeout}))
    marker_dir = {"ansible.builtin.file": {"path": "/etc/nodewright", "state": "directory"}}
    play = {"name": name, "hosts": "all", "gather_facts": False, "tasks": [marker_dir, MARKER_TASK, *tasks]}
    (directory / "playbook.yml").write_text(yaml.safe_dump([play]))


@pytest.fixture
def world(db_url: str, tmp_path: Path, ssh_sim_server: SimServer) -> Iterator[World]:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    profiles = tmp_path / "profiles"
    settings = make_settings(db_url, tmp_path / "data", embedded_workers=5, job_poll_interval=0.2,
                             profiles_dir=profiles, node_connect_deadline=60,
                             node_verify_deadline=VERIFY_DEADLINE)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        yield World(client, create_role_users(ctx), ssh_sim_server, profiles)


def first_outcomes(world: World, node_ids: dict[str, int], timeout: float = 300) -> dict[str, dict[str, Any]]:
    """Each node as it was when it first showed an error or became ready: a retryable error is
    cleared when the next attempt starts, so every node is looked at in each round (a deadline, not a
    timing assertion)."""
    until = time.monotonic() + timeout
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < len(node_ids) and time.monotonic() < until:
        for name, node_id in node_ids.items():
            if name in seen:
                continue
            found = world.client.get(f"/api/nodes/{node_id}", headers=world.headers(Role.viewer)).json()
            if found.get("error") or found["status"] in ("ready", "failed"):
                seen[name] = found
        time.sleep(0.2)
    assert len(seen) == len(node_ids), f"no outcome in time for {set(node_ids) - set(seen)}"
    return seen


def job_of(world: World, node_id: int) -> dict[str, Any]:
    jobs = world.client.get(
        f"/api/jobs?resource_key=node:{node_id}", headers=world.headers(Role.viewer)
    ).json()["items"]
    job: dict[str, Any] = jobs[0]
    return job


def test_hostile_nodes_end_at_their_deadlines_and_a_healthy_one_gets_ready(world: World) -> None:
    provider_id = world.provider()
    write_profile(world.profiles, "healthy", [{"name": "work", "ansible.builtin.command": "true"}], 300)
    then = {"name": "next task", "ansible.builtin.command": "true"}
    # 45 s: the flood task must end (its output capped) and the next one start before the deadline,
    # on a machine busy with other tests too.
    write_profile(world.profiles, "flood", [hostile_task("flood"), then], 45)
    write_profile(world.profiles, "burst", [hostile_task("burst"), then], 120)
    write_profile(world.profiles, "linger", [hostile_task("linger"), then], 20)
    write_profile(world.profiles, "hang", [hostile_task("hang")], 120)  # the checks meet it
    nodes = {name: world.create(provider_id, f"{name}-1", profile=name)
             for name in ("flood", "burst", "linger", "hang", "healthy")}  # fmt: skip

    ended = first_outcomes(world, {name: n["id"] for name, n in nodes.items()})
    for name in ("flood", "burst", "linger", "hang"):  # no further attempts: the point is made
        world.client.post(f"/api/jobs/{job_of(world, nodes[name]['id'])['id']}/cancel",
                          headers=world.headers(Role.operator))  # fmt: skip

    assert ended["healthy"]["status"] == "ready", ended["healthy"]["error"]
    for name, stage in (("flood", "provision"), ("linger", "provision"), ("hang", "verify")):
        error = ended[name]["error"]
        assert (ended[name]["stage"], error["code"]) == (stage, DEADLINE_EXCEEDED), (name, error)
        assert error["retryable"] is True and "Look at the node" in error["hint"]
    assert "next task" in ended["flood"]["error"]["message"]
    assert "check 'ssh with the pinned host key'" in ended["hang"]["error"]["message"]

    # The 300 MiB burst: the task fails as the module printed no result, its output cut and marked.
    burst = ended["burst"]
    assert (burst["stage"], burst["error"]["code"]) == ("provision", "provisioning_failed"), burst["error"]
    assert "next task" in burst["error"]["message"] and MARKER_PREFIX in burst["error"]["message"]
    events = world.client.get(f"/api/jobs/{job_of(world, nodes['burst']['id'])['id']}/events?limit=1000",
                              headers=world.headers(Role.viewer)).json()["items"]  # fmt: skip
    assert max(len(e["message"]) for e in events) < 4 * EVENT_TEXT_CAP  # not a copy of the flood


def test_a_node_that_hangs_after_login_ends_connect_with_deadline_exceeded(
    node: tuple[SshTarget, Secret], tmp_path: Path
) -> None:
    target, key = node
    with ssh_agent(key, directory=tmp_path) as socket:
        ssh = PinnedSsh(target, socket, tmp_path)
        installed = ssh.run(f"sed -i '1i {BASHRC['hang']}' /root/.bashrc")
        assert installed.returncode == 0, installed.stderr
        tries, failure = ssh.wait_until_reachable(deadline=time.monotonic() + 5)
    assert failure is not None and failure.code == DEADLINE_EXCEEDED, failure
    assert "logged in" in failure.message and tries >= 1


def test_a_flooding_command_is_kept_capped_and_marked(node: tuple[SshTarget, Secret], tmp_path: Path) -> None:
    target, key = node
    with ssh_agent(key, directory=tmp_path) as socket:
        result = PinnedSsh(target, socket, tmp_path).run("head -c 314572800 /dev/zero; echo end >&2")
    assert result.returncode == 0 and not result.timed_out
    assert len(result.stdout) < 2 * (1 << 20) and MARKER_PREFIX in result.stdout
    assert result.stderr == "end\n"
