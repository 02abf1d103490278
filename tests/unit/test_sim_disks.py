"""A node's disk copied into an image and back: ids move to the image's bottom and into the next
node's range, and links the node planted never make the simulator touch the host's files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from nodewright.sim.nodes.disks import capture, restore, wipe
from nodewright.sim.nodes.entry import ID_COUNT
from nodewright.sim.nodes.freeze import _members, _stopped, frozen, namespace_of
from nodewright.sim.nodes.layers import _node_launchers, remove_tree, shift_ids, walk
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


def _deep(base: Path, depth: int) -> Path:
    """A tree deeper than Python's recursion limit, as root in a node can make one."""
    fd = os.open(base, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as leaf:
            leaf.write("deep\n")
    finally:
        os.close(fd)
    return base


def test_deep_trees_are_walked_copied_shifted_and_removed(tmp_path: Path) -> None:
    require_root()
    node, image = tmp_path / "node-1", tmp_path / "image"
    try:
        (node / "upper").mkdir(parents=True)
        _deep(node / "upper", 1500)
        assert sum(1 for _ in walk(node / "upper")) == 1502
        shift_ids(node / "upper", BASE)  # a boot of such a node
        assert capture(node, image, BASE) > 0
        assert max(len(p) for p, _ in walk(image)) > 1500 * 2
        remove_tree(node)
        assert not node.exists()
    finally:  # pytest's own clean-up of old temporary directories would recurse into them
        remove_tree(node)
        remove_tree(image)


def test_ids_move_without_losing_setuid_and_setgid(tmp_path: Path) -> None:
    require_root()
    node = tmp_path / "node-1"
    (node / "upper" / "usr").mkdir(parents=True)
    tool = node / "upper" / "usr" / "tool"
    tool.write_text("#!/bin/sh\n")
    os.chown(tool, BASE, BASE + 42)
    os.chmod(tool, 0o6755)
    image = tmp_path / "image"
    capture(node, image, BASE)
    copied = (image / "upper" / "usr" / "tool").stat()
    assert (copied.st_uid, copied.st_gid, copied.st_mode & 0o7777) == (0, 42, 0o6755)
    clone = tmp_path / "node-2"
    restore(image, clone)
    shift_ids(clone / "upper", 2 * BASE)
    moved = (clone / "upper" / "usr" / "tool").stat()
    assert (moved.st_uid, moved.st_gid, moved.st_mode & 0o7777) == (2 * BASE, 2 * BASE + 42, 0o6755)


def test_frozen_holds_every_process_of_a_namespace_still(tmp_path: Path) -> None:
    require_root()
    # A "node" whose init keeps forking: frozen, none of its processes runs, and none is added.
    launcher = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", "while :; do sleep 0.01 & wait; done"]
    )
    try:
        for _ in range(200):
            if namespace_of(launcher.pid):
                break
            time.sleep(0.01)
        namespace = namespace_of(launcher.pid)
        assert namespace is not None
        with frozen(launcher.pid):
            members = _members(namespace)
            assert members and all(_stopped(pid) for pid in members)
            time.sleep(0.1)
            assert _members(namespace) == members
        time.sleep(0.1)
        assert not all(_stopped(pid) for pid in _members(namespace))
    finally:
        launcher.kill()
        launcher.wait()


def test_stale_rescue_launchers_are_found(tmp_path: Path) -> None:
    script = tmp_path / "node-7" / "rescue" / "start.json"
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(script)])
    try:
        for _ in range(100):
            if process.pid in _node_launchers(tmp_path):
                break
            time.sleep(0.02)
        assert process.pid in _node_launchers(tmp_path)
    finally:
        process.kill()
        process.wait()
