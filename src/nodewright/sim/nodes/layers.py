"""A node's disk: its own copy-on-write layer over an image base built from an allowlist.

The image base (see :func:`build_image`) holds what a fresh server's root has and nothing of the
host's own: a filtered copy of ``/etc``, an empty ``/var`` but for the package databases, empty
homes, ``/opt`` and ``/srv``; ``/usr`` is the host's, read-only beneath the node's layer. Nodes see
both through id-mapped mounts into their own user namespace (``entry.py``). The layers and the logs
live under a root directory of the simulator's own (``/run`` by default), named after the
simulator that owns it, so the next simulator can remove what a killed one left behind.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nodewright.sim.nodes.entry import ID_COUNT

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


def _is_regular(path: Path) -> bool:
    """Whether ``path`` itself is a regular file (a link the node planted is never followed: the
    simulator, as the host's root, would learn for the node whether its target exists)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _is_whiteout(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


ROOT_PREFIX = "nodewright-sim-"
ROOT_BASES = ("/run", "/dev/shm")  # noqa: S108 - never part of a node's disk
# What a fresh Debian/Ubuntu server has at the top of its root filesystem.
FHS_TOP_LEVEL = frozenset({
    "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "lost+found", "media",
    "mnt", "opt", "proc", "root", "run", "sbin", "snap", "srv", "sys", "tmp", "usr", "var",
})  # fmt: skip
# The node's disk is built from an allowlist, not from the host's root minus a denylist: the
# host's /usr (read-only beneath the node's own layer), a filtered copy of /etc, and of /var only
# what the package tools need. Everything else starts empty, as on a fresh server.
MERGED_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
EMPTY_DIRS = {
    "boot": 0o755, "dev": 0o755, "home": 0o755, "media": 0o755, "mnt": 0o755, "opt": 0o755,
    "proc": 0o555, "root": 0o700, "run": 0o755, "srv": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755,
    "var": 0o755, "var/backups": 0o755, "var/cache": 0o755, "var/cache/apt/archives/partial": 0o700,
    "var/lib": 0o755, "var/lib/apt/lists/partial": 0o700, "var/lib/misc": 0o755, "var/local": 0o2775,
    "var/log": 0o755, "var/log/apt": 0o755, "var/mail": 0o2775, "var/opt": 0o755, "var/spool": 0o755,
    "var/tmp": 0o1777,
}  # fmt: skip
VAR_LINKS = {"var/run": "/run", "var/lock": "/run/lock"}
# Copied from the host where readable by everyone (what a package manager reads: its database and
# its configuration answers); a file only root or a service may read is a secret and never copied.
COPIED_TREES = ("etc", "var/lib/dpkg", "var/cache/debconf")
# Readable by everyone on the host, but not the node's to see: the host's services and their
# configuration (PostgreSQL's pg_hba.conf and friends), credentials tools keep in /etc, the host's
# identity. Paths relative to /etc; a directory excludes everything below it.
ETC_EXCLUDED = frozenset({
    "postgresql", "postgresql-common", "mysql", "redis", "rabbitmq", "mosquitto", "nats-server.conf",
    "ssl/private", "npmrc", "pip.conf", "gitconfig", "netrc", "machine-id", "hostname", "hosts",
    "subuid", "subgid", "shadow-", "gshadow-", "passwd-", "group-", "security/opasswd", "nodewright",
    "sudoers", "sudoers.d", "environment",
})  # fmt: skip
# Written as a fresh Debian/Ubuntu image has them, never copied: the host's sudoers is root's only
# (it may name the host's users and commands), /etc/environment may carry the host's proxies.
STOCK_ETC = {
    "sudoers": (
        "Defaults\tenv_reset\nDefaults\tmail_badpass\n"
        'Defaults\tsecure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
        "Defaults\tuse_pty\n\nroot\tALL=(ALL:ALL) ALL\n%sudo\tALL=(ALL:ALL) ALL\n\n"
        "@includedir /etc/sudoers.d\n",
        0o440,
    ),
    "sudoers.d/README": (
        "# Files in this directory are read by sudo (see @includedir in /etc/sudoers).\n",
        0o440,
    ),
    "environment": ('PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n', 0o644),
}
LOCKED_PASSWORD_FILES = ("shadow", "gshadow")


def readable_by_nodes(path: Path) -> bool:
    """Whether root in a node could read the host's ``path``: the host's ``/usr`` (where it is not
    another filesystem mounted below it) and what the image base copies (``/etc``, the package
    databases in ``/var``). Conservative for the copies: any path under them counts."""
    resolved = path.resolve()
    if any(resolved.is_relative_to(Path("/", tree)) for tree in COPIED_TREES):
        return True
    if not resolved.is_relative_to("/usr"):
        return False
    ancestor = resolved
    while ancestor != Path("/usr"):
        if os.path.ismount(ancestor):
            return False  # another filesystem: the node's /usr overlay does not show it
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
            remove_tree(entry)
            log.warning("removed the leftovers of a killed simulator: %s", entry)
            removed.append(entry)
    return removed


def _node_launchers(root: Path) -> list[int]:
    """Node launchers (``unshare ... python entry.py ROOT/node-N/start.json``) still running from ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        script = Path(argv[-2]) if len(argv) > 1 and argv[-1] == "" else None
        # ROOT/node-N/start.json, or ROOT/node-N/rescue/start.json for a node in its rescue system
        parents = (script.parent.parent, script.parent.parent.parent) if script is not None else ()
        if script is not None and script.name == "start.json" and root in parents:
            found.append(int(entry.name))
    return found


def _excluded(relative: str) -> bool:
    parts = Path(relative).parts
    if relative.startswith("etc/") or relative == "etc":
        inner = Path(*parts[1:]) if len(parts) > 1 else Path()
        if any(inner == Path(x) or inner.is_relative_to(x) for x in ETC_EXCLUDED):
            return True
        if parts[1:2] == ("ssh",) and len(parts) > 2 and parts[2].startswith("ssh_host_"):
            return True  # the host's SSH host keys, private and public: each node has its own
    return False


def _copy_tree(source: Path, target: Path, relative: str) -> None:
    """Copy what everyone may read of ``source`` (not following symlinks) into the image base."""
    for directory, subdirs, files in os.walk(source):
        here = Path(directory)
        rel_dir = Path(relative) / here.relative_to(source)
        kept = []
        for name in subdirs:
            info = (here / name).lstat()
            rel = str(rel_dir / name)
            if _excluded(rel):
                continue
            if stat.S_ISLNK(info.st_mode):
                files.append(name)  # copied as a link below
                continue
            if info.st_mode & 0o005 != 0o005:
                continue  # a directory only root or a service may enter
            (target / rel).mkdir(exist_ok=True)
            os.chmod(target / rel, stat.S_IMODE(info.st_mode))
            os.chown(target / rel, info.st_uid, info.st_gid)
            kept.append(name)
        subdirs[:] = kept
        for name in files:
            path = here / name
            rel = str(rel_dir / name)
            if _excluded(rel):
                continue
            info = path.lstat()
            destination = target / rel
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(path), destination)
            elif stat.S_ISREG(info.st_mode):
                if info.st_mode & 0o004 == 0:
                    continue  # readable by root or a service only: a secret
                shutil.copyfile(path, destination, follow_symlinks=False)
                os.chmod(destination, stat.S_IMODE(info.st_mode))
            else:
                continue  # sockets, fifos, devices: nothing a fresh image has in these trees
            os.chown(destination, info.st_uid, info.st_gid, follow_symlinks=False)


def build_image(target: Path, minimal: bool = False) -> Path:
    """The image base every node's disk is an overlay of, built from the allowlist above.

    Owned by the host's ids (each node sees it through an id-mapped mount into its own range) and
    kept in a root-only directory. ``minimal`` builds the skeleton only (the isolation probe).
    """
    target.mkdir(mode=0o755)
    for name in MERGED_USR_LINKS:
        host = Path("/", name)
        if host.is_symlink():
            os.symlink(os.readlink(host), target / name)
    for relative, mode in EMPTY_DIRS.items():
        (target / relative).mkdir(parents=True, exist_ok=True)
        os.chmod(target / relative, mode)
    for link, destination in VAR_LINKS.items():
        os.symlink(destination, target / link)
    if minimal:
        return target
    for tree in COPIED_TREES:
        if Path("/", tree).is_dir():
            (target / tree).mkdir(parents=True, exist_ok=True)
            _copy_tree(Path("/", tree), target, tree)
    _lock_passwords(target)
    for relative, (text, mode) in STOCK_ETC.items():
        _real_dir(target / "etc", str(Path(relative).parent), 0o750 if "/" in relative else 0o755)
        _write(target / "etc" / relative, text, mode)
    for name in (".bashrc", ".profile"):  # as a fresh server's root has them
        if (target / "etc/skel" / name).is_file():
            shutil.copyfile(target / "etc/skel" / name, target / "root" / name)
    with contextlib.suppress(KeyError):
        os.chown(target / "var/mail", 0, grp.getgrnam("mail").gr_gid)
    with contextlib.suppress(KeyError):
        os.chown(target / "var/local", 0, grp.getgrnam("staff").gr_gid)
    return target


def host_is_merged_usr() -> bool:
    """Nodes share the host's /usr only: its /bin, /sbin and /lib must be links into it."""
    return all(Path("/", name).is_symlink() for name in ("bin", "sbin", "lib"))


def walk(tree: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every path under ``tree`` (``tree`` first) with its ``lstat``, never following a link, and
    without recursion: a node may nest directories deeper than Python's recursion limit."""
    try:
        yield str(tree), os.lstat(tree)
    except FileNotFoundError:
        return
    pending = [str(tree)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                yield entry.path, info
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)


def chown(path: str, info: os.stat_result, uid: int, gid: int) -> None:
    """``lchown`` that keeps setuid and setgid bits (the kernel clears them on a chown, even
    root's): sudo or passwd in a node's layer must still work after its ids moved."""
    os.chown(path, uid, gid, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode) and info.st_mode & (stat.S_ISUID | stat.S_ISGID):
        os.chmod(path, stat.S_IMODE(info.st_mode))


def remove_tree(path: Path) -> None:
    """Remove a directory tree a node may have written: ``rm`` never follows links, stays on one
    file system and, unlike ``shutil.rmtree`` here, has no depth limit."""
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], capture_output=True, check=False)


