"""cloud-init, host side: parse the server's user data and seed the node with it.

What must exist before the node's sshd starts (its hostname, root's authorized keys and the SSH
host keys, so clients can pin a host key they injected, as on Hetzner) is applied by the
simulator; the rest (users, write_files, runcmd, bootcmd, packages, timezone, ``#!`` scripts)
is seeded as JSON for the node's own ``cloud-init`` (``guest/cloud_init.py``), which runs it at
first boot. User data YAML is parsed here because nodes need nothing but Python's standard library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodewright.sim.nodes.layers import _real_dir, _write

HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
# YAML aliases let 32 KiB of user data stand for a document of terabytes ("billion laughs"); the
# seed is written as JSON, which expands every alias. No real cloud-config comes near this.
MAX_DOCUMENT_NODES = 100_000


@dataclass
class CloudConfig:
    hostname: str | None = None
    authorized_keys: list[str] = field(default_factory=list)
    host_keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # type -> (private, public)
    document: dict[str, Any] | None = None  # the whole #cloud-config, for the node's cloud-init
    script: str | None = None  # ``#!`` user data
    errors: list[str] = field(default_factory=list)


def _keys(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list):
        return [str(v).strip() for v in value if isinstance(v, str) and v.strip()]
    return []


def _too_large(data: Any) -> bool:
    """Whether ``data``, aliases expanded, has more than :data:`MAX_DOCUMENT_NODES` values."""
    budget = MAX_DOCUMENT_NODES
    stack = [data]
    while stack:
        budget -= 1
        if budget < 0:
            return True
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def parse_user_data(user_data: str | None) -> CloudConfig:
    """Best effort: malformed user data boots a node without those settings, as cloud-init would."""
    config = CloudConfig()
    if user_data and user_data.startswith("#!"):
        config.script = user_data
        return config
    if not user_data or not user_data.lstrip().startswith("#cloud-config"):
        return config
    try:
        data = yaml.safe_load(user_data)
    except yaml.YAMLError as exc:
        config.errors.append(f"('init', ValueError('user data is not valid YAML: {exc}'))")
        return config
    if not isinstance(data, dict):
        return config
    if _too_large(data):
        problem = f"user data expands to more than {MAX_DOCUMENT_NODES} values (YAML aliases)"
        config.errors.append(f"('init', ValueError('{problem}'))")
        return config
    config.document = data
    hostname = data.get("hostname") or data.get("fqdn")
    if isinstance(hostname, str) and hostname.strip():
        config.hostname = hostname.strip()
    config.authorized_keys.extend(_keys(data.get("ssh_authorized_keys")))
    users = data.get("users")
    if isinstance(users, list):
        for user in users:
            if isinstance(user, dict) and user.get("name") in {"root", "default"}:
                config.authorized_keys.extend(_keys(user.get("ssh_authorized_keys")))
    ssh_keys = data.get("ssh_keys")
    if isinstance(ssh_keys, dict):
        for kind in HOST_KEY_TYPES:
            private = ssh_keys.get(f"{kind}_private")
            public = ssh_keys.get(f"{kind}_public")
            if isinstance(private, str) and private.strip():
                config.host_keys[kind] = (
                    private.strip() + "\n",
                    public.strip() if isinstance(public, str) and public.strip() else None,
                )
    return config


def seed(upper: Path, config: CloudConfig, instance_id: str, root_password: str | None) -> None:
    """Write the node's cloud-init seed (first boot only; root-only file inside the node)."""
    document = json.loads(json.dumps(config.document or {}, default=str))  # YAML dates etc. as text
    data: dict[str, Any] = {
        "instance_id": instance_id,
        "cloud_config": document,
        "script": config.script,
        "errors": config.errors,
    }
    if root_password:
        data["root_password"] = root_password
    target = _real_dir(upper, "var/lib/cloud/seed/nodewright", 0o700)
    _write(target / "seed.json", json.dumps(data), 0o600)
