"""The cloud-init user data a node's server boots with: its hostname and its pinned host key.

nodewright makes the node's SSH host key itself and hands it to the server here, so the very first
SSH connection can check the host key strictly instead of trusting whatever answers. Hetzner keeps
user data with the server (readable by the project's token holders and by the server itself), so
the key is used only as this one server's host key.
"""

from __future__ import annotations

import yaml

from nodewright.providers.base import AcquireRequest

MAX_USER_DATA = 32 * 1024  # the API's limit


def user_data(request: AcquireRequest) -> str:
    key_type = request.host_key.public_openssh.split()[0]
    kind = {"ssh-ed25519": "ed25519", "ecdsa-sha2-nistp256": "ecdsa", "ssh-rsa": "rsa"}.get(key_type)
    if kind is None:
        raise ValueError(f"unsupported host key type {key_type!r}")
    document = {
        "hostname": request.server_name,
        "preserve_hostname": False,
        "ssh_pwauth": False,
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {
            f"{kind}_private": request.host_key.private_openssh.reveal().strip() + "\n",
            f"{kind}_public": request.host_key.public_openssh.strip(),
        },
        "ssh_authorized_keys": [
            request.client_key.public_openssh.strip(),
            *[k.strip() for k in request.extra_authorized_keys],
        ],
    }
    text = "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    if len(text.encode()) > MAX_USER_DATA:
        raise ValueError("cloud-init user data exceeds 32 KiB (too many authorized keys?)")
    return text
