"""Where and how to reach a node over SSH, with the host key it must present."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass


class InvalidHostKey(ValueError):
    pass


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
        ipaddress.ip_address(self.address)  # an address, never a name a resolver could redirect
        if not 0 < self.port < 65536:
            raise ValueError(f"SSH port {self.port} is out of range")
        if not self.user or not self.user.replace("-", "").replace("_", "").isalnum():
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
