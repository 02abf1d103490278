"""The node's init and the programs that talk to it, installed into the node's upper layer.

The programs themselves live in :mod:`nodewright.sim.nodes.guest` and run inside the node with
the node's own Python (standard library only). They are rewritten at every boot, as an image's
own programs; everything else of the node persists.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from nodewright.sim.nodes.layers import _real_dir, _write, layer_of

GUEST_DIR = "usr/local/lib/nodewright"
# Exit statuses of the node's init (see guest/init.py): anything else means it crashed.
POWEROFF_STATUS, REBOOT_STATUS = 10, 11
LINKS = {
    "usr/sbin/service": "service.py",
    "usr/sbin/reboot": "power.py",
    "usr/sbin/poweroff": "power.py",
    "usr/sbin/halt": "power.py",
    "usr/sbin/shutdown": "power.py",
    "usr/bin/cloud-init": "cloud_init.py",
}


def install_init(upper: Path) -> list[str]:
    """Lay the guest programs into the node and return the command that runs its init."""
    target = _real_dir(*layer_of(upper, GUEST_DIR), 0o755)
    package = resources.files("nodewright.sim.nodes.guest")
    for name in ("init.py", "service.py", "power.py", "cloud_init.py"):
        _write(target / name, package.joinpath(name).read_text(), 0o755)
    for link, name in LINKS.items():
        layer, relative = layer_of(upper, link)
        path = layer / relative
        _real_dir(layer, str(Path(relative).parent), 0o755)
        if os.path.lexists(path):
            if path.is_dir() and not path.is_symlink():
                continue
            path.unlink()
        path.symlink_to(f"/{GUEST_DIR}/{name}")
    return ["/usr/bin/python3", "-I", "-S", f"/{GUEST_DIR}/init.py"]
