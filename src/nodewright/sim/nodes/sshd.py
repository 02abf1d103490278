"""A node's OpenSSH server: host keys, root's authorized keys and ``sshd_config``, as an Ubuntu
cloud image has them after cloud-init ran."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodewright.sim.nodes.layers import _is_regular, _is_whiteout, _real_dir, _write

if TYPE_CHECKING:
    from nodewright.sim.nodes.supervisor import NodeSpec


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
    """Write the host keys cloud-init was given (or keep the node's own, or make one); returns the
    ``HostKey`` paths as the node sees them. The host's own are not in the image base."""
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
    return key_paths


def sshd_config(port: int, key_paths: list[str]) -> str:
    """Ubuntu's sshd_config as on a cloud image: PAM on (a user with a locked password logs in by
    key), settings in sshd_config.d, listening on every address of the node's own network."""
    lines = [
        "Include /etc/ssh/sshd_config.d/*.conf",
        *([f"Port {port}"] if port != 22 else []),
        *(f"HostKey {p}" for p in key_paths),
        "KbdInteractiveAuthentication no",
        "UsePAM yes",
        "X11Forwarding yes",
        "PrintMotd no",
        "UseDNS no",
        "MaxStartups 50:30:100",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
    ]
    return "\n".join(lines) + "\n"


# Ubuntu's login PAM stack needs pam_loginuid, which a node (no CAP_AUDIT_CONTROL) cannot use:
# optional here, as in Ubuntu's own container images.
PAM_SSHD = """@include common-auth
account    required     pam_nologin.so
@include common-account
session    optional     pam_loginuid.so
session    optional     pam_keyinit.so force revoke
@include common-session
session    optional     pam_motd.so noupdate
session    optional     pam_mail.so standard noenv
session    required     pam_limits.so
session    required     pam_env.so
session    required     pam_env.so user_readenv=1 envfile=/etc/default/locale
@include common-password
"""


# /etc/hosts as cloud-init's manage_etc_hosts writes it: sudo resolves the node's own name.
HOSTS = """127.0.1.1 {hostname} {hostname}
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
"""


def install_sshd(upper: Path, spec: NodeSpec, port: int, first_boot: bool) -> None:
    """Lay sshd's files into the node's upper layer at first boot, as cloud-init leaves them on a
    fresh server: host keys and ``sshd_config`` in /etc/ssh, root's authorized_keys, /etc/hostname.
    Later boots keep whatever the node changed (hardening survives a reboot)."""
    etc_ssh = _real_dir(upper, "etc/ssh", 0o755)
    existing = [p for p in etc_ssh.glob("ssh_host_*_key") if not _is_whiteout(p)]
    if not first_boot and _is_regular(etc_ssh / "sshd_config") and existing:
        return
    ssh_dir = _real_dir(upper, "root/.ssh", 0o700)
    key_paths = install_host_keys(etc_ssh, spec.host_keys)
    _write(ssh_dir / "authorized_keys", "".join(k.strip() + "\n" for k in spec.authorized_keys), 0o600)
    etc = _real_dir(upper, "etc", 0o755)
    _write(etc / "hostname", spec.hostname + "\n", 0o644)
    _write(etc / "hosts", HOSTS.format(hostname=spec.hostname), 0o644)
    _write(etc_ssh / "sshd_config", sshd_config(port, key_paths), 0o644)
    conf_d = _real_dir(upper, "etc/ssh/sshd_config.d", 0o755, opaque=True)
    if not spec.root_password:
        _write(conf_d / "60-cloudimg-settings.conf", "PasswordAuthentication no\n", 0o644)
    else:  # created without SSH keys: root logs in with the password the API returned
        _write(conf_d / "50-cloud-init.conf", "PasswordAuthentication yes\nPermitRootLogin yes\n", 0o644)
    _write(_real_dir(upper, "etc/pam.d", 0o755) / "sshd", PAM_SSHD, 0o644)


def address_taken(address: str, port: int, timeout: float = 0.1) -> str | None:
    """Whether something already holds ``address`` before the node takes it: an answer (a
    connection or a refusal) means a host is there; silence means the address is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            return f"address {address} is already in use (another host answers there)"
        except OSError:
            return None
    return f"address {address} is already in use (another host answers on port {port})"


def connection_arrived(pid: int, client_port: int) -> bool:
    """Whether a TCP connection from the host's ``client_port`` is in the network namespace of
    process ``pid`` (the node's launcher): proof that the node itself, with its own sshd and host
    key, answered at its address, without a full SSH handshake per boot."""
    wanted = f":{client_port:04X}"
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 2 and fields[2].endswith(wanted):
                return True
    return False
