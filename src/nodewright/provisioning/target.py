"""Where and how to reach a node over SSH, with the host key it must present."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass


class InvalidHostKey(ValueError):
    pass


# A POSIX account name (useradd's default rule): never an option (``-o...``), never non-ASCII.
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def plain_address(address: str) -> str:
    """The canonical text of an IP address, or ``ValueError``.

    An IPv6 scope id (``fe80::1%...``) is free text to :mod:`ipaddress` (spaces, newlines, quotes):
    it would reach the known_hosts line, ssh's destination and the command shown to operators, so a
    scoped address is refused; a public server address never has one."""
    ip = ipaddress.ip_address(address)  # an address, never a name a resolver could redirect
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        raise ValueError(f"SSH address {address!r} has a scope id; a public address has none")
    return str(ip)


def parse_public_key(line: str) -> tuple[str, bytes]:
    """``(type, blob)`` of an OpenSSH public key line (``ssh-ed25519 AAAA... [comment]``)."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise InvalidHostKey("a public key is '<type> <base64>'")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise InvalidHostKey("the key data is not base64") from None
    # The blob starts with its own type name, length-prefixed: a key of one type in a line of another
    # is a corrupt or spoofed entry.
    if len(blob) < 4 or blob[4 : 4 + int.from_bytes(blob[:4], "big")] != parts[0].encode():
        raise InvalidHostKey("the key data does not match its type")
    return parts[0], blob


def fingerprint(public_key: str) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    _, blob = parse_public_key(public_key)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class SshTarget:
    """Provider-agnostic: what the acquire stage hands to connect, provision and verify."""

    address: str
    port: int
    user: str
    host_public_key: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", plain_address(self.address))
        if isinstance(self.port, bool) or not 0 < self.port < 65536:
            raise ValueError(f"SSH port {self.port} is out of range")
        if not USER_RE.match(self.user):
            raise ValueError(f"SSH user {self.user!r} is not a plain account name")
        key_type, _ = parse_public_key(self.host_public_key)
        object.__setattr__(self, "host_public_key", f"{key_type} {self.host_public_key.split()[1]}")

    @property
    def host_pattern(self) -> str:
        """How OpenSSH names this host in known_hosts (``[addr]:port`` for a non-default port)."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def known_hosts_line(self) -> str:
        return f"{self.host_pattern} {self.host_public_key}\n"

    @property
    def host_key_fingerprint(self) -> str:
        return fingerprint(self.host_public_key)
