"""The pinned SSH client: strict host-key checking against the key the node was given at birth.

Every connection uses a known_hosts file holding exactly one line, the node's pinned host key, and
``StrictHostKeyChecking=yes``: a host presenting any other key is refused by OpenSSH itself before
authentication. Failures are classified into the taxonomy codes the connect stage reports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nodewright.output_limits import SSH_STREAM_CAP, CappedStream
from nodewright.provisioning.deadline import end_marked
from nodewright.provisioning.target import SshTarget

log = logging.getLogger(__name__)

SSH_UNREACHABLE = "ssh_unreachable"
SSH_AUTH_FAILED = "ssh_auth_failed"
HOST_KEY_MISMATCH = "host_key_mismatch"

# OpenSSH's own wording, stable across releases.
_MISMATCH_MARKERS = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")
_AUTH_MARKERS = ("Permission denied", "Too many authentication failures")


DEADLINE_EXCEEDED = "deadline_exceeded"  # the taxonomy's code (jobs.errors) for a stage out of time

# ssh -o LogLevel=VERBOSE says so once the server accepted our key.
_LOGGED_IN_MARKER = "Authenticated to "
_TERM_GRACE_SECONDS = 1.0
_STDERR_GRACE_SECONDS = 0.5


@dataclass(frozen=True)
class SshFailure:
    code: str
    message: str

    @property
    def retryable(self) -> bool:
        return self.code in (SSH_UNREACHABLE, DEADLINE_EXCEEDED)


@dataclass(frozen=True)
class SshResult:
    """A command's outcome: stdout and stderr capped (``output_limits.SSH_STREAM_CAP`` each, the cut
    marked), ssh's own log apart; ``timed_out`` when we ended it (its returncode is then 255)."""

    returncode: int
    stdout: str
    stderr: str
    ssh_log: str = ""
    timed_out: bool = False

    @property
    def logged_in(self) -> bool:
        """The server accepted our key (not seen by a command that used a shared master)."""
        return _LOGGED_IN_MARKER in self.ssh_log

    def failure(self) -> SshFailure | None:
        """``None`` when ssh connected and the command ended (its status is its own)."""
        if self.timed_out and self.logged_in:
            return SshFailure(
                DEADLINE_EXCEEDED, "logged in, but the command did not finish: " + _last_line(self.stderr)
            )
        if self.logged_in and not self.timed_out:
            return None  # past login, even a 255 is the node's command's own status
        # ssh's own words are in its log (-E); stderr is the node's and may imitate them.
        return classify(self.returncode, self.ssh_log if self.ssh_log else self.stderr)


def _last_line(text: str) -> str:
    text = text.strip()
    return (text.splitlines()[-1] if text else "")[:300]


def read_capped(process: subprocess.Popen[bytes], end: float) -> tuple[list[CappedStream], bool]:
    """Read the process's stdout and stderr as they come, capped, until both close or ``end``
    (monotonic) passes; ``(streams, timed_out)``. Once stdout closed and the process exited, stderr
    gets a short grace: a ControlPersist master that ssh put in the background may hold it open."""
    assert process.stdout is not None and process.stderr is not None
    streams = [CappedStream(SSH_STREAM_CAP), CappedStream(SSH_STREAM_CAP)]
    by_fd = {process.stdout.fileno(): streams[0], process.stderr.fileno(): streams[1]}
    stdout_fd = process.stdout.fileno()
    open_fds = set(by_fd)
    grace_end: float | None = None
    with selectors.DefaultSelector() as selector:
        for fd in by_fd:
            selector.register(fd, selectors.EVENT_READ)
        while open_fds:
            now = time.monotonic()
            if now >= end:
                return streams, True
            if stdout_fd not in open_fds and process.poll() is not None:
                grace_end = grace_end or now + _STDERR_GRACE_SECONDS
                if now >= grace_end:
                    break
            limit = min(end, grace_end or end) - now
            for key, _mask in selector.select(timeout=min(limit, 0.5)):
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    by_fd[key.fd].feed(chunk)
                else:
                    selector.unregister(key.fd)
                    open_fds.discard(key.fd)
    return streams, False


def end_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's group (it leads a session of its own), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            process.wait(timeout=_TERM_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # ssh ended; what it started in its group may not have
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        return


