# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""What the disk actions do to a real simulated server, driven by hcloud-python: a rebuild resets
the disk and makes new host keys, the rescue system boots with its own root and keys (the disk
untouched, back after a reboot), and a snapshot carries the disk into a new server."""

from __future__ import annotations

import time
from pathlib import Path

import hcloud
import httpx
from hcloud.images import Image
from hcloud.server_types import ServerType
from hcloud.ssh_keys import SSHKey

from nodewright.sim.server import SimServer
from tests.e2e.test_sim_ssh_nodes import client, create_node, node_sim, ssh_any_host  # noqa: F401
from tests.fixtures.sim import ssh_keypair, ssh_sim_server  # noqa: F401


def _run(key: Path, tmp_path: Path, host: str, command: str) -> str:
    """Run ``command`` on the node, retrying while it boots; returns its output."""
    deadline = time.monotonic() + 30
    while True:
        result = ssh_any_host(key, tmp_path, host, command)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return result.stdout
        time.sleep(0.2)


def _host_key(key: Path, tmp_path: Path, host: str) -> str:
    return _run(key, tmp_path, host, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1]


def _settled(client: hcloud.Client, server_id: int) -> None:
    for _ in range(1500):
        server = client.servers.get_by_id(server_id)
        if server.status == "running" and not server.locked:
            return
        time.sleep(0.02)
    raise AssertionError("server did not settle")


def test_rebuild_resets_the_disk_and_remakes_host_keys(
    client: hcloud.Client, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public = ssh_keypair
    server = create_node(client, "web-1", public)
    host = server.public_net.ipv4.ip
    _run(key, tmp_path, host, "echo kept > /root/data")
    old_host_key = _host_key(key, tmp_path, host)

    response = client.servers.rebuild(server, Image(name="debian-12"))
    assert response.root_password is None  # created with a key: no password
    response.action.wait_until_finished()
    _settled(client, server.id)
    assert client.servers.get_by_id(server.id).image.name == "debian-12"
    assert _run(key, tmp_path, host, "test -e /root/data && echo still || echo gone").strip() == "gone"
    assert _host_key(key, tmp_path, host) != old_host_key
    assert _run(key, tmp_path, host, "cloud-init status").strip() == "status: done"


def test_rescue_boots_its_own_system_and_leaves_the_disk(
    client: hcloud.Client, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public = ssh_keypair
    server = create_node(client, "web-1", public)
    host = server.public_net.ipv4.ip
    _run(key, tmp_path, host, "echo mine > /root/data")
    rescue_key = client.ssh_keys.get_by_name("key-web-1")
    response = client.servers.enable_rescue(server, ssh_keys=[rescue_key.id])
    assert response.root_password
    response.action.wait_until_finished()
    assert client.servers.get_by_id(server.id).rescue_enabled is True

    client.servers.reboot(server).wait_until_finished()
    _settled(client, server.id)
    assert _run(key, tmp_path, host, "hostname").strip() == "rescue"
    assert "Rescue system" in _run(key, tmp_path, host, "cat /etc/motd")
    assert _run(key, tmp_path, host, "test -e /root/data && echo seen || echo absent").strip() == "absent"
    assert client.servers.get_by_id(server.id).rescue_enabled is False  # used up by the boot

    # The next boot is from the disk again, with its data.
    client.servers.reboot(server).wait_until_finished()
    _settled(client, server.id)
    assert _run(key, tmp_path, host, "hostname").strip() == "web-1"
    assert _run(key, tmp_path, host, "cat /root/data").strip() == "mine"


def test_snapshot_carries_the_disk_into_a_new_server(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public = ssh_keypair
    source = create_node(client, "golden", public)
    source_host = source.public_net.ipv4.ip
    bake = "echo baked > /root/baked && useradd -m app && su app -c 'echo ok > ~app/own'"
    _run(key, tmp_path, source_host, bake)
    response = client.servers.create_image(source, description="golden", labels={"role": "web"})
    assert response.image.status == "creating"
    response.action.wait_until_finished()
    image = client.images.get_by_id(response.image.id)
    assert (image.type, image.status, image.created_from.id) == ("snapshot", "available", source.id)
    assert image.image_size is not None and image.image_size > 0
    assert [i.id for i in client.images.get_all(type=["snapshot"], label_selector="role=web")] == [image.id]

    result = client.servers.create(
        "clone",
        server_type=ServerType(name="cx23"),
        image=Image(id=image.id),
        ssh_keys=[SSHKey(name="key-golden")],
    )
    result.action.wait_until_finished()
    for action in result.next_actions:
        action.wait_until_finished()
    clone = client.servers.get_by_id(result.server.id)
    clone_host = clone.public_net.ipv4.ip
    assert _run(key, tmp_path, clone_host, "cat /root/baked").strip() == "baked"
    # Ownership is the clone's own root's, not the source node's host ids.
    assert _run(key, tmp_path, clone_host, "stat -c %U ~app/own").strip() == "app"
    assert _run(key, tmp_path, clone_host, "hostname").strip() == "clone"
    assert _host_key(key, tmp_path, clone_host) != _host_key(key, tmp_path, source_host)

    # The snapshot outlives its server; deleting it takes its content.
    client.servers.delete(source).wait_until_finished()
    assert client.images.get_by_id(image.id).status == "available"
    nodes = node_sim.runtime.nodes
    assert nodes is not None
    assert nodes.image_path(image.id).is_dir()
    client.images.delete(image)
    assert not nodes.image_path(image.id).exists()


def test_a_snapshot_dropped_while_it_copies_leaves_no_copy(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public = ssh_keypair
    server = create_node(client, "big", public)
    _run(key, tmp_path, server.public_net.ipv4.ip, "head -c 300000000 /dev/zero > /root/big")
    image = client.servers.create_image(server).image
    # Deleted with its server mid-copy (the control API's force delete, as a crashed host's).
    httpx.delete(f"{node_sim.base_url}/_sim/servers/{server.id}").raise_for_status()
    nodes = node_sim.runtime.nodes
    assert nodes is not None
    target = nodes.image_path(image.id)
    for _ in range(600):  # the copy thread ends by itself and removes what it made
        if not any(t.name.startswith(target.name) for t in target.parent.glob("*")):
            break
        time.sleep(0.05)
    assert not [t.name for t in target.parent.glob(f"{target.name}*")]
    assert client.images.get_all(type=["snapshot"]) == []
