"""A node's disk copied into an image and back: ids move to the image's bottom and into the next
node's range, and links the node planted never make the simulator touch the host's files."""

from __future__ import annotations

import os
from pathlib import Path

from nodewright.sim.nodes.disks import capture, restore, wipe
from nodewright.sim.nodes.entry import ID_COUNT
from tests.support.system import require_root

BASE = 7 * ID_COUNT


def _node_disk(directory: Path) -> Path:
    upper = directory / "upper"
    (upper / "root").mkdir(parents=True)
    (upper / "root" / "data").write_text("baked\n")
    (directory / "upper-usr" / "local").mkdir(parents=True)
    (upper / "var" / "lib" / "cloud" / "instance").mkdir(parents=True)
    (upper / "var" / "lib" / "cloud" / "instance" / "boot-finished").write_text("done\n")
    (upper / "etc" / "ssh").mkdir(parents=True)
    (upper / "etc" / "ssh" / "ssh_host_ed25519_key").write_text("secret\n")
    (upper / "etc" / "ssh" / "sshd_config").write_text("Port 22\n")
    return upper


def test_capture_moves_ids_to_the_image_bottom_and_restore_starts_a_new_instance(tmp_path: Path) -> None:
    require_root()
    node = tmp_path / "node-1"
    upper = _node_disk(node)
    for path in (upper / "root", upper / "root" / "data"):
        os.chown(path, BASE + 1000, BASE + 1000)
    image = tmp_path / "images" / "image-1"
    size = capture(node, image, BASE)
    assert size > 0 and not image.with_name("image-1.partial").exists()
    assert (image / "upper" / "root" / "data").stat().st_uid == 1000
    assert (image / "upper-usr" / "local").is_dir()

    clone = tmp_path / "node-2"
    restore(image, clone)
    assert (clone / "upper" / "root" / "data").read_text() == "baked\n"
    # cloud-init runs again for the new instance and makes host keys of its own.
    assert not (clone / "upper" / "var" / "lib" / "cloud" / "instance" / "boot-finished").exists()
    assert not (clone / "upper" / "etc" / "ssh" / "ssh_host_ed25519_key").exists()
    assert (clone / "upper" / "etc" / "ssh" / "sshd_config").exists()
    # The source's own disk is untouched.
    assert (upper / "etc" / "ssh" / "ssh_host_ed25519_key").exists()

    wipe(clone)
    assert not (clone / "upper").exists() and not (clone / "upper-usr").exists()


def test_restore_never_follows_links_the_node_planted(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "lib" / "cloud" / "instance").mkdir(parents=True)
    (host / "lib" / "cloud" / "instance" / "boot-finished").write_text("host's\n")
    (host / "ssh").mkdir()
    (host / "ssh" / "ssh_host_rsa_key").write_text("host's key\n")
    image = tmp_path / "image"
    (image / "upper" / "etc").mkdir(parents=True)
    # The node replaced /var and /etc/ssh with links to (what is, on the host) the host's files.
    (image / "upper" / "var").symlink_to(host)
    (image / "upper" / "etc" / "ssh").symlink_to(host / "ssh")
    restore(image, tmp_path / "node")
    assert (host / "lib" / "cloud" / "instance" / "boot-finished").read_text() == "host's\n"
    assert (host / "ssh" / "ssh_host_rsa_key").read_text() == "host's key\n"
    assert (tmp_path / "node" / "upper" / "var").is_symlink()  # copied as a link, not followed