def capped_file_text(path: str) -> str:
    with open(path, "rb") as handle:
        stream = CappedStream(SSH_STREAM_CAP)
        while chunk := handle.read(1 << 16):
            stream.feed(chunk)
    return stream.text()


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
        kex_algorithms: str = "",
    ):
        """``multiplex``: commands share one master connection (one handshake for many commands);
        the caller ends it with :meth:`close`. ``workdir`` must be short enough for its socket.
        ``kex_algorithms``: OpenSSH's ``KexAlgorithms`` (empty: its default)."""
        self.target = target
        self.tag = dict(tag or {})
        self.agent_socket = agent_socket
        self.known_hosts = workdir / "known_hosts"
        self.known_hosts.write_text(target.known_hosts_line())
        self.connect_timeout = connect_timeout
        self.control_path = workdir / "cm" if multiplex else None
        self.kex_algorithms = kex_algorithms

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
            # Never replaces the caller's own outcome. The master erased its environment (and so
            # the job's mark) when it went to the background: found by its title, which names
            # its control path, it is ended here; ControlPersist bounds it anyway.
            log.warning("could not end the SSH master connection: %s", exc)
            end_marked(secrets.token_hex(8), paths=(str(self.control_path),), grace=1.0)
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
            *(["-o", f"KexAlgorithms={self.kex_algorithms}"] if self.kex_algorithms else []),
            "-F", "/dev/null",
        ]  # fmt: skip

    def run(self, command: str, *, timeout: float = 60, deadline: float | None = None) -> SshResult:
        """Run ``command``; ends it (its whole process group) after ``timeout`` seconds or at the
        monotonic ``deadline``, whichever comes first. Each stream is kept capped (output_limits)."""
        started = time.monotonic()
        end = started + timeout
        if deadline is not None:
            end = min(end, deadline)
        with tempfile.NamedTemporaryFile(dir=self.known_hosts.parent, prefix="ssh-log-") as ssh_log:
            argv = [
                ssh_binary(),
                *self.options(),
                *self.multiplex_options(),
                # ssh's own messages go to a file of their own, at a level that says "Authenticated":
                # the remote command's stderr stays its own, and a command that never ends is told
                # apart from a host that never let us in.
                "-o", "LogLevel=VERBOSE",
                "-E", ssh_log.name,
                "-p", str(self.target.port),
                "-l", self.target.user,
                self.target.address,
                command,
            ]  # fmt: skip
            env = {"PATH": os.defpath, "SSH_AUTH_SOCK": str(self.agent_socket), "LC_ALL": "C", **self.tag}
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # so that a deadline ends ssh and all it started
            )
            streams, timed_out = read_capped(process, end)
            if timed_out:
                end_process_group(process)
            process.wait()
            log_text = capped_file_text(ssh_log.name)
        stdout, stderr = (stream.text() for stream in streams)
        if timed_out:
            waited = end - started
            stderr = (stderr + "\n" if stderr else "") + f"ssh: command timed out after {waited:.3g} s"
        return SshResult(
            returncode=255 if timed_out else int(process.returncode),
            stdout=stdout,
            stderr=stderr,
            ssh_log=log_text,
            timed_out=timed_out,
        )

    def wait_until_reachable(
        self, *, deadline: float, interval: float = 0.5, should_stop: Callable[[], bool] | None = None
    ) -> tuple[int, SshFailure | None]:
        """Try ``true`` until it works, a terminal failure, or the monotonic ``deadline``.

        Returns ``(tries, failure)``: ``failure`` is ``None`` on success, the terminal failure
        (host key mismatch, authentication) at once, or at the deadline the last failure: unreachable,
        or ``deadline_exceeded`` when the node let us in but ``true`` never finished (a login shell
        that hangs or floods, a process holding the session open).
        """
        tries = 0
        while True:
            tries += 1
            result = self.run("true", timeout=30.0, deadline=max(deadline, time.monotonic() + 1.0))
            failure = result.failure()
            if failure is None or not failure.retryable:
                return tries, failure
            if should_stop is not None and should_stop():
                return tries, failure
            if time.monotonic() + interval >= deadline:
                return tries, failure
            time.sleep(interval)
