"""A node's OpenSSH server: host keys, root's authorized keys and ``sshd_config``, as an Ubuntu
cloud image has them after cloud-init ran."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodewright.sim.nodes.layers import _is_whiteout, _real_dir, _write


def _generate_host_key() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def _public_from_private(private: str) -> str | None:
    try:
        key = serialization.load_ssh_private_key(private.encode(), password=None)
    except (ValueError, TypeError):
        return None
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def install_host_keys(etc_ssh: Path, host_keys: dict[str, tuple[str, str | None]]) -> list[str]:
    """Write the host keys cloud-init was given (or keep the node's own, or make one) and hide the
    host's; returns the ``HostKey`` paths as the node sees them."""
    keys = dict(host_keys)
    existing = [p for p in sorted(etc_ssh.glob("ssh_host_*_key")) if not _is_whiteout(p)]
    if not keys and existing:
        key_paths = [f"/etc/ssh/{p.name}" for p in existing]
    else:
        if not keys:
            private, public = _generate_host_key()
            keys = {"ed25519": (private, public)}
        for old in existing:
            old.unlink()  # a symlink is removed, not followed
        key_paths = []
        for kind, (private_key, maybe_public) in keys.items():
            path = etc_ssh / f"ssh_host_{kind}_key"
            _write(path, private_key if private_key.endswith("\n") else private_key + "\n", 0o600)
            pub = maybe_public or _public_from_private(private_key)
            if pub:
                _write(etc_ssh / f"ssh_host_{kind}_key.pub", pub.strip() + "\n", 0o644)
            key_paths.append(f"/etc/ssh/{path.name}")
    # Hide the host's own host keys from the node: overlay whiteouts are 0/0 character devices.
    for host_key in Path("/etc/ssh").glob("ssh_host_*"):
        shadow = etc_ssh / host_key.name
        if not os.path.lexists(shadow):
            os.mknod(shadow, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    return key_paths


def sshd_config(address: str, port: int, key_paths: list[str]) -> str:
    lines = [
        f"ListenAddress {address}:{port}",
        *(f"HostKey {p}" for p in key_paths),
        "PidFile none",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "UseDNS no",
        "PrintMotd no",
        "MaxStartups 50:30:100",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
    ]
    return "\n".join(lines) + "\n"


def install_sshd(
    upper: Path, address: str, port: int, hostname: str, authorized_keys: list[str],
    host_keys: dict[str, tuple[str, str | None]],
) -> None:  # fmt: skip
    """Lay sshd's files into the node's upper layer, as cloud-init would have left them on a fresh
    server: host keys and ``sshd_config`` in /etc/ssh, root's authorized_keys, /etc/hostname."""
    etc_ssh = _real_dir(upper, "etc/ssh", 0o755)
    ssh_dir = _real_dir(upper, "root/.ssh", 0o700)
    key_paths = install_host_keys(etc_ssh, host_keys)
    _write(ssh_dir / "authorized_keys", "".join(k.strip() + "\n" for k in authorized_keys), 0o600)
    _write(_real_dir(upper, "etc", 0o755) / "hostname", hostname + "\n", 0o644)
    _write(etc_ssh / "sshd_config", sshd_config(address, port, key_paths), 0o644)
