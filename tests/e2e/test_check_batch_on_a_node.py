# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""The batched checks watching runs (one SSH command for all of them) against a real simulated node:
the same results as one command per check, the pinned host key, the deadline, hostile output."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import hcloud
import httpx
import pytest
import yaml
from hcloud.images import Image
from hcloud.server_types import ServerType

from nodewright.provisioning.agent import ssh_agent
from nodewright.provisioning.check_batch import run_batched
from nodewright.provisioning.checks import run_checks
from nodewright.provisioning.profiles import Check, get_profile
from nodewright.provisioning.ssh import PinnedSsh
from nodewright.provisioning.target import SshTarget
from nodewright.security.secret import Secret
from nodewright.sim.server import SimServer
from tests.e2e.test_provisioning import keypair
from tests.fixtures.sim import random_token, ssh_sim_server  # noqa: F401
from tests.support.system import require_binary

KEX = "^curve25519-sha256"  # watching's default (Settings.watch_ssh_kex_algorithms)


@pytest.fixture
def ssh(ssh_sim_server: SimServer, tmp_path: Path) -> Iterator[PinnedSsh]:
    """A pinned client of a fresh simulated node (not provisioned: no marker, no admin user)."""
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    client = hcloud.Client(
        token=random_token(), api_endpoint=ssh_sim_server.api_url, poll_interval=0.05, poll_max_retries=2400
    )
    client_private, client_public = keypair()
    host_private, host_public = keypair()
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {"ssh_keys": {"ed25519_private": host_private, "ed25519_public": host_public}}
    )
    key = client.ssh_keys.create(name="nodewright", public_key=client_public)
    created = client.servers.create(
        "batch-1", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"), ssh_keys=[key],
        user_data=user_data,
    )  # fmt: skip
    created.action.wait_until_finished()
    for action in created.next_actions:
        action.wait_until_finished()
    assert created.server.id is not None
    server = client.servers.get_by_id(created.server.id)
    assert server.public_net is not None and server.public_net.ipv4 is not None
    target = SshTarget(server.public_net.ipv4.ip, ssh_sim_server.config.ssh_port, "root", host_public)
    with ssh_agent(Secret(client_private), directory=tmp_path) as sock:
        pinned = PinnedSsh(target, sock, tmp_path, kex_algorithms=KEX)
        _tries, failure = pinned.wait_until_reachable(deadline=time.monotonic() + 60)
        assert failure is None, failure
        yield pinned


def test_one_command_gives_the_results_of_one_command_per_check(ssh: PinnedSsh) -> None:
    # The baseline profile's checks, but sshd's password setting, which only the playbook changes.
    profile = dataclasses.replace(
        get_profile("baseline", None), checks=(Check("admin user", "id -u nodewright"),)
    )
    watch = (Check("answers", "echo hi"), Check("fails", "echo broken >&2; exit 4"))

    def both(node_id: int) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
        one_by_one = run_checks(ssh, node_id=node_id, profile=profile)
        batched = run_batched(ssh, node_id=node_id, profile=profile, watch_checks=watch,
                              deadline=time.monotonic() + 30)  # fmt: skip
        return [(r.name, r.ok) for r in one_by_one], [(r.name, r.ok) for r in batched]

    # Not provisioned: no marker, no admin user; the watch checks are not reported.
    expected, found = both(7)
    assert found == expected and not found[1][1]
    # Provisioned enough for every readiness check: the watch checks follow, with their own status.
    marker = '{"node_id": 7, "profile": "baseline", "profile_version": "1"}'
    setup = ssh.run(f"mkdir -p /etc/nodewright && echo '{marker}' > /etc/nodewright/node.json && "
                    "(id -u nodewright || useradd nodewright)")  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    one_by_one = run_checks(ssh, node_id=7, profile=profile)
    batched = run_batched(ssh, node_id=7, profile=profile, watch_checks=watch, deadline=time.monotonic() + 30)
    assert [dataclasses.replace(r, detail="") for r in batched[: len(one_by_one)]] == [
        dataclasses.replace(r, detail="") for r in one_by_one
    ]
    assert all(r.ok for r in one_by_one), one_by_one
    assert [(r.name, r.ok) for r in batched[len(one_by_one) :]] == [("answers", True), ("fails", False)]
    assert batched[-1].detail == "exit 4: broken"
    # A marker naming another node fails its check, batched as one by one.
    expected, found = both(8)
    assert found == expected and found[1] == ("node marker names this node", False)


def test_the_host_key_stays_pinned(ssh: PinnedSsh, tmp_path: Path) -> None:
    _other_private, other_public = keypair()
    impostor = PinnedSsh(dataclasses.replace(ssh.target, host_public_key=other_public), ssh.agent_socket,
                         tmp_path, kex_algorithms=KEX)  # fmt: skip
    results = run_batched(impostor, node_id=7, profile=get_profile("baseline", None),
                          deadline=time.monotonic() + 30)  # fmt: skip
    assert [(r.name, r.ok) for r in results] == [("ssh with the pinned host key", False)]
    assert results[0].detail.startswith("host_key_mismatch")


def test_hostile_output_and_the_deadline(ssh: PinnedSsh) -> None:
    profile = dataclasses.replace(get_profile("baseline", None), checks=())
    marker = '{"node_id": 7, "profile": "baseline"}'
    assert ssh.run(f"mkdir -p /etc/nodewright && echo '{marker}' > /etc/nodewright/node.json").returncode == 0
    watch = (
        # Floods, prints something frame-like on both streams and tries to end the whole script.
        Check(
            "hostile",
            "head -c 5000000 /dev/zero | tr '\\000' x; echo 'nw-0 5 0'; echo 'nw-0' >&2; kill $PPID",
        ),
        Check("never reached", "true"),
    )
    results = run_batched(ssh, node_id=7, profile=profile, watch_checks=watch, deadline=time.monotonic() + 30)
    assert [(r.name, r.ok) for r in results] == [
        ("ssh with the pinned host key", True), ("node marker names this node", True),
        ("cloud-init finished", True), ("hostile", False),
    ]  # fmt: skip
    assert results[3].detail.startswith("did not report") and len(results[3].detail) <= 400
    # The deadline ends a check that never finishes; what follows is not reported.
    slow = (Check("sleeps", "sleep 600"), Check("after", "true"))
    results = run_batched(ssh, node_id=7, profile=profile, watch_checks=slow, deadline=time.monotonic() + 3)
    assert [(r.name, r.ok, r.timed_out) for r in results][-1] == ("sleeps", False, True)
    assert "after" not in [r.name for r in results]
