# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Simulated servers are real SSH hosts: reachable with the registered key, presenting the host
key injected through cloud-init, isolated from the host, and gone without a trace when deleted."""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
from hcloud.ssh_keys import SSHKey

from nodewright.sim.nodes import FHS_TOP_LEVEL
from nodewright.sim.nodes.layers import readable_by_nodes
from nodewright.sim.server import SimServer
from tests.fixtures.sim import (  # noqa: F401
    fast_config,
    node_ssh_port,
    random_token,
    ssh_keypair,
    ssh_sim_server,
)
from tests.support.system import missing, require_binary, require_root

PORT = node_ssh_port()


@pytest.fixture
def node_sim(ssh_sim_server: SimServer) -> SimServer:
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    assert ssh_sim_server.config.ssh_port == PORT
    return ssh_sim_server


@pytest.fixture
def client(node_sim: SimServer) -> hcloud.Client:
    return hcloud.Client(
        token=random_token(), api_endpoint=node_sim.api_url, poll_interval=0.02, poll_max_retries=3000
    )


def host_keypair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def sim_server_entry(sim: SimServer, server_id: int) -> dict[str, Any]:
    entries = httpx.get(sim.base_url + "/_sim/servers").json()["servers"]
    entry: dict[str, Any] = next(e for e in entries if e["id"] == server_id)
    return entry


def known(address: str, port: int, public_key: str) -> str:
    """A known_hosts line; OpenSSH writes non-default ports as ``[host]:port``."""
    return f"{address if port == 22 else f'[{address}]:{port}'} {public_key}\n"


def ssh(
    key: Path, known_hosts: Path, host: str, command: str, port: int | None = None
) -> subprocess.CompletedProcess[str]:
    port = PORT if port is None else port
    binary = require_binary("ssh")
    return subprocess.run(
        [binary, "-i", str(key), "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "ConnectTimeout=10", "-p", str(port), f"root@{host}", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip


def ssh_any_host(key: Path, tmp_path: Path, host: str, command: str) -> subprocess.CompletedProcess[str]:
    """``ssh`` that accepts whatever host key the node presents (a fresh known_hosts each call)."""
    known_hosts = tmp_path / f"kh-{secrets.token_hex(4)}"
    return subprocess.run(
        [require_binary("ssh"), "-i", str(key), "-o", "StrictHostKeyChecking=no",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "ConnectTimeout=10", "-p", str(PORT), f"root@{host}", command],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def node_processes(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (a node's private directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def pid_namespaces_under(pid: int) -> set[str]:
    """The pid namespaces of ``pid``'s descendants that are not the host's (a node's init and its
    processes: their command lines name nothing of the node's directory)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            parent = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    host = os.readlink("/proc/self/ns/pid")
    found: set[str] = set()
    todo = list(children.get(pid, []))
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            space = os.readlink(f"/proc/{current}/ns/pid")
        except OSError:
            continue
        if space != host:
            found.add(space)
    return found


def processes_in(spaces: set[str]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") in spaces:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def create_node(client: hcloud.Client, name: str, public_key: str, user_data: str | None = None) -> Any:
    key = client.ssh_keys.create(name=f"key-{name}", public_key=public_key)
    result = client.servers.create(
        name,
        server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"),
        ssh_keys=[SSHKey(id=key.id)],
        user_data=user_data,
    )
    result.action.wait_until_finished()
    for action in result.next_actions:
        action.wait_until_finished()
    return client.servers.get_by_id(result.server.id)


def test_ssh_into_node_with_pinned_host_key(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key_path, public_key = ssh_keypair
    other = tmp_path / "other"
    subprocess.run(
        [require_binary("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True
    )
    host_private, host_public = host_keypair()
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {
            "hostname": "node-a",
            "ssh_keys": {"ed25519_private": host_private, "ed25519_public": host_public},
            "ssh_authorized_keys": [(tmp_path / "other.pub").read_text().strip()],
        }
    )
    server = create_node(client, "web-1", public_key, user_data)
    assert server.status == "running"
    address = server.public_net.ipv4.ip
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known(address, PORT, host_public))

    marker = f"nodewright-{secrets.token_hex(4)}"
    node_root = httpx.get(node_sim.base_url + "/_sim/status").json()["node_root"]
    command = (
        f"hostname; id -u; python3 -c 'print(6*7)'; echo {marker} > /root/{marker}; touch /etc/{marker}; "
        f"mkdir /{marker}; touch /run/{marker} /usr/local/{marker} /var/tmp/{marker}; cat /root/{marker}; "
        f"ls {node_root} 2>/dev/null | wc -l; ls /etc/ssh | grep -c ssh_host_; "
        "grep -c ssh- /root/.ssh/authorized_keys"
    )
    result = ssh(key_path, known_hosts, address, command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["node-a", "0", "42", marker, "0", "2", "2"]
    for written in (f"/root/{marker}", f"/etc/{marker}", f"/{marker}", f"/run/{marker}",
                    f"/usr/local/{marker}", f"/var/tmp/{marker}"):  # fmt: skip
        assert not Path(written).exists(), written

    assert ssh(other, known_hosts, address, "true").returncode == 0  # cloud-init authorized key
    stranger = tmp_path / "stranger"
    subprocess.run(
        [require_binary("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True
    )
    assert ssh(stranger, known_hosts, address, "true").returncode != 0

    wrong_hosts = tmp_path / "wrong_hosts"
    wrong_hosts.write_text(known(address, PORT, host_keypair()[1]))
    refused = ssh(key_path, wrong_hosts, address, "true")
    assert refused.returncode != 0
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_power_cycle_keeps_the_disk_and_delete_leaves_nothing(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key_path, public_key = ssh_keypair
    server = create_node(client, "db-1", public_key)
    entry = sim_server_entry(node_sim, server.id)
    assert entry["hostname"] == "db-1"
    node_dir = entry["ssh"]["node"]["directory"]
    assert node_processes(node_dir)
    address = server.public_net.ipv4.ip
    known_hosts = tmp_path / "known_hosts"
    scan = subprocess.run([require_binary("ssh-keyscan"), "-p", str(PORT), "-t", "ed25519", address],
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    known_hosts.write_text(scan.stdout)

    session = subprocess.Popen(
        [require_binary("ssh"), "-i", str(key_path), "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "BatchMode=yes", "-p", str(PORT), f"root@{address}",
         "echo kept > /var/kept && hostname && sleep 600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert session.stdout is not None
        assert session.stdout.readline().strip() == "db-1"
        server.power_off().wait_until_finished()
        assert client.servers.get_by_id(server.id).status == "off"
        assert not node_processes(node_dir)  # the open session died with its node
        session.wait(timeout=30)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    server.power_on().wait_until_finished()
    result = ssh(key_path, known_hosts, address, "cat /var/kept; hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["kept", "db-1"]
    assert not Path("/var/kept").exists()

    before = sim_server_entry(node_sim, server.id)["ssh"]["node"]["pid"]
    server.reboot().wait_until_finished()
    after = sim_server_entry(node_sim, server.id)
    assert after["status"] == "running" and after["ssh"]["node"]["state"] == "ready"
    assert after["ssh"]["node"]["pid"] != before
    assert ssh(key_path, known_hosts, address, "cat /var/kept").stdout.strip() == "kept"

    server.delete().wait_until_finished()
    assert not node_processes(node_dir)
    assert not Path(node_dir).exists()


def test_stopping_the_simulator_leaves_no_process(ssh_keypair: tuple[Path, str]) -> None:
    require_root()
    require_binary("sshd", "/usr/sbin/sshd")
    config = fast_config()
    config.ssh_port = PORT
    with SimServer(ssh_nodes=True, config=config) as sim:
        if not sim.ssh_nodes:
            missing(f"simulated SSH nodes unavailable: {sim.ssh_nodes_reason}")
        c = hcloud.Client(
            token=random_token(), api_endpoint=sim.api_url, poll_interval=0.02, poll_max_retries=3000
        )
        server = create_node(c, "tmp-1", ssh_keypair[1])
        root = httpx.get(sim.base_url + "/_sim/status").json()["node_root"]
        assert sim_server_entry(sim, server.id)["ssh"]["node"]["state"] == "ready"
        assert node_processes(root)
    assert not node_processes(root)
    assert not os.path.exists(root)


def test_ansible_can_manage_a_node_without_touching_the_host(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    ansible = Path(sys.executable).parent / "ansible"
    if not ansible.exists():
        missing("ansible-core (the `ansible` command) is not installed next to this Python")
    key_path, public_key = ssh_keypair
    server = create_node(client, "ansible-1", public_key)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"node ansible_host={server.public_net.ipv4.ip} ansible_port={PORT} ansible_user=root "
        f"ansible_python_interpreter=/usr/bin/python3 ansible_ssh_private_key_file={key_path} "
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
    )
    marker = f"/etc/nodewright-ansible-{secrets.token_hex(4)}"
    result = subprocess.run(
        [str(ansible), "-i", str(inventory), "node", "-m", "copy", "-a", f"dest={marker} content=managed"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,  # Ansible refuses a non-blocking stdin (a parallel test worker's)
        env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_LOCAL_TEMP": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CHANGED" in result.stdout
    assert not Path(marker).exists()


def test_hcloud_cli_server_ssh(node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path) -> None:
    """``hcloud server ssh NAME`` reaches the node the way it reaches a Hetzner server."""
    binary = require_binary("hcloud")
    key_path, public_key = ssh_keypair
    token = random_token()
    client = hcloud.Client(
        token=token, api_endpoint=node_sim.api_url, poll_interval=0.02, poll_max_retries=3000
    )
    create_node(client, "cli-ssh-1", public_key)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "HCLOUD_TOKEN": token,
        "HCLOUD_ENDPOINT": node_sim.api_url,
        "HCLOUD_CONFIG": str(tmp_path / "cli.toml"),
    }
    result = subprocess.run(
        [binary, "server", "ssh", "--port", str(PORT), "cli-ssh-1", "-i", str(key_path),
         "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path / 'kh'}",
         "-o", "BatchMode=yes", "hostname"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cli-ssh-1"


def test_two_simulators_on_one_machine_do_not_collide(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key_path, public_key = ssh_keypair
    first = create_node(client, "one-1", public_key)
    address = first.public_net.ipv4.ip
    config = fast_config()
    config.ssh_port = PORT
    with SimServer(ssh_nodes=True, config=config) as other:
        assert other.runtime is not None
        other.runtime.state.pool.cursor = int(ipaddress.ip_address(address))  # aim at the taken one
        other_client = hcloud.Client(
            token=random_token(), api_endpoint=other.api_url, poll_interval=0.02, poll_max_retries=3000
        )
        second = create_node(other_client, "two-1", public_key)
        assert second.public_net.ipv4.ip != address
        kh = tmp_path / "kh"
        for server, name in ((first, "one-1"), (second, "two-1")):
            result = subprocess.run(
                [require_binary("ssh"), "-i", str(key_path), "-o", "StrictHostKeyChecking=no",
                 "-o", f"UserKnownHostsFile={kh}", "-o", "BatchMode=yes", "-p", str(PORT),
                 f"root@{server.public_net.ipv4.ip}", "hostname"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert result.stdout.strip() == name, result.stderr


def test_root_in_a_node_cannot_reach_or_change_the_host(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    """Every probe is harmless if it succeeds (same-value writes, a marker file), so a regression
    fails the test without damaging the machine."""
    key_path, public_key = ssh_keypair
    server = create_node(client, "jail-1", public_key)
    address = server.public_net.ipv4.ip
    node_root = httpx.get(node_sim.base_url + "/_sim/status").json()["node_root"]
    marker = f"/var/tmp/nodewright-escape-{secrets.token_hex(4)}"
    escape = (  # root's classic way out of a chroot, then a write to what would be the host
        "import os; os.mkdir('/esc'); os.chroot('/esc'); os.chdir('../' * 32); os.chroot('.'); "
        f"print('sees-node-root' if os.path.exists({node_root!r}) else 'jailed'); "
        f"open({marker!r}, 'w').write('escaped')"
    )
    checks = {
        "escape": f'python3 -c "{escape}"',
        "mount": "mount -t tmpfs probe /mnt && echo mounted || echo refused",
        "block-devices": "find /dev -type b | wc -l",
        "proc-sys": "v=$(cat /proc/sys/net/ipv4/ip_forward); (echo $v > /proc/sys/net/ipv4/ip_forward) "
        "2>/dev/null && echo written || echo refused",
        "sys": "v=$(cat /sys/class/net/lo/mtu); (echo $v > /sys/class/net/lo/mtu) 2>/dev/null "
        "&& echo written || echo refused",
        "netlink": "ip link set lo mtu $(cat /sys/class/net/lo/mtu) 2>/dev/null "
        "&& echo changed || echo refused",
        "userns-proc": "unshare --user --map-root-user --mount --pid --fork mount -t proc proc /mnt "
        "2>/dev/null && echo mounted || echo refused",  # a fresh proc would have a writable /proc/sys
        "ipc": "readlink /proc/self/ns/ipc",
        "init": "tr '\\0' ' ' < /proc/1/cmdline",
        "cap-sys-admin": "echo $(( 0x$(awk '/CapBnd/ {print $2}' /proc/self/status) >> 21 & 1 ))",
    }
    command = "; ".join(f"echo {name}=$({check})" for name, check in checks.items())
    result = ssh_any_host(key_path, tmp_path, address, command)
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    try:
        assert not Path(marker).exists(), "a chroot escape wrote to the host"
    finally:
        Path(marker).unlink(missing_ok=True)
    assert seen.get("escape") == "jailed", result.stdout + result.stderr
    assert seen["mount"] == "refused"
    assert seen["block-devices"] == "0"
    assert seen["proc-sys"] == "refused"
    assert seen["sys"] == "refused"
    assert seen["netlink"] == "refused"
    assert seen["userns-proc"] == "refused"
    assert seen["ipc"] != os.readlink("/proc/self/ns/ipc")
    assert "nodewright/init.py" in seen["init"]  # its own pid namespace: no host process is visible
    assert seen["cap-sys-admin"] == "0"


def test_symlinks_planted_in_a_node_do_not_redirect_the_simulators_writes(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    """The simulator rewrites a node's /etc/ssh, /root/.ssh and /etc/hostname on every boot, as
    the host's root; links the node put there must be replaced, not followed to the host."""
    key_path, public_key = ssh_keypair
    server = create_node(client, "links-1", public_key)
    address = server.public_net.ipv4.ip
    victims = {name: tmp_path / f"victim-{name}" for name in ("root-ssh", "etc-ssh", "hostname")}
    for victim in victims.values():
        victim.mkdir()
    (victims["hostname"] / "file").write_text("host file\n")
    plant = (
        f"rm -rf /root/.ssh && ln -s {victims['root-ssh']} /root/.ssh && "
        f"rm -rf /etc/ssh && ln -s {victims['etc-ssh']} /etc/ssh && "
        f"rm -f /etc/hostname && ln -s {victims['hostname'] / 'file'} /etc/hostname && echo planted"
    )
    planted = ssh_any_host(key_path, tmp_path, address, plant)
    assert planted.stdout.strip() == "planted", planted.stderr
    server.reboot().wait_until_finished()
    assert sorted(p.name for p in victims["root-ssh"].iterdir()) == []
    assert sorted(p.name for p in victims["etc-ssh"].iterdir()) == []
    assert (victims["hostname"] / "file").read_text() == "host file\n"
    again = ssh_any_host(
        key_path, tmp_path, address, "hostname; test -d /root/.ssh -a ! -L /root/.ssh && echo real"
    )
    assert again.stdout.split() == ["links-1", "real"], again.stderr


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``condition``; the timeout only bounds a failing test, it asserts nothing about speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_killed_simulator_takes_its_nodes_along_and_the_next_start_cleans_up(
    ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    require_root()
    require_binary("sshd", "/usr/sbin/sshd")
    process = subprocess.Popen(
        [sys.executable, "-m", "nodewright.sim", "--port", "0", "--ssh-port", str(PORT),
         "--create-duration", "0.05", "--start-duration", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    node_pid: int | None = None
    node_dir = ""
    spaces: set[str] = set()
    try:
        assert process.stdout is not None
        api_url = process.stdout.readline().strip()
        assert api_url.endswith("/v1"), process.stderr.read() if process.stderr else ""
        base_url = api_url.removesuffix("/v1")
        if not httpx.get(base_url + "/_sim/status").json()["ssh_nodes"]:
            missing("simulated SSH nodes unavailable")
        c = hcloud.Client(
            token=random_token(), api_endpoint=api_url, poll_interval=0.02, poll_max_retries=3000
        )
        server = create_node(c, "orphan-1", ssh_keypair[1])
        node = next(
            e for e in httpx.get(base_url + "/_sim/servers").json()["servers"] if e["id"] == server.id
        )
        node_pid, node_dir = node["ssh"]["node"]["pid"], node["ssh"]["node"]["directory"]
        assert node_pid is not None and node_processes(node_dir)
        spaces = pid_namespaces_under(node_pid)
        assert spaces, "the node's init runs in a pid namespace of its own"
        process.kill()  # no atexit, no signal handler: only the kernel cleans up now
        process.wait(timeout=30)
        assert wait_until(lambda: not node_processes(node_dir)), "a node outlived its simulator"
        # Its init too, whose command line names nothing of the node's directory.
        assert wait_until(lambda: not processes_in(spaces)), "a node's init outlived its simulator"
        root = Path(node_dir).parent
        assert root.exists()  # nobody removed the layers of the killed simulator yet
        config = fast_config()
        config.ssh_port = PORT
        with SimServer(ssh_nodes=True, config=config):
            assert not root.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        for pid in node_processes(node_dir) if node_dir else []:
            os.kill(pid, signal.SIGKILL)
        for pid in processes_in(spaces):
            os.kill(pid, signal.SIGKILL)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_a_node_does_not_see_the_hosts_homes_temp_files_or_checkout(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    """The node's lower layer is the host's root filesystem; /root and /home (the host's SSH keys
    and tool credentials), /tmp and /var/tmp start empty as on a fresh server, and top-level
    directories a server does not have (the checkout) are hidden."""
    key_path, public_key = ssh_keypair
    secret = Path("/root") / f".nodewright-secret-{secrets.token_hex(4)}"
    secret.write_text("host only\n")
    checkout = Path(__file__).resolve().parts[1]  # e.g. "work": not a directory servers have
    try:
        server = create_node(client, "homes-1", public_key)
        listing = "ls -A /root; echo --; ls -A /home; echo --; ls -A /tmp /var/tmp; echo --; ls /"
        result = ssh_any_host(key_path, tmp_path, server.public_net.ipv4.ip, listing)
    finally:
        secret.unlink()
    assert result.returncode == 0, result.stderr
    root_entries, home_entries, tmp_entries, top_level = result.stdout.split("--\n")
    assert secret.name not in root_entries
    assert ".ssh" in root_entries.split()
    assert home_entries.split() == []
    assert tmp_path.parts[2] not in tmp_entries  # the host's temporary files (this test's among them)
    if checkout not in FHS_TOP_LEVEL:
        assert checkout not in top_level.split()
    assert {"etc", "usr", "var", "tmp", "root"} <= set(top_level.split())


def test_a_start_that_fails_leaves_no_node_root(tmp_path: Path) -> None:
    require_root()
    require_binary("sshd", "/usr/sbin/sshd")
    state_file = tmp_path / "state.json"
    state_file.write_text("{not json")
    mine = f"nodewright-sim-{os.getpid()}."
    before = {p for base in ("/run", "/dev/shm") for p in Path(base).glob(mine + "*")}
    config = fast_config()
    config.ssh_port = PORT
    with pytest.raises(ValueError):
        SimServer(ssh_nodes=True, state_file=state_file, config=config).start()
    after = {p for base in ("/run", "/dev/shm") for p in Path(base).glob(mine + "*")}
    assert after <= before


def test_a_state_file_the_nodes_could_read_is_refused(tmp_path: Path) -> None:
    """The state file holds every project's servers and user data; the nodes' disks share the
    host's /usr and a copy of /etc, so one kept there would be readable by root in every node. The
    simulator refuses it, saying where it is, in one line."""
    require_root()
    require_binary("sshd", "/usr/sbin/sshd")
    visible = Path("/usr/local/share", f"nodewright-sim-state-{secrets.token_hex(4)}.json")
    assert readable_by_nodes(visible) and readable_by_nodes(Path("/etc/nodewright-sim-state.json"))
    assert not readable_by_nodes(tmp_path / "state.json")  # where the other tests keep theirs
    for hidden in ("/opt/x", "/srv/x", "/var/lib/postgresql", "/root/x", "/mnt/x"):
        assert not readable_by_nodes(Path(hidden))  # a fresh server's own, empty, not the host's
    config = fast_config()
    config.ssh_port = PORT
    server = SimServer(ssh_nodes=True, state_file=visible, config=config)
    try:
        with pytest.raises(
            ValueError, match=r"state file .* would be readable inside every simulated node"
        ) as err:
            server.start()
        assert "\n" not in str(err.value)
    finally:
        server.stop()
        visible.unlink(missing_ok=True)
