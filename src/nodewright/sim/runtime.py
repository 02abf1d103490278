"""Everything one running simulator owns, wired together: state, faults, limiter, nodes, ticker.

Kept apart from the HTTP app so that the control API, the CLI and tests all reach the same parts,
and apart from :mod:`server` so that the app can be served by any ASGI server.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from nodewright.sim.config import SimConfig
from nodewright.sim.faults import FaultRegistry
from nodewright.sim.models import Server
from nodewright.sim.nodes import NodeSpec, NodeSupervisor
from nodewright.sim.nodes.cloudinit import parse_user_data
from nodewright.sim.persistence import load_state, save_state
from nodewright.sim.ratelimit import RateLimiter
from nodewright.sim.state import SimState

log = logging.getLogger(__name__)


class SimRuntime:
    def __init__(
        self,
        config: SimConfig,
        nodes: NodeSupervisor | None = None,
        ssh_disabled_reason: str | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.config = config
        self.nodes = nodes
        self.ssh_disabled_reason = ssh_disabled_reason
        self.state_file = state_file
        self.state = SimState(config, nodes)
        self.state.node_spec_factory = self._node_spec
        self.faults = FaultRegistry()
        self.limiter = RateLimiter(config.rate_limit_capacity, config.rate_limit_refill_per_second)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._last_save = 0.0
        if state_file is not None and state_file.exists():
            load_state(self.state, state_file)
            self.state.resume_nodes()

    def _node_spec(self, server: Server, rescue: bool = False) -> NodeSpec | None:
        if server.ipv4 is None:
            return None  # no public IPv4: nothing to listen on, like a real IPv6-only server here
        cloud = parse_user_data(server.user_data)
        own_image = server.image_id in self.state.images and self.nodes is not None
        disk = NodeSpec(
            server_id=server.id,
            address=server.ipv4,
            hostname=server.hostname(),
            authorized_keys=list(server.authorized_keys),
            host_keys=cloud.host_keys,
            ipv6_net=server.ipv6_net,
            cloud=cloud,
            root_password=server.root_password,
            disk_source=self.nodes.image_path(server.image_id) if own_image and self.nodes else None,
        )
        if not rescue:
            return disk
        return NodeSpec(  # Hetzner's rescue system: its own root, keys and password, no user data
            server_id=server.id,
            address=server.ipv4,
            hostname="rescue",
            authorized_keys=list(server.rescue_keys),
            ipv6_net=server.ipv6_net,
            root_password=server.rescue_password,
            rescue=True,
            then=disk,
        )

    def start(self) -> None:
        self._ticker = threading.Thread(target=self._tick, name="sim-ticker", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        """Progress actions even when nobody polls, so nodes come up on time."""
        while not self._stop.wait(self.config.tick_interval):
            try:
                self.state.advance()
                self.state.sync_nodes()
                self._maybe_save()
            except Exception:
                log.exception("simulator ticker failed")

    def _maybe_save(self, force: bool = False) -> None:
        if self.state_file is None:
            return
        now = time.monotonic()
        if force or (self.state.changed and now - self._last_save >= 1.0):
            with self.state.lock:
                self.state.changed = False
                save_state(self.state, self.state_file)
            self._last_save = now

    def status(self) -> dict[str, Any]:
        with self.state.lock:
            return {
                "ssh_nodes": self.nodes is not None,
                "ssh_nodes_reason": self.ssh_disabled_reason,
                "ssh_port": self.config.ssh_port,
                "ssh_address_range": self.config.ssh_address_range,
                "servers": len(self.state.servers),
                "ssh_keys": len(self.state.ssh_keys),
                "actions": len(self.state.actions),
                "running_actions": len(self.state.running),
                "node_root": str(self.nodes.root) if self.nodes is not None else None,
                "network": self._network(),
                "config": {
                    "create_duration": self.config.create_duration,
                    "start_duration": self.config.start_duration,
                    "stop_duration": self.config.stop_duration,
                    "delete_duration": self.config.delete_duration,
                    "action_duration": self.config.action_duration,
                    "legacy_datacenter": self.config.legacy_datacenter,
                    "rate_limit_capacity": self.limiter.capacity,
                    "rate_limit_refill_per_second": self.limiter.refill_per_second,
                },
            }

    def _network(self) -> dict[str, str] | None:
        network = self.nodes.network if self.nodes is not None else None
        if network is None:
            return None
        return {
            "ipv4_range": network.address_range,
            "gateway": network.gateway,
            "ipv6_prefix": f"{network.ipv6_prefix}::/48",
            "bridge": network.bridge,
        }

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        self._maybe_save(force=True)
        if self.nodes is not None:
            self.nodes.shutdown()
