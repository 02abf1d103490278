"""Knobs of the simulator.

Real Hetzner takes ~10 s to boot a server; tests and the demo want fractions of a second, so every
duration is configurable. The rate-limit defaults are the real ones.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass
class SimConfig:
    create_duration: float = 1.0
    start_duration: float = 1.0
    stop_duration: float = 0.5
    delete_duration: float = 0.5
    # change_protection, enable/disable_backup, change_dns_ptr, attach_iso/detach_iso.
    action_duration: float = 0.2
    rate_limit_capacity: int = 3600
    rate_limit_refill_per_second: float = 1.0
    ssh_address_range: str = "198.18.0.0/15"
    ssh_port: int = 22
    ssh_nodes: bool = True
    sshd_path: str = "/usr/sbin/sshd"
    node_root: str | None = None
    max_servers_per_project: int | None = None
    tick_interval: float = 0.05
    request_log_size: int = 10_000
    # Directories of a control plane that uses this simulator (its data directory): SSH nodes are
    # refused if root in a node could read them.
    protected_paths: tuple[str, ...] = ()
    # Add the removed ``datacenter`` back to Server objects, for clients older than its removal
    # (see :mod:`nodewright.sim.legacy`); off: servers look as Hetzner's do today.
    legacy_datacenter: bool = False

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.ssh_address_range, strict=False)
        if not net.subnet_of(ipaddress.ip_network("198.18.0.0/15")):  # type: ignore[arg-type]
            raise ValueError("ssh_address_range must lie within 198.18.0.0/15 (the range reserved for tests)")
        for name in (
            "create_duration",
            "start_duration",
            "stop_duration",
            "delete_duration",
            "action_duration",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.rate_limit_capacity < 1 or self.rate_limit_refill_per_second <= 0:
            raise ValueError("rate limit capacity and refill must be positive")
