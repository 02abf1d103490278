# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""The hetzner.hcloud Ansible collection (from the `ansible` package, unchanged) drives a server on the
simulator: tests/fixtures/ansible/hcloud_server.yml, run by the real ``ansible-playbook``, checks each
module's result; this test checks the simulator's own state between the playbook's two runs.

The collection comes from ``scripts/fetch-hcloud-collection`` (.ci/run calls it) into
``.cache/hcloud-collection``; ``NODEWRIGHT_HCLOUD_COLLECTIONS`` names another collections directory
(one that holds ansible_collections/hetzner/hcloud) to try a different release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcloud
import httpx

from nodewright.sim.server import SimServer
from tests.fixtures.sim import hcloud_client, sim, sim_control, sim_server, sim_token  # noqa: F401
from tests.support.system import missing

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "fixtures" / "ansible" / "hcloud_server.yml"
SERVER = "ansible-web-1"
KEY = "ansible-ops"

# hetzner.hcloud 5.4.0 (ansible 12.3.0) reads a server's `datacenter`, which the API no longer returns
# (the document's Server has `location` only; datacenters were phased out, /datacenters removed after
# 2026-10-01): modules/server.py _create_server calls
# deprecated_server_type_warning(..., resp.server.datacenter.location) right after POST /servers, and
# _prepare_result reads server.datacenter.name for every result. Against Hetzner today it fails the
# same way; the test shows that failure, then drives the whole playbook with the simulator's
# legacy_datacenter on (the removed field added back), as an operator with such tooling would.
DATACENTER_CRASH = "'NoneType' object has no attribute 'location'"


def collections_path() -> Path:
    explicit = os.environ.get("NODEWRIGHT_HCLOUD_COLLECTIONS")
    path = Path(explicit) if explicit else ROOT / ".cache" / "hcloud-collection"
    if not (path / "ansible_collections" / "hetzner" / "hcloud" / "MANIFEST.json").is_file():
        missing(f"the hetzner.hcloud collection is not in {path} (run scripts/fetch-hcloud-collection)")
    return path


def ansible_playbook() -> Path:
    binary = Path(sys.executable).parent / "ansible-playbook"
    if not os.access(binary, os.X_OK):
        missing(f"{binary} not found (ansible-core is in the project's virtualenv)")
    return binary


def collection_version(path: Path) -> str:
    manifest = path / "ansible_collections" / "hetzner" / "hcloud" / "MANIFEST.json"
    return str(json.loads(manifest.read_text())["collection_info"]["version"])


