"""A private ssh-agent per job: the client key lives in the agent's memory, never in a file.

An ed25519 key (what nodewright generates) reaches the agent over its socket, in the agent
protocol's own add-identity message (draft-miller-ssh-agent, SSH_AGENTC_ADD_IDENTITY), written here:
no ``ssh-add`` process per job (~4 ms of CPU a watch check used to spend). Any other key goes
through ``ssh-add -`` on a pipe. The agent runs in the foreground (``-D``) as our own child, in a
0700 directory of its own, so it ends with the job's process tree and its socket is reachable only
by this user.
"""

from __future__ import annotations

import os
import shutil
import socket as socket_module
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodewright.security.secret import Secret

_ADD_IDENTITY, _SUCCESS = 17, 6  # SSH2_AGENTC_ADD_IDENTITY, SSH_AGENT_SUCCESS


class AgentError(RuntimeError):
    pass


def _binary(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", os.defpath) + ":/usr/bin:/bin")
    if path is None:
        raise AgentError(f"{name} is not installed (Debian package openssh-client)")
    return path


def _wait_listening(path: Path, agent: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the agent accepts connections: its socket file appears at bind(), a moment before
    listen(), and a client in between is refused (seen on a loaded machine)."""
    while True:
        if agent.poll() is not None or time.monotonic() > deadline:
            raise AgentError("ssh-agent did not start")
        if path.exists():
            with socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                    return
                except OSError:
                    pass
        time.sleep(0.005)


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _ed25519(key: Secret) -> Ed25519PrivateKey | None:
    try:
        private = serialization.load_ssh_private_key(key.reveal().encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None  # ssh-add says what is wrong with it, without the key
    return private if isinstance(private, Ed25519PrivateKey) else None


def _add_ed25519(socket: Path, private: Ed25519PrivateKey, deadline: float) -> None:
    """Hand the key over; ssh-agent creates its socket (bind) a moment before it listens, so a
    refused connection is tried again until the monotonic ``deadline``."""
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    body = bytes([_ADD_IDENTITY]) + _string(b"ssh-ed25519") + _string(public) + _string(seed + public)
    body += _string(b"nodewright")
    while True:
        conn = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
        conn.settimeout(10)
        try:
            conn.connect(str(socket))
            break
        except OSError as exc:
            conn.close()
            if not isinstance(exc, ConnectionRefusedError) or time.monotonic() > deadline:
                raise
            time.sleep(0.002)
    with conn:
        conn.sendall(struct.pack(">I", len(body)) + body)
        reply = b""
        while len(reply) < 5:
            chunk = conn.recv(5 - len(reply))
            if not chunk:
                break
            reply += chunk
    if len(reply) < 5 or reply[4] != _SUCCESS:
        raise AgentError("ssh-agent refused the client key")


@contextmanager
def ssh_agent(
    key: Secret, *, directory: Path | None = None, tag: Mapping[str, str] | None = None
) -> Iterator[Path]:
    """Yield the socket path of an agent holding ``key``; the agent is killed on exit.

    ``tag``: environment entries that mark the agent as a job's process (``ctx.process_env()``), so
    the job engine kills it should this process die before the ``finally`` runs."""
    workdir = Path(tempfile.mkdtemp(prefix="nw-agent-", dir=directory))
    os.chmod(workdir, 0o700)
    socket = workdir / "agent.sock"
    env = {"PATH": os.defpath, **(tag or {})}
    agent = subprocess.Popen(
        [_binary("ssh-agent"), "-D", "-a", str(socket)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 5
        _wait_listening(socket, agent, deadline)
        ed25519 = _ed25519(key)
        if ed25519 is not None:
            try:
                _add_ed25519(socket, ed25519, deadline)
            except OSError as exc:
                raise AgentError(
                    f"could not hand the client key to ssh-agent: {exc.strerror or exc}"
                ) from None
            yield socket
            return
        added = subprocess.run(
            [_binary("ssh-add"), "-q", "-"],
            input=key.reveal() if key.reveal().endswith("\n") else key.reveal() + "\n",
            capture_output=True,
            text=True,
            env={**env, "SSH_AUTH_SOCK": str(socket)},
            timeout=10,
            check=False,
        )
        if added.returncode != 0 and agent.poll() is not None:
            raise AgentError(f"ssh-agent ended (exit {agent.returncode}) before it took the client key")
        if added.returncode != 0:
            # ssh-add's message names the problem ("invalid format"), never the key itself.
            raise AgentError(f"the client key was refused by ssh-add: {added.stderr.strip()[:200]}")
        yield socket
    finally:
        agent.kill()
        agent.wait()
        shutil.rmtree(workdir, ignore_errors=True)
