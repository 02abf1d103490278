"""A node's disk: a copy-on-write overlay of the host's ``/`` whose upper layer is the node's own.

The upper layers and the logs live under a root directory outside every overlaid path (``/run``
by default), named after the simulator that owns it, so the next simulator can remove what a
killed one left behind.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import shutil
import signal
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def _real_dir(base: Path, relative: str, mode: int, opaque: bool = False) -> Path:
    """``base/relative`` as real directories, replacing whatever else the node left on the way.

    The upper layer is written by the node's root: a symlink there (say ``/root/.ssh`` pointing at
    a host directory) must never make the simulator, which runs as the host's root, write through
    it. The node is not running while this runs, so checking with ``lstat`` is not racy.
    ``opaque`` hides the host's directory below the one created here (overlayfs opaque dir).
    """
    path = base
    created = False
    for part in Path(relative).parts:
        path = path / part
        try:
            info = path.lstat()
        except FileNotFoundError:
            path.mkdir()
            created = True
            continue
        created = False
        if not stat.S_ISDIR(info.st_mode):
            path.unlink()  # a symlink, a file or a whiteout
            path.mkdir()
            created = True
    if created and opaque:
        os.setxattr(path, "trusted.overlay.opaque", b"y", follow_symlinks=False)
    os.chmod(path, mode, follow_symlinks=False)
    return path


def _write(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` by a new regular file; never follows or reuses what was there."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(path)
        else:
            path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, mode, follow_symlinks=False)


def _is_whiteout(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


ROOT_PREFIX = "nodewright-sim-"
ROOT_BASES = ("/run", "/dev/shm")  # noqa: S108 - outside every overlaid path, never seen by nodes
# What a fresh Debian/Ubuntu server has at the top of its root filesystem; nodes see nothing else.
FHS_TOP_LEVEL = frozenset({
    "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "lost+found", "media",
    "mnt", "opt", "proc", "root", "run", "sbin", "snap", "srv", "sys", "tmp", "usr", "var",
})  # fmt: skip


# Top-level directories a node never sees the host's copy of: fresh (opaque or tmpfs) in every node.
HIDDEN_TOP_LEVEL = frozenset({"root", "home", "tmp", "run", "dev", "proc", "sys"})


def readable_by_nodes(path: Path) -> bool:
    """Whether root in a node can read the host's ``path``: the lower layer of every node is the
    host's root filesystem (not the filesystems mounted below it), minus what a fresh server
    lacks (non-FHS top-level directories, homes, temporary directories)."""
    resolved = path.resolve()
    parts = resolved.parts[1:]
    if not parts or parts[0] not in FHS_TOP_LEVEL or parts[0] in HIDDEN_TOP_LEVEL:
        return False
    if parts[:2] == ("var", "tmp"):
        return False
    ancestor = resolved
    while ancestor != ancestor.parent:
        if os.path.ismount(ancestor):
            return False  # another filesystem: overlayfs does not show it
        ancestor = ancestor.parent
    return True


def _start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot: with the pid it names one process."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_line.rsplit(")", 1)[1].split()[19]


def _owner_tag() -> str:
    return f"{os.getpid()}.{_start_ticks(os.getpid())}"


def default_root(base: Path | None = None) -> Path:
    """A private directory for node layers and logs, outside every overlaid path.

    Its name carries the owning process (pid and start time), so that a later simulator can tell
    the leftovers of a killed one from the directory of one that still runs.
    """
    bases = [base] if base is not None else [Path(b) for b in ROOT_BASES if os.access(b, os.W_OK)]
    prefix = f"{ROOT_PREFIX}{_owner_tag()}-"
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=bases[0] if bases else None))


def reap_stale_roots(bases: list[Path] | None = None) -> list[Path]:
    """Remove what simulators killed without a chance to clean up (SIGKILL, OOM) left behind:
    node processes that still run (nodes started before pdeathsig was set) and node directories.
    Only directories whose owner process is gone are touched. Returns the directories removed."""
    candidates = bases if bases is not None else [Path(b) for b in (*ROOT_BASES, tempfile.gettempdir())]
    removed: list[Path] = []
    for base in candidates:
        try:
            entries = list(base.iterdir())
        except OSError:
            continue
        for entry in entries:
            owner = entry.name.removeprefix(ROOT_PREFIX).split("-", 1)[0]
            if not entry.name.startswith(ROOT_PREFIX) or "." not in owner or not entry.is_dir():
                continue
            pid, _, ticks = owner.partition(".")
            if not pid.isdigit() or _start_ticks(int(pid)) == ticks:
                continue  # malformed, or its simulator is alive
            for stale in _node_launchers(entry):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(stale, signal.SIGKILL)
            shutil.rmtree(entry, ignore_errors=True)
            log.warning("removed the leftovers of a killed simulator: %s", entry)
            removed.append(entry)
    return removed


def _node_launchers(root: Path) -> list[int]:
    """Node launchers (``unshare ... /bin/sh ROOT/node-N/start.sh``) still running from ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        script = Path(argv[-2]) if len(argv) > 1 and argv[-1] == "" else None
        if script is not None and script.name == "start.sh" and script.parent.parent == root:
            found.append(int(entry.name))
    return found


def prepare_upper(directory: Path) -> tuple[Path, bool]:
    """Create the node's layers; a fresh upper layer hides what a fresh server would not have.

    The lower layer is the host's root filesystem. A fresh server has none of the host's own
    top-level directories (a checkout, data, credentials): whiteouts hide them, and /tmp and
    /var/tmp start empty (opaque) rather than showing the host's temporary files. The homes, where
    host secrets live (SSH keys, tool credentials), are hidden too, as a fresh server has its own
    empty ones. The layer persists across power cycles until deletion. Returns the upper layer
    and whether this is the node's first boot.
    """
    upper = directory / "upper"
    fresh = not upper.exists()
    for sub in ("upper", "work", "merged"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    if fresh:
        for entry in sorted(os.listdir("/")):
            if entry not in FHS_TOP_LEVEL:
                os.mknod(upper / entry, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        _real_dir(upper, "tmp", 0o1777, opaque=True)
        _real_dir(upper, "var/tmp", 0o1777, opaque=True)
        _lock_passwords(upper)
    fresh_home = not os.path.lexists(upper / "root")
    root_home = _real_dir(upper, "root", 0o700, opaque=True)
    for name in (".bashrc", ".profile") if fresh_home else ():  # as a fresh server has them
        if (Path("/etc/skel") / name).is_file():
            _write(root_home / name, (Path("/etc/skel") / name).read_text(errors="replace"), 0o644)
    _real_dir(upper, "home", 0o755, opaque=True)
    return upper, fresh


def _lock_passwords(upper: Path) -> None:
    """The node's /etc/shadow starts from the host's with every password hash replaced by ``*``:
    no host password works in (or can be read from) a node, as no password works on a fresh image."""
    try:
        lines = Path("/etc/shadow").read_text().splitlines()
    except OSError:
        return
    locked = []
    for line in lines:
        fields = line.split(":")
        if len(fields) > 1:
            fields[1] = "*"
        locked.append(":".join(fields))
    _write(_real_dir(upper, "etc", 0o755) / "shadow", "\n".join(locked) + "\n", 0o640)
    with contextlib.suppress(KeyError, OSError):
        os.chown(upper / "etc" / "shadow", 0, grp.getgrnam("shadow").gr_gid)
