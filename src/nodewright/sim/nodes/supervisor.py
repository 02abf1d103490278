"""The node supervisor: starts and stops nodes off the request path and reports their state."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nodewright.sim.nodes.cloudinit import CloudConfig, seed
from nodewright.sim.nodes.console import CONSOLE_NAME, Consoles, tail
from nodewright.sim.nodes.disks import DiskError, capture, restore, wipe
from nodewright.sim.nodes.entry import ENVIRONMENT
from nodewright.sim.nodes.freeze import frozen
from nodewright.sim.nodes.idranges import IdRanges, RangesExhausted
from nodewright.sim.nodes.init import POWEROFF_STATUS, REBOOT_STATUS, install_init
from nodewright.sim.nodes.isolation import launcher, node_config
from nodewright.sim.nodes.layers import (
    _real_dir,
    _write,
    build_image,
    default_root,
    prepare_upper,
    reap_stale_roots,
    remove_tree,
    shift_ids,
)
from nodewright.sim.nodes.network import NetworkError, NodeAddresses, SimNetwork
from nodewright.sim.nodes.sshd import address_taken, connection_arrived, install_sshd

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
    ipv6_net: str | None = None
    cloud: CloudConfig = field(default_factory=CloudConfig)
    root_password: str | None = field(default=None, repr=False)
    # The image (see :meth:`NodeSupervisor.image_path`) a new disk starts from; None: the base.
    disk_source: Path | None = None
    # The rescue system: a throwaway root of its own, the server's disk untouched; ``then`` is
    # what a reboot from inside boots (rescue is used up by the boot into it, as on Hetzner).
    rescue: bool = False
    then: NodeSpec | None = None


SnapshotState = Literal["copying", "done", "failed"]
RESCUE_MOTD = (
    "\nRescue system (simulated by nodewright-sim). The server's own disk is not mounted here and\n"
    "is not visible as a block device: the simulator's rescue system shows none of it.\n\n"
)


@dataclass
class Node:
    spec: NodeSpec
    directory: Path
    state: NodeState = "absent"
    desired: Desired = "running"
    restart: bool = False
    reset_disk: bool = False  # rebuild: the next boot starts from a new disk
    process: subprocess.Popen[bytes] | None = None
    boot_seconds: float | None = None
    error: str | None = None
    id_base: int | None = None  # first host id of its user namespace, held while the node exists


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
        network: SimNetwork | None = None,
    ) -> None:
        self.sshd_path = sshd_path
        self.port = port
        self.network = network
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
        self._image: Path | None = None
        self.id_ranges = IdRanges()
        self.consoles = Consoles()
        self._image_lock = threading.Lock()
        self._closing = threading.Event()
        self._snapshots: dict[int, SnapshotState] = {}
        self._snapshot_sizes: dict[int, int] = {}
        self._threads.append(threading.Thread(target=self._watch, name="sim-node-watch", daemon=True))
        for thread in self._threads:
            thread.start()
        _LIVE.add(self)

    def _watch(self) -> None:
        """Notice nodes whose init ended by itself: an in-node reboot boots the node again (same
        disk); a power-off or a crash leaves it stopped, which the API reports as ``off``."""
        while not self._closing.wait(0.1):
            ended = []
            with self._lock:
                for node in self._nodes.values():
                    process = node.process
                    if node.state == "ready" and process is not None and process.poll() is not None:
                        node.process = None
                        ended.append((node, process.returncode))
            for node, status in ended:
                if status == REBOOT_STATUS:
                    log.info("simulated node %s rebooted from inside", node.spec.server_id)
                    self.boot(node.spec.then or node.spec, restart=True)
                    continue
                with self._lock:
                    node.state = "stopped"
                    node.error = None if status == POWEROFF_STATUS else f"init exited with status {status}"
                if self.network is not None:
                    self.network.detach(node.spec.server_id)

    # -- requests from the API state (never block) ------------------------------------------
    def boot(self, spec: NodeSpec, restart: bool = False, reset_disk: bool = False) -> None:
        """Make the node run; ``restart`` kills a running sshd first (reboot, reset);
        ``reset_disk`` (rebuild) boots it from a new disk."""
        with self._lock:
            node = self._nodes.get(spec.server_id)
            if node is None or node.state == "gone":
                node = Node(spec, self.root / f"node-{spec.server_id}")
                self._nodes[spec.server_id] = node
            node.spec = spec
            node.desired = "running"
            node.restart = node.restart or restart or reset_disk
            node.reset_disk = node.reset_disk or reset_disk
            if node.state != "ready" or restart or reset_disk:
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

    # -- disks and images -------------------------------------------------------------------
    def image_path(self, image_id: int) -> Path:
        """Where the content of a snapshot or backup image lives (present once captured)."""
        return self.root / "images" / f"image-{image_id}"

    def snapshot(self, server_id: int, image_id: int) -> None:
        """Copy the node's disk into an image, on a thread of its own (never on the request
        path); :meth:`snapshot_state` tells when it is done. A server without a node gives an
        image of the base disk."""
        with self._lock:
            self._snapshots[image_id] = "copying"
            node = self._nodes.get(server_id)

        def copy() -> None:
            target = self.image_path(image_id)
            state: SnapshotState = "failed"
            size = 0
            try:
                with self._lock:  # the node's current instance: it is held still while copied
                    launcher = node.process.pid if node is not None and node.process is not None else None
                    id_base = node.id_base if node is not None else None
                if node is None or not (node.directory / "upper").is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    with frozen(launcher):
                        size = capture(node.directory, target, id_base)
                state = "done"
            except Exception as exc:  # never leaves the action waiting for a copy that ended
                log.warning("snapshot %s of simulated node %s failed: %s", image_id, server_id, exc)
            with self._lock:
                wanted = image_id in self._snapshots
                if wanted:
                    self._snapshots[image_id] = state
                    self._snapshot_sizes[image_id] = size
            if not wanted or state == "failed":  # deleted while it was copied, or cut short
                remove_tree(target)

        threading.Thread(target=copy, name=f"sim-snapshot-{image_id}", daemon=True).start()

    def snapshot_state(self, image_id: int) -> SnapshotState | None:
        with self._lock:
            return self._snapshots.get(image_id)

    def snapshot_size(self, image_id: int) -> int:
        with self._lock:
            return self._snapshot_sizes.get(image_id, 0)

    def delete_image(self, image_id: int) -> None:
        with self._lock:
            self._snapshots.pop(image_id, None)
            self._snapshot_sizes.pop(image_id, None)
        remove_tree(self.image_path(image_id))  # a copy still running removes its own at its end

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
                if process is not None and not self._terminate(process):
                    # Its layers must not be written while any of it may still run.
                    raise RuntimeError("the node's previous instance did not stop; it is not booted again")
                alive = False
            with self._lock:
                reset, node.reset_disk = node.reset_disk, False
            if reset and not alive:
                wipe(node.directory)
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
        netns: str | None = None
        if self.network is None:
            # In the host's network namespace a node would reach every service on its loopback.
            self._fail(node, "simulated nodes need a network of their own (NodeSupervisor(network=...))")
            return
        try:
            self.network.detach(spec.server_id)  # a reboot's old interface
            taken = address_taken(spec.address, self.port)
            if taken:
                raise NetworkError(taken)
            netns = self.network.attach(spec.server_id, NodeAddresses(spec.address, spec.ipv6_net))
            if node.id_base is None:
                node.id_base = self.id_ranges.take(hint=spec.server_id)
            config = self._prepare(self._layers(node), spec, node.id_base, netns is not None)
        except (NetworkError, RangesExhausted, DiskError) as exc:
            self._fail(node, str(exc))
            return
        # The init writes into a pipe, never into a host file (see console.py).
        console_read, console_write = os.pipe()
        try:
            process = subprocess.Popen(
                launcher(config, netns),
                stdin=subprocess.DEVNULL,
                stdout=console_write,
                stderr=console_write,
                start_new_session=True,
                close_fds=True,
                env=ENVIRONMENT,  # nothing of the simulator's own (its database URL, tokens)
            )
        except OSError:
            os.close(console_read)
            raise
        finally:
            os.close(console_write)
        self.consoles.attach(console_read, node.directory / CONSOLE_NAME)
        with self._lock:
            node.process = process
        ready = self._wait_listening(spec.address, process, node)
        error = None if ready else (node.error or self._tail_log(node.directory))
        with self._lock:
            if error is None:
                node.state = "ready"
                node.boot_seconds = time.monotonic() - started
                node.error = None
                return
            node.process = None
        self._terminate(process)
        self._fail(node, error)

    def _fail(self, node: Node, error: str) -> None:
        with self._lock:
            node.state = "failed"
            node.error = error
        log.warning("simulated node %s did not start: %s", node.spec.server_id, error)
        if self.network is not None:
            self.network.detach(node.spec.server_id)

    def _wait_listening(self, address: str, process: subprocess.Popen[bytes], node: Node) -> bool:
        """Wait until the node's sshd accepts connections at its address. With a network of its
        own, the connection must also have landed in the node's namespace (not on another host
        holding the address): a server is ``running`` only when its own sshd answers there."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None or node.desired != "running":
                return process.poll() is None
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((address, self.port)) == 0:
                    if self.network is None:
                        return True
                    if connection_arrived(process.pid, sock.getsockname()[1]):
                        return True
                    node.error = f"{address}:{self.port} is answered by another host (address taken)"
                    return False
            time.sleep(0.01)
        return False

    @staticmethod
    def _tail_log(directory: Path) -> str:
        return tail(directory / CONSOLE_NAME).strip() or "sshd exited"

    def image(self) -> Path:
        """The image base every node's disk is an overlay of, built at the first boot (a simulator
        that never boots a node never copies anything)."""
        with self._image_lock:
            if self._image is None:
                staging = self.root / "image.partial"
                shutil.rmtree(staging, ignore_errors=True)
                build_image(staging)
                staging.rename(self.root / "image")
                self._image = self.root / "image"
            return self._image

    @staticmethod
    def _layers(node: Node) -> Path:
        """The directory of the layers this boot uses: the server's disk, or a rescue system's
        new throwaway root (the disk is left as it is)."""
        rescue = node.directory / "rescue"
        remove_tree(rescue)
        if not node.spec.rescue:
            return node.directory
        rescue.mkdir(parents=True)
        return rescue

    def _prepare(self, directory: Path, spec: NodeSpec, base: int, own_network: bool) -> Path:
        """Lay the node's own files into its layers, give them to the node's root and write the
        configuration of its entry program."""
        new_instance = False
        if spec.disk_source is not None and not spec.rescue and not (directory / "upper").exists():
            restore(spec.disk_source, directory)
            new_instance = True
        upper, first_boot = prepare_upper(directory)
        first_boot = first_boot or new_instance
        command = install_init(upper)
        if spec.rescue:
            _write(_real_dir(upper, "etc", 0o755) / "motd", RESCUE_MOTD, 0o644)
        if first_boot:
            seed(upper, spec.cloud, f"i-{spec.server_id}", spec.root_password)
        install_sshd(upper, spec, self.port, first_boot)
        for layer in ("upper", "upper-usr"):
            shift_ids(directory / layer, base)
        return node_config(directory, self.image(), spec.hostname, command, base, own_network)

    def _kill(self, node: Node, final: Desired) -> None:
        with self._lock:
            process = node.process
            node.process = None
        if process is not None:
            self._terminate(process)
        if self.network is not None:
            self.network.detach(node.spec.server_id)
        if final == "gone":
            remove_tree(node.directory)
            if node.id_base is not None:
                self.id_ranges.release(node.id_base)
                node.id_base = None
        with self._lock:
            node.state = "gone" if final == "gone" else "stopped"

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> bool:
        """Kill the node's pid-namespace init (its sshd) first: the kernel then kills every
        process of the node, the init reaps them, and unshare reaps the init and exits, so no
        orphan or zombie is left for the host to collect. The group kill is the fallback.
        Returns whether the node's launcher is gone."""
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
            return False
        return True

    def shutdown(self) -> None:
        """Kill every node and remove the root directory; safe to call more than once."""
        _LIVE.discard(self)
        self._closing.set()
        with self._lock:
            for node in self._nodes.values():
                node.desired = "gone"  # in-flight boots stop waiting; queued work turns into kills
        for _ in self._threads[:-1]:
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
        if self.network is not None:
            self.network.close()
        self.consoles.close()
        self.id_ranges.close()
        remove_tree(self.root)