def run_playbook(
    binary: Path, collections: Path, endpoint: str, token: str, workdir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    (workdir / "ansible.cfg").write_text("[defaults]\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "HCLOUD_ENDPOINT": endpoint,
        "HCLOUD_TOKEN": token,
        "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"),
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_DISPLAY_TRACEBACK": "error",
    }
    return subprocess.run(
        [str(binary), str(PLAYBOOK), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def api_requests(sim_control: httpx.Client) -> list[dict[str, Any]]:
    response = sim_control.get("/requests", params={"limit": 10_000})
    response.raise_for_status()
    return [r for r in response.json()["requests"] if r["path"].startswith("/v1")]


def calls(requests: list[dict[str, Any]], method: str, suffix: str) -> list[int]:
    """The statuses of the calls whose path ends with ``suffix``."""
    return [r["status"] for r in requests if r["method"] == method and r["path"].endswith(suffix)]


def test_hcloud_collection_drives_a_server(
    sim: SimServer,
    sim_token: str,
    sim_control: httpx.Client,
    hcloud_client: hcloud.Client,
    tmp_path: Path,
) -> None:
    collections = collections_path()
    binary = ansible_playbook()
    # The modules poll an action at once, then after 2 s, 4 s, 5 s...: actions that take no time
    # finish by the first poll, so the run costs what Ansible costs and no back-off.
    sim_control.post(
        "/config",
        json={
            "create_duration": 0,
            "start_duration": 0,
            "stop_duration": 0,
            "delete_duration": 0,
            "action_duration": 0,
        },
    ).raise_for_status()
    endpoint = sim.base_url + "/v1"
    try:
        _drive(sim_control, hcloud_client, collections, binary, endpoint, sim_token, tmp_path)
    finally:
        sim_control.post("/config", json={"legacy_datacenter": False}).raise_for_status()


def _drive(
    sim_control: httpx.Client,
    hcloud_client: hcloud.Client,
    collections: Path,
    binary: Path,
    endpoint: str,
    sim_token: str,
    tmp_path: Path,
) -> None:

    life = run_playbook(binary, collections, endpoint, sim_token, tmp_path, "--skip-tags", "cleanup")
    if life.returncode != 0 and DATACENTER_CRASH in life.stdout:
        # The collection, not the simulator: the server was created, the module fell over reading
        # it, as it does against Hetzner today. Clear up, and run it again with the removed field
        # added back (the simulator's legacy_datacenter), which is what such tooling needs.
        failed_task = life.stdout.split(DATACENTER_CRASH)[0].rsplit("TASK [", 1)[-1].split("]", 1)[0]
        assert failed_task == "Create the server", life.stdout[-6000:]
        servers = hcloud_client.servers.get_all(name=SERVER)
        assert [s.location.name for s in servers] == ["fsn1"]
        assert calls(api_requests(sim_control), "POST", "/v1/servers") == [201]
        for server in servers:
            server.delete().wait_until_finished()
        for key in hcloud_client.ssh_keys.get_all():
            key.delete()
        sim_control.post("/config", json={"legacy_datacenter": True}).raise_for_status()
        sim_control.delete("/requests").raise_for_status()
        life = run_playbook(binary, collections, endpoint, sim_token, tmp_path, "--skip-tags", "cleanup")
    assert life.returncode == 0, life.stdout[-6000:] + life.stderr[-3000:]

    # The playbook left a protected, running cpx22 rebuilt to debian-12, with labels, no backups,
    # an IPv4 pointer, its rescue used up by the boot into it.
    server = hcloud_client.servers.get_by_name(SERVER)
    assert server is not None
    assert server.status == "running"
    assert server.server_type.name == "cpx22"
    assert server.primary_disk_size == 80  # upgraded with cx33, kept by the cpx22 resize
    assert server.image is not None and server.image.name == "debian-12"
    assert server.rescue_enabled is False
    assert server.location.name == "fsn1"
    assert server.labels == {"role": "web", "tier": "front"}
    assert server.protection == {"delete": True, "rebuild": True}
    assert server.backup_window is None
    assert server.public_net.ipv4.dns_ptr == "web-1.example.com"
    v6_pointers = {p["ip"]: p["dns_ptr"] for p in server.public_net.ipv6.dns_ptr}
    assert "web-1-v6.example.com" not in v6_pointers.values()
    key = hcloud_client.ssh_keys.get_by_name(KEY)
    assert key is not None and key.labels == {"team": "ops"}

    commands = [a.command for a in server.get_actions(sort=["id:asc"])]
    for command in (
        "create_server",
        "change_server_type",
        "enable_backup",
        "disable_backup",
        "change_dns_ptr",
        "change_protection",
        "rebuild_server",
        "enable_rescue",
    ):
        assert command in commands, commands
    assert commands.count("change_server_type") == 2, commands
    # state=restarted is stop + start: the start after enable_rescue boots the rescue system.
    rescue_at = commands.index("enable_rescue")
    assert commands[rescue_at + 1 : rescue_at + 3] == ["stop_server", "start_server"], commands
    assert all(a.status == "success" for a in server.get_actions()), commands

    requests = api_requests(sim_control)
    assert calls(requests, "POST", "/v1/servers") == [201]  # the second "create" found the server
    assert calls(requests, "POST", "/v1/ssh_keys") == [201]
    assert calls(requests, "DELETE", f"/v1/servers/{server.id}") == [423]  # protected
    unexpected = [
        (r["method"], r["path"], r["status"], r["error_code"])
        for r in requests
        if r["status"] >= 400 and not (r["method"] == "DELETE" and r["error_code"] == "protected")
    ]
    assert unexpected == [], "the modules called what the simulator refused"

    cleanup = run_playbook(binary, collections, endpoint, sim_token, tmp_path, "--tags", "cleanup")
    assert cleanup.returncode == 0, cleanup.stdout[-6000:] + cleanup.stderr[-3000:]
    assert hcloud_client.servers.get_all() == []
    assert hcloud_client.ssh_keys.get_all() == []
    requests = api_requests(sim_control)
    assert calls(requests, "DELETE", f"/v1/servers/{server.id}") == [423, 200]
    assert [r for r in requests if r["status"] >= 400 and r["error_code"] != "protected"] == []
