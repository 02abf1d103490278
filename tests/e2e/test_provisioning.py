# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Provisioning against real simulated hosts: real sshd, real ansible-runner and ansible-playbook.

The client key lives only in an agent's memory, the host key is pinned from the first connection, the
run sees an explicit environment, and nothing of a run (files, ssh masters, ansible-playbook) outlives it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hcloud
import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hcloud.images import Image
from hcloud.server_types import ServerType

from nodewright.provisioning.agent import ssh_agent
from nodewright.provisioning.checks import run_checks
from nodewright.provisioning.profiles import get_profile, load_profile
from nodewright.provisioning.runner import CONTROL_DIR_PREFIX, WORKDIR_PREFIX, run_playbook
from nodewright.provisioning.ssh import HOST_KEY_MISMATCH, PinnedSsh
from nodewright.provisioning.target import SshTarget
from nodewright.security.secret import Secret
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, ssh_sim_server  # noqa: F401
from tests.support.system import require_binary


def keypair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, Mapping[str, Any]]] = []

    def __call__(self, level: str, message: str, data: Mapping[str, Any]) -> None:
        self.lines.append((level, message, data))

    def text(self) -> str:
        return "\n".join(f"{level} {message} {json.dumps(dict(data))}" for level, message, data in self.lines)


@pytest.fixture
def node(ssh_sim_server: SimServer) -> tuple[SshTarget, Secret]:
    _BEFORE.update(processes_mentioning(control_dirs()))
    """A fresh simulated server whose host key we generated and injected: (pinned target, client key)."""
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    client = hcloud.Client(
        token=random_token(), api_endpoint=ssh_sim_server.api_url, poll_interval=0.02, poll_max_retries=3000
    )  # 60 s: the first boot builds the node image
    client_private, client_public = keypair()
    host_private, host_public = keypair()
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {"hostname": "prov-1", "ssh_keys": {"ed25519_private": host_private, "ed25519_public": host_public}}
    )
    key = client.ssh_keys.create(name="nodewright", public_key=client_public)
    result = client.servers.create(
        "prov-1",
        server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"),
        ssh_keys=[key],
        user_data=user_data,
    )
    result.action.wait_until_finished()
    for action in result.next_actions:
        action.wait_until_finished()
    assert result.server.id is not None
    server = client.servers.get_by_id(result.server.id)
    assert server.public_net is not None and server.public_net.ipv4 is not None
    target = SshTarget(server.public_net.ipv4.ip, ssh_sim_server.config.ssh_port, "root", host_public)
    return target, Secret(client_private)


_BEFORE: set[str] = set()


def leftovers(tmp_path: Path) -> list[str]:
    """Processes of a run still alive: anything naming its directories (ssh masters and agents name
    their control directory, in the system temp dir); those that ran before this module (another
    test run on the machine) are not ours."""
    return processes_mentioning(str(tmp_path)) + [
        p for p in processes_mentioning(control_dirs()) if p not in _BEFORE
    ]


def control_dirs() -> str:
    """Where this test process's runs put their ssh control directories (its own temp dir)."""
    return os.path.join(tempfile.gettempdir(), CONTROL_DIR_PREFIX)


def processes_mentioning(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline)
    return found


def baseline_vars(node_id: int, admin_key: str) -> dict[str, Any]:
    profile = get_profile("baseline", None)
    return {
        "nw_node_id": node_id,
        "nw_node_name": "prov-1",
        "nw_profile": profile.name,
        "nw_profile_version": profile.full_version,
        "nw_admin_keys": [admin_key],
    }


