"""What the server actions do to a node's disk: rebuild resets it, ``create_image`` copies it into
an image, and a server created from (or rebuilt to) that image starts from the copy.

A node's disk is its two copy-on-write layers (``upper`` and ``upper-usr``, see :mod:`.layers`).
An image keeps them with the node's ids moved back to the bottom of the id space (root is 0 in the
image), so that any node can take the copy into its own id range (:func:`.layers.shift_ids`).
Copies never follow a link the node planted: ``cp -a`` copies links, device nodes (overlayfs
whiteouts) and extended attributes (opaque directories) as they are.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from nodewright.sim.nodes.entry import ID_COUNT
from nodewright.sim.nodes.layers import chown, remove_tree, walk

DISK_LAYERS = ("upper", "upper-usr")
WORK_LAYERS = ("work", "work-usr")
# cloud-init's record of the instance it last ran for: a disk copied into a new server (or a
# snapshot a server is rebuilt to) must run the per-instance modules again, as cloud-init does
# when the datasource names another instance id.
INSTANCE_MARKERS = ("var/lib/cloud/instance/boot-finished",)


class DiskError(RuntimeError):
    pass


def wipe(directory: Path) -> None:
    """Remove a node's disk (its layers and their work directories); the node must be down."""
    for name in (*DISK_LAYERS, *WORK_LAYERS):
        remove_tree(directory / name)


def _copy(source: Path, target: Path) -> None:
    result = subprocess.run(
        ["cp", "-a", "--reflink=auto", "--no-target-directory", str(source), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    # The node is down or frozen (see freeze.py): any error means a disk cut short, never kept.
    if result.returncode != 0:
        raise DiskError(result.stderr.strip()[-300:] or f"cp exited with {result.returncode}")


def _unshift(tree: Path, base: int) -> None:
    for path, info in walk(tree):
        uid = info.st_uid - base if base <= info.st_uid < base + ID_COUNT else info.st_uid
        gid = info.st_gid - base if base <= info.st_gid < base + ID_COUNT else info.st_gid
        if (uid, gid) != (info.st_uid, info.st_gid):
            chown(path, info, uid, gid)


def tree_bytes(tree: Path) -> int:
    return sum(info.st_blocks * 512 for _path, info in walk(tree) if stat.S_ISREG(info.st_mode))


def capture(directory: Path, target: Path, id_base: int | None) -> int:
    """Copy the disk of the node in ``directory`` into the image directory ``target`` (made
    here; it must not exist). The node must be down or frozen. Returns the image's size in
    bytes."""
    staging = target.with_name(target.name + ".partial")
    remove_tree(staging)
    staging.mkdir(parents=True, mode=0o700)
    try:
        for layer in DISK_LAYERS:
            source = directory / layer
            if source.is_dir() and not source.is_symlink():
                _copy(source, staging / layer)
                if id_base is not None:
                    _unshift(staging / layer, id_base)
        size = tree_bytes(staging)
        staging.rename(target)
    except BaseException:
        remove_tree(staging)
        raise
    return size


def restore(image: Path, directory: Path) -> None:
    """Lay the image's disk into a node directory that has none (first boot of a new server, or
    after :func:`wipe`), and make cloud-init treat the boot as a new instance's."""
    directory.mkdir(parents=True, exist_ok=True)
    for layer in DISK_LAYERS:
        if (image / layer).is_dir():
            _copy(image / layer, directory / layer)
    for marker in INSTANCE_MARKERS:
        path = _inside(directory / "upper", marker)
        if path is not None:
            path.unlink()  # a link is removed, never followed
    # cloud-init's ssh_deletekeys: a new instance makes host keys of its own.
    etc_ssh = _inside(directory / "upper", "etc/ssh", directory=True)
    for entry in etc_ssh.iterdir() if etc_ssh is not None else ():
        if entry.name.startswith("ssh_host_") and not stat.S_ISDIR(entry.lstat().st_mode):
            entry.unlink()


def _inside(base: Path, relative: str, directory: bool = False) -> Path | None:
    """``base/relative`` if every directory on the way is a real directory (the node may have
    planted a link anywhere on it) and the last part exists and is (``directory``) or is not a
    real directory."""
    path = base
    parts = Path(relative).parts
    for index, part in enumerate(parts):
        path = path / part
        try:
            info = path.lstat()
        except OSError:
            return None
        last = index == len(parts) - 1
        if stat.S_ISDIR(info.st_mode) != (directory or not last):
            return None
    return path
