"""A local stand-in for the Hetzner Cloud API whose servers are real SSH hosts.

Everything here is self-contained on purpose: the simulator must be usable (and testable) without
the control plane, so nothing under ``nodewright.sim`` imports from the rest of ``nodewright``.
"""

from nodewright.sim.config import SimConfig

__all__ = ["SimConfig"]
