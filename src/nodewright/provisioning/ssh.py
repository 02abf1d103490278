"""The pinned SSH client: strict host-key checking against the key the node was given at birth.

Every connection uses a known_hosts file holding exactly one line, the node's pinned host key, and
``StrictHostKeyChecking=yes``: a host presenting any other key is refused by OpenSSH itself before
authentication. Failures are classified into the taxonomy codes the connect stage reports.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nodewright.provisioning.target import SshTarget

log = logging.getLogger(__name__)

SSH_UNREACHABLE = "ssh_unreachable"
SSH_AUTH_FAILED = "ssh_auth_failed"
HOST_KEY_MISMATCH = "host_key_mismatch"

# OpenSSH's own wording, stable across releases.
_MISMATCH_MARKERS = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")
_AUTH_MARKERS = ("Permission denied", "Too many authentication failures")


@dataclass(frozen=True)
class SshFailure:
    code: str
    message: str

    @property
    def retryable(self) -> bool:
        return self.code == SSH_UNREACHABLE


def classify(returncode: int, stderr: str) -> SshFailure | None:
    """``None`` when ssh connected and authenticated (the remote command's status is its own)."""
    if returncode != 255:
        return None
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "ssh exited 255"
    if any(marker in text for marker in _MISMATCH_MARKERS):
        return SshFailure(HOST_KEY_MISMATCH, "the host presented a key other than the pinned one")
    if any(marker in text for marker in _AUTH_MARKERS):
        return SshFailure(SSH_AUTH_FAILED, last[:300])
    return SshFailure(SSH_UNREACHABLE, last[:300])


def ssh_binary() -> str:
    path = shutil.which("ssh", path=os.environ.get("PATH", os.defpath) + ":/usr/bin:/bin")
    if path is None:
        raise RuntimeError("ssh is not installed (Debian package openssh-client)")
    return path


def end_master(control_path: Path) -> None:
    """Ask the ControlPersist master listening on ``control_path`` to exit."""
    subprocess.run(
        [
            ssh_binary(),
            "-F",
            "/dev/null",
            "-o",
            f"ControlPath={control_path}",
            "-O",
            "exit",
            "nodewright-master",
        ],
        capture_output=True,
        timeout=10,
        check=False,
        env={"PATH": os.defpath},
        stdin=subprocess.DEVNULL,
    )


class PinnedSsh:
    """Runs commands on one target through an agent socket, with the host key pinned."""

    def __init__(
        self,
        target: SshTarget,
        agent_socket: Path,
        workdir: Path,
        *,
        connect_timeout: int = 5,
        tag: Mapping[str, str] | None = None,
        multiplex: bool = False,
    ):
        """``multiplex``: commands share one master connection (one handshake for many commands);
        the caller ends it with :meth:`close`. ``workdir`` must be short enough for its socket."""
        self.target = target
        self.tag = dict(tag or {})
        self.agent_socket = agent_socket
        self.known_hosts = workdir / "known_hosts"
        self.known_hosts.write_text(target.known_hosts_line())
        self.connect_timeout = connect_timeout
        self.control_path = workdir / "cm" if multiplex else None

    def multiplex_options(self) -> list[str]:
        if self.control_path is None:
            return []
        return [
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self.control_path}",
            "-o",
            "ControlPersist=60s",
        ]

    def close(self) -> None:
        """End the master connection, if one runs (it would otherwise outlive the caller by a minute)."""
        if self.control_path is None or not self.control_path.exists():
            return
        try:
            end_master(self.control_path)
        except (OSError, subprocess.TimeoutExpired) as exc:
            # Never replaces the caller's own outcome: the engine kills the job's marked processes
            # (the master among them) when the attempt ends, and ControlPersist bounds it anyway.
            log.warning("could not end the SSH master connection: %s", exc)
            return
        # The master acknowledges "exit" before it removes its socket and ends.
        gone_by = time.monotonic() + 2.0
        while self.control_path.exists() and time.monotonic() < gone_by:
            time.sleep(0.02)

    def options(self) -> list[str]:
        """Options shared with Ansible's ssh connection (see provisioning.environment)."""
        return [
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "CheckHostIP=no",
            "-o", "HostKeyAlgorithms=" + self.target.host_public_key.split()[0],
            "-o", "BatchMode=yes",
            "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no",
            "-o", "IdentityFile=none",
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-F", "/dev/null",
        ]  # fmt: skip

    def run(self, command: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [
            ssh_binary(),
            *self.options(),
            *self.multiplex_options(),
            "-p", str(self.target.port),
            "-l", self.target.user,
            self.target.address,
            command,
        ]  # fmt: skip
        env = {"PATH": os.defpath, "SSH_AUTH_SOCK": str(self.agent_socket), "LC_ALL": "C", **self.tag}
        # stderr goes to a file, not a pipe: a master that ssh puts in the background inherits it,
        # and OpenSSH releases before 8 kept that stderr open (the run would wait for its EOF).
        with tempfile.TemporaryFile() as stderr:
            try:
                done = subprocess.run(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=env,
                    timeout=timeout,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                return subprocess.CompletedProcess(
                    argv, 255, "", f"ssh: command timed out after {timeout:g} s"
                )
            stderr.seek(0)
            errors = stderr.read(1 << 20).decode(errors="replace")
        return subprocess.CompletedProcess(
            argv, done.returncode, done.stdout.decode(errors="replace"), errors
        )

    def wait_until_reachable(
        self, *, deadline: float, interval: float = 0.5, should_stop: Callable[[], bool] | None = None
    ) -> tuple[int, SshFailure | None]:
        """Try ``true`` until it works, a terminal failure, or the monotonic ``deadline``.

        Returns ``(tries, failure)``: ``failure`` is ``None`` on success, the terminal failure
        (host key mismatch, authentication) at once, or the last unreachable failure at the deadline.
        """
        tries = 0
        while True:
            tries += 1
            result = self.run("true", timeout=max(1.0, min(30.0, deadline - time.monotonic())))
            failure = classify(result.returncode, result.stderr)
            if failure is None or not failure.retryable:
                return tries, failure
            if should_stop is not None and should_stop():
                return tries, failure
            if time.monotonic() + interval >= deadline:
                return tries, failure
            time.sleep(interval)
