# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""The real ``hcloud`` CLI (Debian hcloud-cli, hcloud-go 1.35) works against the simulator unchanged
and prints what it prints against Hetzner."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nodewright.sim.server import SimServer
from tests.fixtures.sim import sim, sim_server, sim_token  # noqa: F401
from tests.support.system import require_binary

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnTGBbBWHhQFvu2DRhR+0/l8dAvJHfZb0bkk0R+DUhn test@example"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def hcloud_cli(sim: SimServer, sim_token: str, tmp_path: Path) -> Run:
    binary = require_binary("hcloud")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "HCLOUD_TOKEN": sim_token,
        "HCLOUD_ENDPOINT": sim.base_url + "/v1",
        "HCLOUD_CONFIG": str(tmp_path / "cli.toml"),
    }

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if ok:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    return run


def test_cli_server_lifecycle(hcloud_cli: Run, tmp_path: Path) -> None:
    key_file = tmp_path / "key.pub"
    key_file.write_text(PUBLIC_KEY + "\n")
    out = hcloud_cli("ssh-key", "create", "--name", "ops", "--public-key-from-file", str(key_file)).stdout
    assert re.fullmatch(r"SSH key \d+ created\n", out)

    out = hcloud_cli(
        "server", "create", "--name", "web-1", "--type", "cx23", "--image", "ubuntu-24.04",
        "--ssh-key", "ops", "--label", "role=web",
    ).stdout  # fmt: skip
    match = re.search(r"^Server (\d+) created$", out, re.MULTILINE)
    assert match, out
    server_id = match.group(1)
    assert re.search(r"^IPv4: 198\.1[89]\.\d+\.\d+$", out, re.MULTILINE), out
    assert re.search(r"^IPv6: 2001:db8:[0-9a-f:]+::1$", out, re.MULTILINE), out
    assert re.search(r"^IPv6 Network: 2001:db8:[0-9a-f:]+::/64$", out, re.MULTILINE), out
    assert "Root password" not in out

    out = hcloud_cli("server", "create", "--name", "db-1", "--type", "cpx21", "--image", "debian-12").stdout
    assert re.search(r"^Root password: \S+$", out, re.MULTILINE), out

    failed = hcloud_cli(
        "server", "create", "--name", "web-1", "--type", "cx23", "--image", "ubuntu-24.04", ok=False
    )
    assert failed.returncode == 1
    assert failed.stderr.strip() == "hcloud: server name is already used (uniqueness_error)"

    servers = json.loads(hcloud_cli("server", "list", "-o", "json").stdout)
    assert {s["name"]: s["status"] for s in servers} == {"web-1": "running", "db-1": "running"}
    assert next(s for s in servers if s["name"] == "web-1")["labels"] == {"role": "web"}

    table = hcloud_cli("server", "list", "--selector", "role=web").stdout
    assert table.splitlines()[0].split()[:5] == ["ID", "NAME", "STATUS", "IPV4", "IPV6"]
    assert "web-1" in table and "db-1" not in table

    described = hcloud_cli("server", "describe", "web-1").stdout
    assert f"ID:\t\t{server_id}" in described
    assert "Name:\t\tweb-1" in described
    assert "Status:\t\trunning" in described
    assert "Server Type:\tcx23 (ID: 114)" in described
    assert "role: web" in described
    as_json = json.loads(hcloud_cli("server", "describe", "web-1", "-o", "json").stdout)
    assert as_json["id"] == int(server_id)

    assert hcloud_cli("server", "delete", "web-1").stdout.strip() == "Server web-1 deleted"
    names = [s["name"] for s in json.loads(hcloud_cli("server", "list", "-o", "json").stdout)]
    assert names == ["db-1"]


def test_cli_catalog(hcloud_cli: Run) -> None:
    types = hcloud_cli("server-type", "list").stdout
    assert types.splitlines()[0].split() == [
        "ID",
        "NAME",
        "CORES",
        "CPU",
        "TYPE",
        "MEMORY",
        "DISK",
        "STORAGE",
        "TYPE",
    ]
    assert re.search(r"^114\s+cx23\s+2\s+shared\s+4.0 GB\s+40 GB\s+local$", types, re.MULTILINE), types
    locations = hcloud_cli("location", "list").stdout
    assert re.search(r"^1\s+fsn1\s+Falkenstein DC Park 1\s+eu-central\s+DE\s+Falkenstein$", locations, re.M)
    assert {line.split()[1] for line in locations.splitlines()[1:]} == {
        "fsn1",
        "nbg1",
        "hel1",
        "ash",
        "hil",
        "sin",
    }
    images = hcloud_cli("image", "list").stdout
    assert re.search(r"^161547269\s+system\s+ubuntu-24.04\s+Ubuntu 24.04\s", images, re.MULTILINE), images
    assert "debian-13" in images


