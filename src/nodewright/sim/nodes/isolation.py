"""How a node is started: the configuration its entry program reads and the command that runs it.

The work itself is in :mod:`.entry` (a standalone program run by the host's Python before
anything of the node runs); this module writes what it needs and checks that this host can do it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nodewright.sim.nodes import entry
from nodewright.sim.nodes.idranges import IdRanges
from nodewright.sim.nodes.layers import build_image, default_root, host_is_merged_usr, prepare_upper

ENTRY_PROGRAM = Path(entry.__file__).resolve()
CONFIG_NAME = "start.json"


def node_config(
    directory: Path, image: Path, hostname: str, command: list[str], uid_base: int, own_network: bool
) -> Path:
    """Write what the node's entry program needs into the node's directory; returns the file."""
    path = directory / CONFIG_NAME
    config = {
        "directory": str(directory),
        "image": str(image),
        "hostname": hostname,
        "command": command,
        "uid_base": uid_base,
        "own_network": own_network,
        "capabilities": list(entry.KEPT_CAPABILITIES),
    }
    path.write_text(json.dumps(config))
    os.chmod(path, 0o600)
    return path


def launcher(config: Path, netns: str | None = None) -> list[str]:
    """``setpriv --pdeathsig KILL`` ties the node to the thread that started it, so that a
    simulator killed with SIGKILL takes its nodes along (``--kill-child`` does the rest).
    ``nsenter --net`` first puts it into its own network namespace. The entry program runs with
    this simulator's own Python, isolated (``-I -S``): nothing of the node's disk runs as the
    host's root."""
    enter = ["nsenter", f"--net={netns}"] if netns else []
    return [
        *enter,
        "setpriv", "--pdeathsig", "KILL",
        "unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
        sys.executable, "-I", "-S", str(ENTRY_PROGRAM), str(config),
    ]  # fmt: skip


def probe_isolation(sshd_path: str) -> str | None:
    """Return why simulated nodes cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "simulated SSH nodes need root (user, mount and pid namespaces, id-mapped overlay mounts)"
    if not os.access(sshd_path, os.X_OK):
        return f"sshd not found at {sshd_path} (install openssh-server)"
    for tool in ("unshare", "setpriv", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool}(1) not found (install util-linux)"
    if not host_is_merged_usr():
        return "simulated SSH nodes need a host whose /bin, /sbin and /lib are links into /usr (merged /usr)"
    probe = default_root()
    ranges = IdRanges()
    try:
        base = ranges.take()
        image = build_image(probe / "image", minimal=True)
        directory = probe / "node"
        prepare_upper(directory)
        for layer in ("upper", "upper-usr"):
            os.chown(directory / layer, base, base)
        config = node_config(directory, image, "nodewright-probe", ["/bin/true"], base, False)
        result = subprocess.run(
            launcher(config), capture_output=True, timeout=10, check=False, env=entry.ENVIRONMENT
        )
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip()
            unavailable = "user namespaces, id-mapped or overlay mounts unavailable"
            return f"cannot create isolated nodes ({unavailable}): {detail}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot create isolated nodes: {exc}"
    finally:
        ranges.close()
        shutil.rmtree(probe, ignore_errors=True)
    return None
