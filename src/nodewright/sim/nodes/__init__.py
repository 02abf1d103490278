"""Simulated nodes: one real OpenSSH ``sshd`` per running server, isolated from the host.

The package reads as the concepts of a node: its disk (:mod:`.layers`), the namespaces it runs
in (:mod:`.isolation`), its sshd (:mod:`.sshd`), the slice of cloud-init it honours
(:mod:`.cloudinit`) and the supervisor that starts and stops nodes (:mod:`.supervisor`).
"""

from nodewright.sim.nodes.isolation import launcher, node_config, probe_isolation
from nodewright.sim.nodes.layers import FHS_TOP_LEVEL, _real_dir, _write, default_root, reap_stale_roots
from nodewright.sim.nodes.supervisor import Node, NodeSpec, NodeSupervisor

__all__ = [
    "FHS_TOP_LEVEL",
    "Node",
    "NodeSpec",
    "NodeSupervisor",
    "_real_dir",
    "_write",
    "default_root",
    "launcher",
    "node_config",
    "probe_isolation",
    "reap_stale_roots",
]
