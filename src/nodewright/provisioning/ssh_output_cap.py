"""The ``ssh`` that ``ansible-playbook`` runs: the real ssh, with its stdout and stderr capped.

Ansible's ssh connection reads a command's whole output into memory (a login shell printing 300 MiB
made ansible-playbook peak at 688 MB, and its byte-string appends took minutes). This wrapper sits in
between (``ANSIBLE_SSH_EXECUTABLE``): it passes each stream's head through as it arrives, keeps only
its tail in a bounded buffer, and at the end writes the cut marker and the tail. A module's result is
the last thing a remote command prints, so it survives in the tail even after a flood before it.

stdin is the real ssh's own (pipelined modules are written straight to it); the exit status is
ssh's (255 when it was killed, what Ansible takes for a lost connection). Run as
the launcher :func:`write_launcher` writes into the run's directory: an isolated interpreter
(``-I -S``, quick to start) that imports only this module and ``nodewright.output_limits``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from pathlib import Path
from types import FrameType

from nodewright.output_limits import ANSIBLE_STREAM_CAP, CappedStream

CHUNK = 1 << 16


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError:
            return  # the reader is gone (Ansible gave up): keep draining, write nothing more
        view = view[written:]


def pump(sources: dict[int, int], cap: int) -> None:
    """Copy each source fd to its destination fd, capped; returns once every source is at EOF."""
    streams = {fd: CappedStream(cap) for fd in sources}
    poller = select.poll()
    for fd in sources:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    open_fds = set(sources)
    while open_fds:
        try:
            ready = poller.poll()
        except InterruptedError:
            continue
        for fd, _event in ready:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            head = streams[fd].feed(chunk)
            if head:
                _write_all(sources[fd], head)
    for fd, stream in streams.items():
        _write_all(sources[fd], stream.rest())
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: ssh_output_cap.py REAL_SSH [ARGS...]\n")
        return 255
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the real ssh: stdin inherited, stdout and stderr into our pipes
        os.dup2(out_write, 1)
        os.dup2(err_write, 2)
        for fd in (out_read, out_write, err_read, err_write):
            os.close(fd)
        try:
            os.execv(argv[1], argv[1:])  # noqa: S606 (the real ssh, by absolute path)
        finally:
            os._exit(255)
    os.close(out_write)
    os.close(err_write)

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    pump({out_read: 1, err_read: 2}, ANSIBLE_STREAM_CAP)
    while True:
        try:
            _pid, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 255


def write_launcher(path: Path, real_ssh: str) -> Path:
    """An executable at ``path`` that runs :func:`main` in front of ``real_ssh``."""
    package_root = Path(__file__).resolve().parents[2]
    path.write_text(
        f"#!{sys.executable} -IS\n"
        "import sys\n"
        f"sys.path.insert(0, {str(package_root)!r})\n"
        "from nodewright.provisioning.ssh_output_cap import main\n"
        f"sys.exit(main([sys.argv[0], {real_ssh!r}, *sys.argv[1:]]))\n"
    )
    os.chmod(path, 0o700)
    return path
