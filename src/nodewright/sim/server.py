"""Serving the simulator in-process: what tests, benchmarks and ``nodewright demo`` embed.

uvicorn runs in a background thread so that callers keep control of their own thread;
``stop()`` is the single place that guarantees nothing is left running (HTTP, ticker, every sshd).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from nodewright.sim.app import create_app
from nodewright.sim.config import SimConfig
from nodewright.sim.control_client import SimControl
from nodewright.sim.nodes import NodeSupervisor, probe_isolation
from nodewright.sim.nodes.layers import readable_by_nodes
from nodewright.sim.nodes.network import NetworkError, SimNetwork, probe_network
from nodewright.sim.runtime import SimRuntime

log = logging.getLogger(__name__)


def exposed_to_nodes(state_file: Path | None, config: SimConfig) -> tuple[str, Path] | None:
    """The first of the simulator's own state, its nodes' directory or a nodewright data directory
    (``NODEWRIGHT_DATA_DIR``, the default ``.nodewright``, and what ``config.protected_paths``
    names) that root in a node could read, with what it is; None when none is."""
    candidates: list[tuple[str, Path]] = []
    if state_file is not None:
        candidates.append(("state file", state_file))
    if config.node_root:
        candidates.append(("node root", Path(config.node_root)))
    candidates.append(
        ("nodewright data directory", Path(os.environ.get("NODEWRIGHT_DATA_DIR", ".nodewright")))
    )
    candidates.extend(("nodewright data directory", Path(p)) for p in config.protected_paths)
    for what, path in candidates:
        if readable_by_nodes(path.absolute() / "probe") or readable_by_nodes(path.absolute()):
            return what, path
    return None


class SimServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ssh_nodes: bool | None = None,
        state_file: Path | str | None = None,
        config: SimConfig | None = None,
    ) -> None:
        """``ssh_nodes=None`` means: run SSH nodes if this process may, else say why and go on."""
        self.host = host
        self.port = port
        self.config = config if config is not None else SimConfig()
        self.requested_ssh_nodes = self.config.ssh_nodes if ssh_nodes is None else ssh_nodes
        self.auto_ssh_nodes = ssh_nodes is None
        self.state_file = Path(state_file) if state_file is not None else None
        self.runtime: SimRuntime | None = None
        self.ssh_nodes_reason: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("SimServer is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def control(self) -> SimControl:
        """A client of this simulator's ``/_sim`` API; close it (or use ``with``) when done."""
        return SimControl(self.base_url)

    @property
    def ssh_nodes(self) -> bool:
        return self.runtime is not None and self.runtime.nodes is not None

    def start(self) -> SimServer:
        nodes: NodeSupervisor | None = None
        if self.requested_ssh_nodes:
            self.ssh_nodes_reason = probe_isolation(self.config.sshd_path) or probe_network()
            if self.ssh_nodes_reason is None:
                exposed = exposed_to_nodes(self.state_file, self.config)
                if exposed is not None:
                    # The state holds every project's servers and user data (host keys a client
                    # injected, secrets in runcmd), a data directory the control plane's database
                    # and keys: root in any node would read them through its disk.
                    what, path = exposed
                    raise ValueError(
                        f"refusing SSH nodes: the {what} {path} would be readable inside every simulated "
                        "node (their disks share the host's /usr and a copy of /etc); put it elsewhere, "
                        "or run without SSH nodes"
                    )
            network: SimNetwork | None = None
            if self.ssh_nodes_reason is None:
                try:
                    network = SimNetwork()
                except NetworkError as exc:
                    self.ssh_nodes_reason = f"cannot create the nodes' network: {exc}"
            if self.ssh_nodes_reason is None:
                root = Path(self.config.node_root) if self.config.node_root else None
                nodes = NodeSupervisor(self.config.sshd_path, self.config.ssh_port, root, network=network)
            else:
                log.warning("simulator runs without SSH nodes: %s", self.ssh_nodes_reason)
        else:
            self.ssh_nodes_reason = "SSH nodes disabled by configuration"
        try:
            self.runtime = SimRuntime(
                self.config, nodes, self.ssh_nodes_reason if nodes is None else None, self.state_file
            )
        except BaseException:  # e.g. an unreadable state file: the nodes' threads and root must go
            if nodes is not None:
                nodes.shutdown()
            raise
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            self.runtime.stop()
            raise
        self.port = sock.getsockname()[1]
        uv_config = uvicorn.Config(
            create_app(self.runtime),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(uv_config)
        self.runtime.start()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sim-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("simulator HTTP server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.runtime is not None:
            self.runtime.stop()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
