"""The private agent holds exactly the client key: an ed25519 key handed over the agent's socket
(our own add-identity message) and any other key through ``ssh-add -``; the real ssh-agent and
ssh-add/ssh-keygen judge it (listing, and a signature made by the agent checked with the public key)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from nodewright.provisioning.agent import AgentError, ssh_agent
from nodewright.security.secret import Secret
from tests.support.system import require_binary


def openssh_pair(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


@pytest.mark.parametrize(
    "make", [ed25519.Ed25519PrivateKey.generate, lambda: rsa.generate_private_key(65537, 2048)],
    ids=["ed25519 over the socket", "rsa through ssh-add"],
)  # fmt: skip
def test_the_agent_holds_the_key_and_signs_with_it(tmp_path: Path, make: object) -> None:
    require_binary("ssh-agent")
    keygen = require_binary("ssh-keygen")
    private, public = openssh_pair(make())  # type: ignore[operator]
    (tmp_path / "key.pub").write_text(public + "\n")
    (tmp_path / "data").write_text("watched\n")
    with ssh_agent(Secret(private), directory=tmp_path) as sock:
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
        listed = subprocess.run([require_binary("ssh-add"), "-L"], env=env, capture_output=True, text=True)
        assert [line.split()[:2] for line in listed.stdout.splitlines()] == [public.split()[:2]]
        sign = [keygen, "-Y", "sign", "-n", "file", "-f", str(tmp_path / "key.pub"), str(tmp_path / "data")]
        signed = subprocess.run(sign, env=env, capture_output=True, text=True)
        assert signed.returncode == 0, signed.stderr
    (tmp_path / "allowed").write_text(f"me {public}\n")
    with open(tmp_path / "data", "rb") as data:
        verify = [keygen, "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "me", "-n", "file", "-s",
                  str(tmp_path / "data.sig")]  # fmt: skip
        verified = subprocess.run(verify, stdin=data, capture_output=True)
    assert verified.returncode == 0, verified.stderr
    assert list(tmp_path.glob("nw-agent-*")) == []  # the agent's directory is gone with it


def test_a_malformed_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    require_binary("ssh-agent")
    bad = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n"
    bad += "-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(AgentError) as raised, ssh_agent(Secret(bad), directory=tmp_path):
        pass
    assert "c2VjcmV0" not in str(raised.value)
