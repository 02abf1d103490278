"""Simulated nodes: one real OpenSSH ``sshd`` per running server, isolated from the host.

Each node is ``unshare --pid --fork --kill-child --mount --uts --ipc`` around a tiny shell script
(:func:`node_script`) that mounts a copy-on-write overlay of ``/`` and a restricted ``/proc``,
``/sys`` and ``/dev``, pivots into it, drops dangerous capabilities and execs ``sshd -D``. The sshd
is therefore pid 1 of its own pid namespace: killing it takes every login session with it, and the
mounts vanish with the mount namespace. No Python process per node: 100 nodes are 200 small
processes.

Files the host must read (logs) and the overlay layers live under a root directory outside the
overlaid paths (``/run`` by default), owned by the supervisor and removed when it shuts down.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)

NodeState = Literal["absent", "booting", "ready", "failed", "stopped", "gone"]
Desired = Literal["running", "stopped", "gone"]
BOOT_TIMEOUT = 15.0


@dataclass
class NodeSpec:
    server_id: int
    address: str
    hostname: str
    authorized_keys: list[str]
    host_keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)


@dataclass
class Node:
    spec: NodeSpec
    directory: Path
    state: NodeState = "absent"
    desired: Desired = "running"
    restart: bool = False
    process: subprocess.Popen[bytes] | None = None
    boot_seconds: float | None = None
    error: str | None = None


def _generate_host_key() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def _public_from_private(private: str) -> str | None:
    try:
        key = serialization.load_ssh_private_key(private.encode(), password=None)
    except (ValueError, TypeError):
        return None
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


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
# What a node's root keeps: Docker's default set without mknod (no device cgroup here) and without
# net_raw (nodes share the host's network namespace, a raw socket could sniff loopback traffic).
NODE_CAPABILITIES = (
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "net_bind_service", "sys_chroot", "audit_write", "setfcap",
)  # fmt: skip
# What a fresh Debian/Ubuntu server has at the top of its root filesystem; nodes see nothing else.
FHS_TOP_LEVEL = frozenset({
    "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "lost+found", "media",
    "mnt", "opt", "proc", "root", "run", "sbin", "snap", "srv", "sys", "tmp", "usr", "var",
})  # fmt: skip
_READ_ONLY_PROC = ("sys", "sysrq-trigger", "irq", "bus", "fs")
_MASKED_PROC_FILES = ("kcore", "keys", "timer_list", "sched_debug")
_MASKED_PROC_DIRS = ("acpi", "scsi")
_DEVICES = (
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
)  # fmt: skip


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


def node_script(directory: Path, hostname: str, command: list[str]) -> str:
    """The shell script a node's namespaces run: mount the node's world, then leave the host's.

    Root inside a node must not be able to change the host. Without a user namespace that takes
    several layers: a copy-on-write overlay of ``/``; ``pivot_root`` with the old root detached
    (a ``chroot`` is escapable by root, and the host's filesystems would be one ``chroot(".")``
    away); a fresh ``/proc`` with the host-wide knobs read-only (``/proc/sys``, ``sysrq-trigger``);
    a read-only fresh ``/sys`` (no cgroup files); a ``/dev`` with only the harmless devices and a
    private devpts (no disks, no host terminals); private IPC; and a capability bounding set
    without ``sys_admin``, ``net_admin``, ``sys_module``, ``sys_boot``, ``mknod``... so nothing
    of this can be undone from inside.
    """
    merged = directory / "merged"
    quoted = " ".join(shlex.quote(part) for part in command)
    caps = ",".join(f"+{cap}" for cap in NODE_CAPABILITIES)
    lines = [
        "set -e",
        f"M={shlex.quote(str(merged))}",
        f"mount -t overlay overlay -o lowerdir=/,upperdir={directory / 'upper'},workdir={directory / 'work'}"
        ' "$M"',
        'mount -t proc -o nosuid,nodev,noexec proc "$M/proc"',
        f"for p in {' '.join(_READ_ONLY_PROC)}; do",
        '  if [ -e "$M/proc/$p" ]; then',
        '    mount --bind "$M/proc/$p" "$M/proc/$p"; mount -o remount,bind,ro "$M/proc/$p"',
        "  fi",
        "done",
        f"for p in {' '.join(_MASKED_PROC_FILES)}; do",
        '  if [ -e "$M/proc/$p" ]; then mount --bind /dev/null "$M/proc/$p"; fi',
        "done",
        f"for p in {' '.join(_MASKED_PROC_DIRS)}; do",
        '  if [ -d "$M/proc/$p" ]; then mount -t tmpfs -o ro,size=4k tmpfs "$M/proc/$p"; fi',
        "done",
        'mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"',
        'mount -t tmpfs -o mode=0755,nosuid,size=64k tmpfs "$M/dev"',
        *(f'mknod -m 666 "$M/dev/{name}" c {major} {minor}' for name, major, minor in _DEVICES),
        'mkdir -m 0755 "$M/dev/pts" && mkdir -m 1777 "$M/dev/shm"',
        'mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$M/dev/pts"',
        'ln -s pts/ptmx "$M/dev/ptmx" && ln -s /proc/self/fd "$M/dev/fd"',
        'ln -s /proc/self/fd/0 "$M/dev/stdin" && ln -s /proc/self/fd/1 "$M/dev/stdout"',
        'ln -s /proc/self/fd/2 "$M/dev/stderr"',
        'mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$M/dev/shm"',
        # A fresh /run, as after boot; it also hides every node's layers from the node.
        'mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$M/run"',
        'mkdir -p "$M/run/sshd"',
        f"hostname {shlex.quote(hostname)}",
        'cd "$M"',
        "pivot_root . .",
        "umount -l .",
        "cd /",
        f"exec setpriv --inh-caps=-all --bounding-set=-all,{caps} -- {quoted}",
    ]
    return "\n".join(lines) + "\n"


def launcher(script: Path) -> list[str]:
    """``setpriv --pdeathsig KILL`` ties the node to the thread that started it, so that a
    simulator killed with SIGKILL takes its nodes along (``--kill-child`` does the rest)."""
    return [
        "setpriv", "--pdeathsig", "KILL",
        "unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts", "--ipc", "--propagation", "private",
        "/bin/sh", str(script),
    ]  # fmt: skip


def probe_port(address: str, port: int) -> str | None:
    """Nodes share the host's network: a host sshd on ``0.0.0.0:22`` takes port 22 on every
    loopback address too, and every node would fail to listen."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            return (
                f"cannot listen on {address}:{port} ({exc.strerror}); is a host sshd listening on "
                f"0.0.0.0:{port}? Bind it to specific addresses or choose another ssh_port"
            )
    return None