def test_cli_reports_api_errors(hcloud_cli: Run) -> None:
    result = hcloud_cli("server", "describe", "nope", ok=False)
    assert result.returncode == 1
    assert "server not found" in result.stderr
    result = hcloud_cli(
        "server", "create", "--name", "x", "--type", "cx23", "--image", "ubuntu-24.04", "--location", "ash",
        ok=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "(invalid_input)" in result.stderr


def test_cli_protection_backup_rdns_iso_and_console(hcloud_cli: Run) -> None:
    """Every server action the simulator adds beyond power, in one run (this CLI waits 500 ms
    before its first poll of an action whatever --poll-interval says: about 5 s in all)."""

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return hcloud_cli("--poll-interval", "50ms", "server", *args, ok=ok)

    out = cli("create", "--name", "web-1", "--type", "cx23", "--image", "ubuntu-24.04").stdout
    server_id = re.search(r"^Server (\d+) created$", out, re.MULTILINE)
    assert server_id, out
    done = f"for server {server_id.group(1)}\n"

    def describe() -> dict[str, Any]:
        server: dict[str, Any] = json.loads(cli("describe", "web-1", "-o", "json").stdout)
        return server

    assert cli("enable-protection", "web-1", "delete").stdout == "Resource protection enabled " + done
    assert describe()["protection"]["delete"] is True
    failed = cli("delete", "web-1", ok=False)
    assert failed.returncode == 1
    assert failed.stderr == "hcloud: deleting Server web-1 failed: server deletion is protected (protected)\n"

    assert cli("enable-backup", "web-1").stdout == "Backup enabled " + done
    assert describe()["backup_window"]
    assert cli("disable-backup", "web-1").stdout == "Backup disabled " + done
    assert describe()["backup_window"] is None

    out = cli("set-rdns", "web-1", "--hostname", "web-1.example.com").stdout
    assert out == "Reverse DNS of Server web-1 changed\n"
    assert describe()["public_net"]["ipv4"]["dns_ptr"] == "web-1.example.com"

    out = cli("attach-iso", "web-1", "virtio-win-0.1.271.iso").stdout
    assert out == "ISO virtio-win-0.1.271.iso attached " + done.replace("for", "to")
    assert describe()["iso"]["name"] == "virtio-win-0.1.271.iso"
    assert cli("detach-iso", "web-1").stdout == "ISO detached " + done.replace("for", "from")
    assert describe()["iso"] is None

    console = cli("request-console", "web-1", ok=False)
    assert console.returncode == 1
    assert console.stderr == "hcloud: request_console (a VNC console) is not simulated (unsupported_error)\n"

    refused = cli("change-type", "web-1", "cx33", "--keep-disk", ok=False)
    assert refused.returncode == 1 and "(server_not_stopped)" in refused.stderr, refused.stderr
    cli("poweroff", "web-1")
    cli("change-type", "web-1", "cx33", "--keep-disk")
    resized = describe()
    assert (resized["server_type"]["name"], resized["primary_disk_size"]) == ("cx33", 40)

    assert cli("disable-protection", "web-1", "delete").stdout == "Resource protection disabled " + done
    assert describe()["protection"]["delete"] is False
    assert cli("delete", "web-1").stdout == "Server web-1 deleted\n"
    assert json.loads(cli("list", "-o", "json").stdout) in ([], None)


def test_cli_rebuild_rescue_and_snapshots(hcloud_cli: Run) -> None:
    """Rebuild, rescue and images as this CLI does them, against the simulator (no nodes)."""

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return hcloud_cli("--poll-interval", "50ms", *args, ok=ok)

    cli("server", "create", "--name", "web-1", "--type", "cx23", "--image", "ubuntu-24.04")
    out = cli("server", "rebuild", "web-1", "--image", "debian-12").stdout
    assert re.fullmatch(r"Server \d+ rebuilt with image debian-12\n", out), out
    server = json.loads(cli("server", "describe", "web-1", "-o", "json").stdout)
    assert server["image"]["name"] == "debian-12"

    out = cli("server", "enable-rescue", "web-1").stdout
    assert re.search(r"Rescue enabled for Server \d+ with root password: \w{20}", out, re.IGNORECASE), out
    assert json.loads(cli("server", "describe", "web-1", "-o", "json").stdout)["rescue_enabled"] is True
    cli("server", "disable-rescue", "web-1")
    assert json.loads(cli("server", "describe", "web-1", "-o", "json").stdout)["rescue_enabled"] is False

    out = cli("server", "create-image", "web-1", "--type", "snapshot", "--description", "golden").stdout
    match = re.search(r"Image (\d+) created from Server (\d+)", out, re.IGNORECASE)
    assert match, out
    image_id = match.group(1)
    images = json.loads(cli("image", "list", "--type", "snapshot", "-o", "json").stdout)
    assert [(str(i["id"]), i["description"], i["status"]) for i in images] == [
        (image_id, "golden", "available")
    ]
    cli("image", "update", image_id, "--description", "golden v2")
    assert json.loads(cli("image", "describe", image_id, "-o", "json").stdout)["description"] == "golden v2"

    out = cli("server", "create", "--name", "web-2", "--type", "cx23", "--image", image_id).stdout
    assert re.search(r"^Server \d+ created$", out, re.MULTILINE), out
    cli("image", "enable-protection", image_id, "delete")
    refused = cli("image", "delete", image_id, ok=False)
    assert refused.returncode == 1 and "(protected)" in refused.stderr, refused.stderr
    cli("image", "disable-protection", image_id, "delete")
    cli("image", "delete", image_id)
    assert json.loads(cli("image", "list", "--type", "snapshot", "-o", "json").stdout) in ([], None)
