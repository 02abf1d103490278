"""The SSH key the demo puts on its node for the operator: theirs when they have one, else one made
for them in the data directory, so that the ``nodewright nodes ssh demo-1`` it prints lets them in."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nodewright.providers.acquisition import generate_host_key

# ssh's own default identities, in the order ssh tries them: the one found is the one ssh offers.
DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa", "id_ed25519_sk", "id_ecdsa_sk")
DEMO_KEY_FILE = "demo_ed25519"
COMMENT = "nodewright-demo"


@dataclass(frozen=True)
class OperatorKey:
    public_file: Path
    identity: Path | None  # the private key to name with ``-i``; None when ssh finds it by itself
    made: bool  # made by this start


def find_own(home: Path, read_public: Callable[[Path], str]) -> Path | None:
    """The operator's default identity (its ``.pub`` beside the private key, and readable as one
    OpenSSH public key line by ``read_public``), or None."""
    for name in DEFAULT_IDENTITIES:
        private, public = home / ".ssh" / name, home / ".ssh" / f"{name}.pub"
        if not (private.is_file() and public.is_file()):
            continue
        try:
            read_public(public)
        except ValueError:
            continue
        return public
    return None


def demo_key(data_dir: Path) -> OperatorKey:
    """The key made for the operator in the data directory (ed25519, the private half 0600), made
    on first use and the same on every later start."""
    private = data_dir.absolute() / DEMO_KEY_FILE  # printed: it must work from any directory
    public = private.with_name(f"{DEMO_KEY_FILE}.pub")
    if private.is_file() and public.is_file():
        return OperatorKey(public, private, made=False)
    pair = generate_host_key()
    for path in (private, public):
        path.unlink(missing_ok=True)  # half a pair from an interrupted start
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(pair.private_openssh.reveal())
    public.write_text(f"{' '.join(pair.public_openssh.split()[:2])} {COMMENT}\n")
    return OperatorKey(public, private, made=True)


def operator_key(home: Path, data_dir: Path, read_public: Callable[[Path], str]) -> OperatorKey:
    own = find_own(home, read_public)
    if own is not None:
        return OperatorKey(own, None, made=False)
    return demo_key(data_dir)
