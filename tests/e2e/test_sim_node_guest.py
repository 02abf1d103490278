# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Inside a simulated node, as on an Ubuntu server: cloud-init at first boot, an init that runs
services and turns reboot/poweroff into the server's state, sshd with PAM and sudo, and a real
Ansible playbook provisioning it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hcloud
import httpx
import pytest
import yaml
from hcloud.images import Image
from hcloud.server_types import ServerType

from nodewright.sim.server import SimServer
from tests.e2e.test_sim_node_network import wait_http
from tests.e2e.test_sim_ssh_nodes import create_node, ssh_any_host
from tests.fixtures.sim import random_token, ssh_keypair, ssh_sim_server  # noqa: F401
from tests.support.system import require_binary


@pytest.fixture
def node_sim(ssh_sim_server: SimServer) -> SimServer:
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    return ssh_sim_server


@pytest.fixture
def client(node_sim: SimServer) -> hcloud.Client:
    return hcloud.Client(
        token=random_token(), api_endpoint=node_sim.api_url, poll_interval=0.02, poll_max_retries=3000
    )


def wait_status(client: hcloud.Client, server_id: int, status: str) -> None:
    deadline = time.monotonic() + 30
    while client.servers.get_by_id(server_id).status != status:
        assert time.monotonic() < deadline, f"server {server_id} never became {status}"
        time.sleep(0.1)


