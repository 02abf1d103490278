"""The slice of cloud-init that a simulated node honours.

Only what makes the node reachable the way a real one would be: its hostname, root's authorized
keys and the SSH host keys (so clients can pin a host key they injected, as they would on Hetzner).
Anything else in the user data is accepted and ignored, as an image without cloud-init would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")


@dataclass
class CloudConfig:
    hostname: str | None = None
    authorized_keys: list[str] = field(default_factory=list)
    host_keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # type -> (private, public)


def _keys(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list):
        return [str(v).strip() for v in value if isinstance(v, str) and v.strip()]
    return []


def parse_user_data(user_data: str | None) -> CloudConfig:
    """Best effort: malformed user data boots a node without those settings, as cloud-init would."""
    config = CloudConfig()
    if not user_data or not user_data.lstrip().startswith("#cloud-config"):
        return config
    try:
        data = yaml.safe_load(user_data)
    except yaml.YAMLError:
        return config
    if not isinstance(data, dict):
        return config
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
