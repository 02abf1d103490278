"""A private ssh-agent per job: the client key lives in the agent's memory, never in a file.

The key reaches the agent through ``ssh-add -`` on a pipe. The agent runs in the foreground (``-D``)
as our own child, in a 0700 directory of its own, so it ends with the job's process tree and its
socket is reachable only by this user.
"""

from __future__ import annotations

import os
import shutil
import socket as socket_
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from nodewright.security.secret import Secret


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
            with socket_.socket(socket_.AF_UNIX, socket_.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                    return
                except OSError:
                    pass
        time.sleep(0.005)


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
        _wait_listening(socket, agent, time.monotonic() + 5)
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