def test_baseline_profile_provisions_and_verifies_a_node(
    node: tuple[SshTarget, Secret], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, client_key = node
    canary = "worker-env-canary-" + os.urandom(8).hex()
    monkeypatch.setenv("NODEWRIGHT_TEST_ENV_CANARY", canary)
    _, operator_key = keypair()
    profile = get_profile("baseline", None)
    log = Log()

    run = run_playbook(
        target=target,
        client_key=client_key,
        playbook=profile.playbook,
        extravars=baseline_vars(7, operator_key),
        sink=log,
        should_cancel=lambda: False,
        timeout_seconds=300,
        workdir_parent=tmp_path,
    )

    assert run.ok, log.text()
    assert run.recap["node"].get("failures", 0) == 0 and run.recap["node"].get("dark", 0) == 0
    assert run.recap["node"]["ok"] >= 10
    assert any(m.startswith("task: Node marker") for _, m, _ in log.lines)
    assert any(m.startswith("recap: node:") for _, m, _ in log.lines)
    # Nothing of the run is left: no private directory, no ssh master, no ansible-playbook.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(WORKDIR_PREFIX)] == []
    assert leftovers(tmp_path) == []
    assert client_key.reveal() not in log.text()

    with ssh_agent(client_key, directory=tmp_path) as sock:
        ssh = PinnedSsh(target, sock, tmp_path)
        results = run_checks(ssh, node_id=7, profile=profile)
        assert all(r.ok for r in results), results
        assert [r.name for r in results][:3] == [
            "ssh with the pinned host key",
            "node marker names this node",
            "cloud-init finished",
        ]
        marker = json.loads(ssh.run("cat /etc/nodewright/node.json").stdout)
        assert marker == {"node_id": 7, "profile": "baseline", "profile_version": profile.full_version}
        assert ssh.run("cat /home/nodewright/.ssh/authorized_keys").stdout.strip() == operator_key.strip()
        hardening = ssh.run("cat /etc/ssh/sshd_config.d/00-nodewright.conf").stdout
        assert "PasswordAuthentication no" in hardening
        # The worker's environment did not reach the node through ansible-playbook.
        assert canary not in ssh.run("cat /proc/1/environ; env").stdout
        # A marker for another node fails its check.
        assert not run_checks(ssh, node_id=8, profile=profile)[1].ok
    assert leftovers(tmp_path) == []


def test_a_host_with_another_key_is_refused(node: tuple[SshTarget, Secret], tmp_path: Path) -> None:
    target, client_key = node
    _, impostor = keypair()
    wrong = SshTarget(target.address, target.port, target.user, impostor)
    with ssh_agent(client_key, directory=tmp_path) as sock:
        tries, failure = PinnedSsh(wrong, sock, tmp_path).wait_until_reachable(deadline=time.monotonic() + 30)
        assert failure is not None and failure.code == HOST_KEY_MISMATCH
        assert tries == 1  # terminal at once, not retried until the deadline
        assert (
            PinnedSsh(target, sock, tmp_path).wait_until_reachable(deadline=time.monotonic() + 30)[1] is None
        )

    log = Log()
    run = run_playbook(
        target=wrong,
        client_key=client_key,
        playbook=get_profile("baseline", None).playbook,
        extravars=baseline_vars(1, impostor),
        sink=log,
        should_cancel=lambda: False,
        timeout_seconds=120,
        workdir_parent=tmp_path,
    )
    assert not run.ok
    assert run.failed is not None and run.failed.unreachable, log.text()


def test_a_multiplexed_client_shares_one_connection_and_ends_it(
    node: tuple[SshTarget, Secret], tmp_path: Path
) -> None:
    target, client_key = node
    workdir = Path(tempfile.mkdtemp(prefix="nw-mux-"))  # short: the control socket lives here
    try:
        with ssh_agent(client_key, directory=tmp_path) as sock:
            plain = PinnedSsh(target, sock, workdir)
            ports = {plain.run("echo $SSH_CONNECTION").stdout.split()[1] for _ in range(2)}
            assert len(ports) == 2  # one TCP connection per command
            shared = PinnedSsh(target, sock, workdir, multiplex=True)
            ports = {shared.run("echo $SSH_CONNECTION").stdout.split()[1] for _ in range(3)}
            assert len(ports) == 1  # one TCP connection (one handshake) for all three
            assert shared.control_path is not None and shared.control_path.exists()
            assert processes_mentioning(str(shared.control_path))  # the master
            shared.close()
            assert not shared.control_path.exists()
            assert processes_mentioning(str(shared.control_path)) == []
            # The pinned key still decides: a multiplexed client of the wrong key is refused.
            _, impostor = keypair()
            wrong = PinnedSsh(SshTarget(target.address, target.port, target.user, impostor), sock, workdir,
                              multiplex=True)  # fmt: skip
            assert wrong.wait_until_reachable(deadline=time.monotonic() + 30)[1].code == HOST_KEY_MISMATCH  # type: ignore[union-attr]
            wrong.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def write_profile(root: Path, name: str, tasks: list[dict[str, Any]]) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "profile.yml").write_text(yaml.safe_dump({"version": "1", "playbook": "playbook.yml"}))
    (directory / "playbook.yml").write_text(
        yaml.safe_dump([{"name": name, "hosts": "all", "gather_facts": False, "tasks": tasks}])
    )
    return directory