def probe_isolation(sshd_path: str) -> str | None:
    """Return why simulated nodes cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "simulated SSH nodes need root (mount/UTS/pid namespaces and overlay mounts)"
    if not os.access(sshd_path, os.X_OK):
        return f"sshd not found at {sshd_path} (install openssh-server)"
    for tool in ("unshare", "setpriv", "pivot_root"):
        if shutil.which(tool) is None:
            return f"{tool}(8) not found (install util-linux)"
    probe = default_root()
    try:
        for sub in ("upper", "work", "merged"):
            (probe / sub).mkdir()
        script = probe / "start.sh"  # the same steps a node takes, ending in true instead of sshd
        script.write_text(node_script(probe, "nodewright-probe", ["/bin/true"]))
        result = subprocess.run(launcher(script), capture_output=True, timeout=10, check=False)
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip()
            return f"cannot create isolated nodes (namespaces/overlayfs unavailable): {detail}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot create isolated nodes: {exc}"
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return None


_LIVE: weakref.WeakSet[NodeSupervisor] = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    """Safety net for interpreters that exit without ``SimServer.stop()``: nodes run in their own
    sessions and would otherwise outlive us."""
    for supervisor in list(_LIVE):
        supervisor.shutdown()


class NodeSupervisor:
    """Starts and stops node sshds off the request path, on its own worker threads.

    The API state only ever *asks* (boot/stop/destroy) and *reads* a node's state, never waits, so
    a slow sshd start cannot stall the HTTP server.
    """

    def __init__(
        self,
        sshd_path: str = "/usr/sbin/sshd",
        port: int = 22,
        root: Path | None = None,
        workers: int = 4,
    ) -> None:
        self.sshd_path = sshd_path
        self.port = port
        reap_stale_roots([root] if root is not None else None)
        # A configured root is a parent directory: shutdown removes only what it created there.
        self.root = default_root(root)
        self._nodes: dict[int, Node] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._dirty: set[int] = set()
        self._threads = [
            threading.Thread(target=self._work, name=f"sim-node-{i}", daemon=True) for i in range(workers)
        ]
        self._busy: set[int] = set()
        for thread in self._threads:
            thread.start()
        _LIVE.add(self)

    # -- requests from the API state (never block) ------------------------------------------
    def boot(self, spec: NodeSpec, restart: bool = False) -> None:
        """Make the node run; ``restart`` kills a running sshd first (reboot, reset)."""
        with self._lock:
            node = self._nodes.get(spec.server_id)
            if node is None or node.state == "gone":
                node = Node(spec, self.root / f"node-{spec.server_id}")
                self._nodes[spec.server_id] = node
            node.spec = spec
            node.desired = "running"
            node.restart = node.restart or restart
            if node.state != "ready" or restart:
                node.state = "booting"
        self._queue.put(spec.server_id)

    def stop(self, server_id: int) -> None:
        self._want(server_id, "stopped")

    def destroy(self, server_id: int) -> None:
        self._want(server_id, "gone")

    def _want(self, server_id: int, desired: Desired) -> None:
        with self._lock:
            node = self._nodes.get(server_id)
            if node is None:
                return
            node.desired = desired
        self._queue.put(server_id)

    def state(self, server_id: int) -> NodeState:
        """The node's actual state; ``absent`` for servers that never had a node."""
        with self._lock:
            node = self._nodes.get(server_id)
            return node.state if node else "absent"

    def info(self, server_id: int) -> dict[str, object]:
        with self._lock:
            node = self._nodes.get(server_id)
            if node is None:
                return {"state": "absent"}
            return {
                "state": node.state,
                "pid": node.process.pid if node.process and node.process.poll() is None else None,
                "boot_seconds": node.boot_seconds,
                "error": node.error,
                "directory": str(node.directory),
            }

    def pids(self) -> list[int]:
        with self._lock:
            return [n.process.pid for n in self._nodes.values() if n.process and n.process.poll() is None]

    # -- workers ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            server_id = self._queue.get()
            if server_id is None:
                return
            with self._lock:
                if server_id in self._busy:
                    # Another worker owns this node and loops until it matches the latest wish.
                    self._dirty.add(server_id)
                    continue
                self._busy.add(server_id)
            while True:
                try:
                    self._reconcile(server_id)
                except Exception as exc:  # a broken node must not take the supervisor down
                    log.exception("simulated node %s failed", server_id)
                    with self._lock:
                        node = self._nodes.get(server_id)
                        if node is not None:
                            # Settle in a final state either way, so no action waits forever.
                            node.state = "failed" if node.desired == "running" else node.desired
                            node.error = str(exc)
                with self._lock:
                    if server_id in self._dirty:
                        self._dirty.discard(server_id)
                        continue
                    self._busy.discard(server_id)
                    break

    def _reconcile(self, server_id: int) -> None:
        with self._lock:
            node = self._nodes.get(server_id)
            if node is None:
                return
            desired = node.desired
            alive = node.process is not None and node.process.poll() is None
        if desired == "running":
            with self._lock:
                restart, node.restart = node.restart, False
            if alive and restart:
                with self._lock:
                    process, node.process = node.process, None
                if process is not None:
                    self._terminate(process)
                alive = False
            if alive:
                with self._lock:
                    if node.state == "booting":
                        node.state = "ready"
                return
            self._boot(node)
        else:
            self._kill(node, desired)

    def _boot(self, node: Node) -> None:
        with self._lock:
            spec = node.spec
            node.state = "booting"
        started = time.monotonic()
        script = self._prepare(node.directory, spec)
        logfile = open(node.directory / "sshd.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            process = subprocess.Popen(
                launcher(script),
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            logfile.close()
        with self._lock:
            node.process = process
        ready = self._wait_listening(spec.address, process, node)
        with self._lock:
            if ready:
                node.state = "ready"
                node.boot_seconds = time.monotonic() - started
                node.error = None
                return
            node.state = "failed"
            error = self._tail_log(node.directory)
            node.error = error
            node.process = None
        log.warning("simulated node %s did not start: %s", spec.server_id, error)
        self._terminate(process)

    def _wait_listening(self, address: str, process: subprocess.Popen[bytes], node: Node) -> bool:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None or node.desired != "running":
                return process.poll() is None
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((address, self.port)) == 0:
                    return True
            time.sleep(0.01)
        return False

    @staticmethod
    def _tail_log(directory: Path) -> str:
        try:
            return (directory / "sshd.log").read_text(errors="replace")[-500:].strip() or "sshd exited"
        except OSError:
            return "sshd exited"

    def _prepare(self, directory: Path, spec: NodeSpec) -> Path:
        """Lay the node's own files into its upper layer, as cloud-init would have left them on a
        fresh server (sshd config and host keys in /etc/ssh, root's authorized_keys, /etc/hostname),
        and write the start script. The layer persists across power cycles until deletion."""
        upper = directory / "upper"
        fresh = not upper.exists()
        for sub in ("upper", "work", "merged"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        if fresh:
            # The lower layer is the host's root filesystem. A fresh server has none of the host's
            # own top-level directories (a checkout, data, credentials): whiteouts hide them, and
            # /tmp and /var/tmp start empty (opaque) rather than showing the host's temporary files.
            for entry in sorted(os.listdir("/")):
                if entry not in FHS_TOP_LEVEL:
                    os.mknod(upper / entry, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            _real_dir(upper, "tmp", 0o1777, opaque=True)
            _real_dir(upper, "var/tmp", 0o1777, opaque=True)
        etc_ssh = _real_dir(upper, "etc/ssh", 0o755)
        # Hide the homes, where host secrets live (SSH keys, tool credentials), as a fresh server
        # has its own empty ones.
        fresh_home = not os.path.lexists(upper / "root")
        root_home = _real_dir(upper, "root", 0o700, opaque=True)
        for name in (".bashrc", ".profile") if fresh_home else ():  # as a fresh server has them
            if (Path("/etc/skel") / name).is_file():
                _write(root_home / name, (Path("/etc/skel") / name).read_text(errors="replace"), 0o644)
        _real_dir(upper, "home", 0o755, opaque=True)
        ssh_dir = _real_dir(upper, "root/.ssh", 0o700)
        host_keys = dict(spec.host_keys)
        existing = sorted(etc_ssh.glob("ssh_host_*_key"))
        existing = [p for p in existing if not _is_whiteout(p)]
        if not host_keys and existing:
            key_paths = [f"/etc/ssh/{p.name}" for p in existing]
        else:
            if not host_keys:
                private, public = _generate_host_key()
                host_keys = {"ed25519": (private, public)}
            for old in existing:
                old.unlink()  # a symlink is removed, not followed
            key_paths = []
            for kind, (private_key, maybe_public) in host_keys.items():
                path = etc_ssh / f"ssh_host_{kind}_key"
                _write(path, private_key if private_key.endswith("\n") else private_key + "\n", 0o600)
                pub = maybe_public or _public_from_private(private_key)
                if pub:
                    _write(etc_ssh / f"ssh_host_{kind}_key.pub", pub.strip() + "\n", 0o644)
                key_paths.append(f"/etc/ssh/{path.name}")
        # Hide the host's own host keys from the node: overlay whiteouts are 0/0 character devices.
        for host_key in Path("/etc/ssh").glob("ssh_host_*"):
            shadow = etc_ssh / host_key.name
            if not os.path.lexists(shadow):
                os.mknod(shadow, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        _write(ssh_dir / "authorized_keys", "".join(k.strip() + "\n" for k in spec.authorized_keys), 0o600)
        _write(_real_dir(upper, "etc", 0o755) / "hostname", spec.hostname + "\n", 0o644)
        config = [
            f"ListenAddress {spec.address}:{self.port}",
            *(f"HostKey {p}" for p in key_paths),
            "PidFile none",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "UseDNS no",
            "PrintMotd no",
            "MaxStartups 50:30:100",
            "AcceptEnv LANG LC_*",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
        ]
        _write(etc_ssh / "sshd_config", "\n".join(config) + "\n", 0o644)
        script = directory / "start.sh"
        command = [self.sshd_path, "-D", "-e", "-f", "/etc/ssh/sshd_config"]
        script.write_text(node_script(directory, spec.hostname, command))
        return script

    def _kill(self, node: Node, final: Desired) -> None:
        with self._lock:
            process = node.process
            node.process = None
        if process is not None:
            self._terminate(process)
        if final == "gone":
            shutil.rmtree(node.directory, ignore_errors=True)
        with self._lock:
            node.state = "gone" if final == "gone" else "stopped"

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> None:
        """Kill the node's pid-namespace init (its sshd) first: the kernel then kills every
        process of the node, the init reaps them, and unshare reaps the init and exits, so no
        orphan or zombie is left for the host to collect. The group kill is the fallback."""
        try:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(child), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("simulated node process %s did not die", process.pid)

    def shutdown(self) -> None:
        """Kill every node and remove the root directory; safe to call more than once."""
        _LIVE.discard(self)
        with self._lock:
            for node in self._nodes.values():
                node.desired = "gone"  # in-flight boots stop waiting; queued work turns into kills
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=BOOT_TIMEOUT + 5)
        with self._lock:
            nodes = list(self._nodes.values())
            processes = [n.process for n in nodes if n.process is not None]
            for node in nodes:
                node.process = None
                node.state = "gone"
        for process in processes:
            self._terminate(process)
        shutil.rmtree(self.root, ignore_errors=True)