def password_ssh(address: str, user: str, password: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """A password login with OpenSSH itself (SSH_ASKPASS answers the prompt)."""
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
    askpass.chmod(0o700)
    env = dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    return subprocess.run(
        [require_binary("ssh"), "-o", "StrictHostKeyChecking=no",
         "-o", f"UserKnownHostsFile={tmp_path}/pw_kh",
         "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
         "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10", f"{user}@{address}", "echo in"],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_cloud_config_users_files_commands_and_status(
    client: hcloud.Client, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key_path, public_key = ssh_keypair
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {
            "users": [
                {
                    "name": "deploy",
                    "groups": "sudo",
                    "sudo": "ALL=(ALL) NOPASSWD:ALL",
                    "shell": "/bin/bash",
                    "lock_passwd": True,
                    "ssh_authorized_keys": [public_key],
                },
            ],
            "write_files": [{"path": "/etc/app/app.conf", "content": "port=8080\n", "permissions": "0640"}],
            "bootcmd": ["echo boot >> /var/log/boots"],
            "runcmd": [
                "echo from-runcmd > /root/runcmd.out",
                ["sh", "-c", "test -f /etc/app/app.conf && echo seen"],
            ],
            "timezone": "Europe/Berlin",
        }
    )
    server = create_node(client, "ci-1", public_key, user_data)
    address = server.public_net.ipv4.ip
    result = ssh_any_host(
        key_path, tmp_path, address,
        "cloud-init status --wait; echo rc=$?; cat /root/runcmd.out; stat -c %a /etc/app/app.conf; "
        "cat /etc/app/app.conf; cat /etc/timezone; cat /var/log/boots; "
        "test -f /var/lib/cloud/instance/boot-finished && echo finished; "
        "grep -c 'finished at' /var/log/cloud-init-output.log; grep seen /var/log/cloud-init-output.log; "
        "passwd -S deploy | cut -d' ' -f2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert "status: done" in lines and "rc=0" in lines, result.stdout
    expected = ["from-runcmd", "640", "port=8080", "Europe/Berlin", "boot", "finished", "1", "seen", "L"]
    assert lines[lines.index("rc=0") + 1 : lines.index("rc=0") + 1 + len(expected)] == expected
    as_json = json.loads(ssh_any_host(key_path, tmp_path, address, "cloud-init status --format json").stdout)
    assert as_json["status"] == "done" and as_json["errors"] == []

    # The user cloud-init made logs in by key although its password is locked (PAM), and sudo works.
    login = subprocess.run(
        [require_binary("ssh"), "-i", str(key_path), "-o", "StrictHostKeyChecking=no",
         "-o", f"UserKnownHostsFile={tmp_path}/kh", "-o", "BatchMode=yes", f"deploy@{address}",
         "sudo -n id -u"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "0"

    # bootcmd runs at every boot, runcmd once per instance.
    server.reboot().wait_until_finished()
    again = ssh_any_host(key_path, tmp_path, address, "cloud-init status --wait; wc -l < /var/log/boots; "
                         "grep -c from-runcmd /root/runcmd.out")  # fmt: skip
    assert again.stdout.split("\n")[-3:] == ["2", "1", ""], again.stdout


def test_script_user_data_and_a_failing_runcmd(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key_path, public_key = ssh_keypair
    script = create_node(client, "script-1", public_key, "#!/bin/sh\necho scripted > /root/script.out\n")
    out = ssh_any_host(key_path, tmp_path, script.public_net.ipv4.ip,
                       "cloud-init status --wait >/dev/null; cat /root/script.out")  # fmt: skip
    assert out.stdout.strip() == "scripted", out.stdout + out.stderr

    other = hcloud.Client(
        token=random_token(), api_endpoint=node_sim.api_url, poll_interval=0.02, poll_max_retries=3000
    )
    failing = create_node(other, "broken-1", public_key, "#cloud-config\nruncmd:\n  - exit 3\n")
    out = ssh_any_host(key_path, tmp_path, failing.public_net.ipv4.ip,
                       "cloud-init status --wait --long; echo rc=$?")  # fmt: skip
    assert "status: error" in out.stdout and "rc=1" in out.stdout, out.stdout
    assert "scripts_user" in out.stdout


def test_in_node_poweroff_leaves_the_server_off_and_a_dead_init_too(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key_path, public_key = ssh_keypair
    server = create_node(client, "power-1", public_key)
    ssh_any_host(key_path, tmp_path, server.public_net.ipv4.ip, "poweroff")
    wait_status(client, server.id, "off")
    server.power_on().wait_until_finished()
    assert client.servers.get_by_id(server.id).status == "running"
    # PID 1 dies (as a crashed VM): the server goes off.
    pid = next(
        e for e in httpx.get(node_sim.base_url + "/_sim/servers").json()["servers"] if e["id"] == server.id
    )
    children = Path(
        f"/proc/{pid['ssh']['node']['pid']}/task/{pid['ssh']['node']['pid']}/children"
    ).read_text()
    init_pid = int(children.split()[0])
    os.kill(init_pid, 9)
    wait_status(client, server.id, "off")


def test_ansible_playbook_provisions_a_node_as_a_real_server(
    node_sim: SimServer, client: hcloud.Client, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    """Created without SSH keys (root password from the API, root's key through cloud-init),
    then hardened by a playbook: a sudo user with a locked password, password logins switched
    off in sshd_config and sshd restarted, a reboot, and facts with the server's own IPv4."""
    playbook_bin = require_binary("ansible-playbook", str(Path(sys.executable).parent / "ansible-playbook"))
    key_path, public_key = ssh_keypair
    created = client.servers.create(
        "prov-1", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
        user_data="#cloud-config\nssh_authorized_keys:\n  - " + public_key + "\n",
    )  # fmt: skip
    for action in [created.action, *created.next_actions]:
        action.wait_until_finished()
    assert created.root_password
    address = created.server.public_net.ipv4.ip
    assert password_ssh(address, "root", created.root_password, tmp_path).stdout.strip() == "in"
    assert password_ssh(address, "root", "wrong-password", tmp_path).returncode != 0

    known_hosts = tmp_path / "known_hosts"
    scan = subprocess.run([require_binary("ssh-keyscan"), "-t", "ed25519", address],
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    known_hosts.write_text(scan.stdout)
    ssh_args = f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts} -o IdentitiesOnly=yes"
    inventory = {"all": {"hosts": {"node": {
        "ansible_host": address, "ansible_user": "root", "ansible_ssh_private_key_file": str(key_path),
        "ansible_python_interpreter": "/usr/bin/python3", "ansible_ssh_common_args": ssh_args,
    }}}}  # fmt: skip
    facts = tmp_path / "facts.json"
    playbook: list[dict[str, Any]] = [
        {"hosts": "node", "gather_facts": False, "tasks": [
            {"ansible.builtin.user": {"name": "ops", "shell": "/bin/bash", "groups": "sudo",
                                      "password_lock": True}},
            {"ansible.builtin.file": {"path": "/home/ops/.ssh", "state": "directory", "owner": "ops",
                                      "mode": "0700"}},
            {"ansible.builtin.copy": {
                "dest": "/home/ops/.ssh/authorized_keys", "content": public_key + "\n", "owner": "ops",
                "mode": "0600"}},
            {"ansible.builtin.copy": {"dest": "/etc/sudoers.d/ops", "content": "ops ALL=(ALL) NOPASSWD:ALL\n",
                                      "mode": "0440", "validate": "visudo -cf %s"}},
        ]},
        {"hosts": "node", "remote_user": "ops", "become": True, "gather_facts": True, "tasks": [
            {"ansible.builtin.lineinfile": {"path": "/etc/ssh/sshd_config",
                                            "regexp": "^#?PasswordAuthentication",
                                            "line": "PasswordAuthentication no", "insertbefore": "BOF"},
             "notify": "restart ssh"},
            {"ansible.builtin.shell": "nohup python3 -m http.server 8081 >/dev/null 2>&1 &"},
            {"ansible.builtin.copy": {"dest": "/root/facts.json",
                                      "content": "{{ ansible_default_ipv4 | to_json }}"}},
            {"ansible.builtin.fetch": {"src": "/root/facts.json", "dest": str(facts), "flat": True}},
        ], "handlers": [
            {"name": "restart ssh", "ansible.builtin.service": {"name": "ssh", "state": "restarted"}},
        ]},
    ]  # fmt: skip
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "site.yml").write_text(yaml.safe_dump(playbook))
    env = dict(
        os.environ, ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0"
    )
    run = subprocess.run([playbook_bin, "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "site.yml")],
                         capture_output=True, text=True, timeout=300, env=env, check=False,
                         stdin=subprocess.DEVNULL)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert json.loads(facts.read_text())["address"] == address
    assert wait_http(f"http://{address}:8081/") == 200  # the port it opened
    refused = password_ssh(address, "root", created.root_password, tmp_path)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused.stderr

    # The reboot module (as ops with sudo) and wait_for_connection; the hardening survives it and
    # an API reboot too.
    inventory["all"]["hosts"]["node"]["ansible_user"] = "ops"
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    reboot = [{"hosts": "node", "become": True, "gather_facts": False, "tasks": [
        {"ansible.builtin.reboot": {"reboot_timeout": 120}},
        {"ansible.builtin.wait_for_connection": {"timeout": 60}},
        {"ansible.builtin.command": "cloud-init status --wait"},
    ]}]  # fmt: skip
    (tmp_path / "reboot.yml").write_text(yaml.safe_dump(reboot))
    run = subprocess.run([playbook_bin, "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "reboot.yml")],
                         capture_output=True, text=True, timeout=300, env=env, check=False,
                         stdin=subprocess.DEVNULL)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert client.servers.get_by_id(created.server.id).status == "running"
    client.servers.get_by_id(created.server.id).reboot().wait_until_finished()
    assert password_ssh(address, "root", created.root_password, tmp_path).returncode != 0
    kept = ssh_any_host(key_path, tmp_path, address, "head -1 /etc/ssh/sshd_config")
    assert kept.stdout.strip() == "PasswordAuthentication no"
