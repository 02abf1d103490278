"""Simulated nodes: one real OpenSSH ``sshd`` per running server, isolated from the host.

Each node is ``unshare --pid --fork --kill-child --mount --uts`` around a tiny shell script that lays
copy-on-write overlays over the writable system paths, sets the hostname and execs ``sshd -D``. The
sshd is therefore pid 1 of its own pid namespace: killing it takes every login session with it, and
the overlays vanish with the mount namespace. No Python process per node: 100 nodes are 200 small
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


def _mkdirs(base: Path, relative: str, mode: int) -> Path:
    path = base / relative
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def _is_whiteout(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def default_root() -> Path:
    """A directory outside every overlaid path, so the host sees what nodes write there."""
    for base in ("/run", "/dev/shm"):  # noqa: S108
        if os.access(base, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="nodewright-sim-", dir=base))
    return Path(tempfile.mkdtemp(prefix="nodewright-sim-"))


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
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare(1) not found (install util-linux)"
    probe = default_root()
    try:
        for sub in ("upper", "work", "merged"):
            (probe / sub).mkdir()
        merged = probe / "merged"
        script = (  # the same steps a node takes, ending in a chroot instead of sshd
            f"mount -t overlay overlay -o lowerdir=/,upperdir={probe}/upper,workdir={probe}/work {merged}"
            f" && mount -t proc proc {merged}/proc && mount --rbind /dev {merged}/dev"
            f" && mount -t tmpfs tmpfs {merged}/run && hostname nodewright-probe && chroot {merged} /bin/true"
        )
        result = subprocess.run(
            [unshare, "--pid", "--fork", "--kill-child", "--mount", "--uts", "--propagation", "private",
             "/bin/sh", "-c", script],
            capture_output=True,
            timeout=10,
            check=False,
        )  # fmt: skip
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
        self.root = root if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
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
                ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts",
                 "--propagation", "private", "/bin/sh", str(script)],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                start_new_session=True,
                close_fds=True,
            )  # fmt: skip
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
        for sub in ("upper", "work", "merged"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        etc_ssh = _mkdirs(upper, "etc/ssh", 0o755)
        ssh_dir = _mkdirs(upper, "root/.ssh", 0o700)
        (upper / "root").chmod(0o700)
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
                old.unlink()
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
            if not shadow.exists() and not _is_whiteout(shadow):
                os.mknod(shadow, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        _write(ssh_dir / "authorized_keys", "".join(k.strip() + "\n" for k in spec.authorized_keys), 0o600)
        _write(upper / "etc" / "hostname", spec.hostname + "\n", 0o644)
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
        merged = directory / "merged"
        hostname = spec.hostname.replace("'", "")
        script = directory / "start.sh"
        script.write_text(
            "set -e\n"
            f"mount -t overlay overlay -o lowerdir=/,upperdir={upper},workdir={directory / 'work'} {merged}\n"
            f"mount -t proc proc {merged}/proc\n"
            f"mount --rbind /dev {merged}/dev\n"
            f"mount -t tmpfs -o mode=1777 tmpfs {merged}/dev/shm\n"  # noqa: S108
            f"mount --rbind /sys {merged}/sys\n"
            # A fresh /run, as after boot; it also hides every node's layers from the node.
            f"mount -t tmpfs -o mode=0755 tmpfs {merged}/run\n"
            f"mkdir -p {merged}/run/sshd\n"
            f"hostname '{hostname}'\n"
            f"exec chroot {merged} {self.sshd_path} -D -e -f /etc/ssh/sshd_config\n"
        )
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
