"""Optional persistence of the simulated cloud to one JSON file.

The demo keeps its servers across restarts this way. Tokens are stored only as hashes; actions
that were running when the simulator stopped are restored as finished (see ``Action.from_state``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodewright.sim.actions import Action
from nodewright.sim.models import ProjectImage, Server, SshKey

if TYPE_CHECKING:
    from nodewright.sim.state import SimState

FORMAT = 1
UNSAVED = {"root_password", "rescue_password", "reset_disk"}


def save_state(state: SimState, path: Path) -> None:
    """Atomic replace, so a crash mid-write never leaves a truncated file behind."""
    data: dict[str, Any] = {
        "format": FORMAT,
        "counters": {
            "server": state.next_server_id,
            "action": state.next_action_id,
            "key": state.next_key_id,
            "ip": state.next_ip_id,
            "image": state.next_image_id,
            "cursor": state.pool.cursor,
        },
        "tokens": {h: list(v) for h, v in state.tokens.items()},
        "servers": [
            {k: v for k, v in s.__dict__.items() if k not in UNSAVED} for s in state.servers.values()
        ],
        # Records only: their content (a node's disk) is not kept across restarts, as nodes' own
        # disks are not; a server created from one starts from the base disk.
        "images": [i.__dict__.copy() for i in state.images.values() if i.status == "available"],
        "ssh_keys": [k.__dict__.copy() for k in state.ssh_keys.values()],
        "actions": [a.to_state() for a in state.actions.values()],
        "server_limits": state.server_limits,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def load_state(state: SimState, path: Path) -> None:
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported simulator state format {data.get('format')!r}")
    counters = data["counters"]
    state.next_server_id = counters["server"]
    state.next_action_id = counters["action"]
    state.next_key_id = counters["key"]
    state.next_ip_id = counters["ip"]
    state.next_image_id = counters.get("image", state.next_image_id)
    state.pool.cursor = counters["cursor"]
    state.tokens = {h: (v[0], v[1]) for h, v in data["tokens"].items()}
    for raw in data["servers"]:
        server = Server(**raw)
        if server.status in {"initializing", "starting"}:
            server.status = "running"
        elif server.status == "stopping":
            server.status = "off"
        # Its password is never saved: a restart ends rescue mode (as Hetzner's 60 minutes would),
        # rather than booting a rescue system nobody can log in to.
        server.rescue_enabled, server.rescue_keys = False, []
        state.servers[server.id] = server
        if server.ipv4:
            state.pool.used.add(server.ipv4)
    for raw in data.get("images", []):
        image = ProjectImage(**raw)
        state.images[image.id] = image
    for raw in data["ssh_keys"]:
        key = SshKey(**raw)
        state.ssh_keys[key.id] = key
    for raw in data["actions"]:
        action = Action.from_state(raw)
        state.actions[action.id] = action
    state.server_limits = dict(data.get("server_limits", {}))