def test_a_failing_task_is_named_with_its_message(node: tuple[SshTarget, Secret], tmp_path: Path) -> None:
    target, client_key = node
    profile = load_profile(
        write_profile(
            tmp_path / "profiles",
            "broken",
            [
                {"name": "fine", "ansible.builtin.command": "true"},
                {"name": "doomed step", "ansible.builtin.shell": "echo boom-from-node >&2; exit 3"},
            ],
        )
    )
    log = Log()
    run = run_playbook(
        target=target,
        client_key=client_key,
        playbook=profile.playbook,
        extravars={},
        sink=log,
        should_cancel=lambda: False,
        timeout_seconds=120,
        workdir_parent=tmp_path,
    )
    assert run.status == "failed"
    assert run.failed is not None
    assert run.failed.task == "doomed step"
    assert "boom-from-node" in run.failed.message
    assert any(level == "error" and "doomed step" in m for level, m, _ in log.lines)


def test_cancel_stops_the_run_and_leaves_no_process(node: tuple[SshTarget, Secret], tmp_path: Path) -> None:
    target, client_key = node
    profile = load_profile(
        write_profile(
            tmp_path / "profiles", "slow", [{"name": "wait", "ansible.builtin.command": "sleep 120"}]
        )
    )
    cancel = threading.Event()
    log = Log()

    def cancel_when_waiting() -> None:
        while not any(m == "task: wait" for _, m, _ in log.lines):
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=cancel_when_waiting, daemon=True).start()
    run = run_playbook(
        target=target,
        client_key=client_key,
        playbook=profile.playbook,
        extravars={},
        sink=log,
        should_cancel=cancel.is_set,
        timeout_seconds=300,
        workdir_parent=tmp_path,
    )
    assert run.status == "canceled"
    assert not run.ok
    deadline = time.monotonic() + 10
    while leftovers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(tmp_path) == []


class LogRefused(Exception):
    """What a job log write raises when the attempt lost its lease or the database is busy."""


def test_a_failing_job_log_stops_the_run_and_is_raised_not_blamed_on_the_profile(
    node: tuple[SshTarget, Secret], tmp_path: Path
) -> None:
    target, client_key = node
    calls: list[str] = []

    def sink(level: str, message: str, data: Mapping[str, Any]) -> None:
        calls.append(message)
        if len(calls) == 3:
            raise LogRefused("the attempt lost its lease")

    with pytest.raises(LogRefused):
        run_playbook(
            target=target,
            client_key=client_key,
            playbook=get_profile("baseline", None).playbook,
            extravars=baseline_vars(3, keypair()[1]),
            sink=sink,
            should_cancel=lambda: False,
            timeout_seconds=120,
            workdir_parent=tmp_path,
        )
    assert len(calls) == 3  # nothing logged after the refusal
    deadline = time.monotonic() + 10  # the runner's kill reaches ssh clients a moment later
    while leftovers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(tmp_path) == []