def shift_ids(tree: Path, base: int) -> None:
    """Give what the simulator wrote into a node's layer to the node's root: host ids below
    :data:`ID_COUNT` move into the node's range (what the node made is there already). Runs while
    the node is down, never following links."""
    for path, info in walk(tree):
        uid = info.st_uid + base if info.st_uid < ID_COUNT else info.st_uid
        gid = info.st_gid + base if info.st_gid < ID_COUNT else info.st_gid
        if (uid, gid) != (info.st_uid, info.st_gid):
            chown(path, info, uid, gid)


LAYER_DIRS = ("upper", "work", "upper-usr", "work-usr", "lower", "lower-usr", "merged")


def prepare_upper(directory: Path) -> tuple[Path, bool]:
    """Create the node's layer directories; returns its root layer and whether this is its first
    boot. The layers persist across power cycles until deletion; ``/usr`` has a layer of its own
    (``upper-usr``), as it is an overlay of its own on the host's ``/usr``."""
    fresh = not (directory / "upper").exists()
    for sub in LAYER_DIRS:
        (directory / sub).mkdir(parents=True, exist_ok=True)
    return directory / "upper", fresh


def layer_of(upper: Path, relative: str) -> tuple[Path, str]:
    """The layer that holds the node's ``/relative`` and the path within it."""
    parts = Path(relative).parts
    if parts[:1] == ("usr",):
        return upper.parent / "upper-usr", str(Path(*parts[1:])) if len(parts) > 1 else "."
    return upper, relative


def _lock_passwords(image: Path) -> None:
    """The image's /etc/shadow and /etc/gshadow come from the host's with every password hash
    replaced by ``*``: no host password works in (or can be read from) a node."""
    for name in LOCKED_PASSWORD_FILES:
        try:
            source = Path("/etc", name)
            info = source.stat()
            lines = source.read_text().splitlines()
        except OSError:
            continue
        locked = []
        for line in lines:
            fields = line.split(":")
            if len(fields) > 1:
                fields[1] = "*" if name == "shadow" else "!"
            locked.append(":".join(fields))
        _write(image / "etc" / name, "\n".join(locked) + "\n", 0o640)
        os.chown(image / "etc" / name, 0, info.st_gid)
