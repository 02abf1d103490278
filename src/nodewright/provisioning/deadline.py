"""A stage's wall-clock deadline, enforced by us on every process the stage started.

ansible-runner's own ``job_timeout`` is checked between reads of ansible-playbook's output, so a run
stuck in a long read (a node flooding its output) or in a module that never returns outlived it by
minutes. ``ProcessDeadline`` does not depend on the run cooperating: a thread of its own waits for
the deadline, then ends every process carrying the run's mark in its environment (ansible-playbook,
its forks, ssh, and its ControlPersist master by the control directory in its title, whichever
session they put themselves in), first with
SIGTERM, then, after a grace period, with SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from types import TracebackType

log = logging.getLogger(__name__)

RUN_MARK_ENV = "NODEWRIGHT_RUN"
TERM_GRACE_SECONDS = 2.0


def marked_processes(mark: str, paths: tuple[str, ...] = ()) -> list[int]:
    """Pids on this machine whose environment carries ``RUN_MARK_ENV=mark``, or whose command line
    names one of ``paths``: ssh's ControlPersist master rewrites its argv and environ area
    (setproctitle, ``ssh: <control path> [mux]``), so its mark is gone and only the run's own
    control directory, in the title, still tells it is the run's."""
    needle = f"{RUN_MARK_ENV}={mark}".encode()
    titles = [p.encode() for p in paths]
    found = []
    me = os.getpid()
    for pid in _pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(pid)
            continue
        if titles:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    cmdline = handle.read()
            except OSError:
                continue
            if any(title in cmdline for title in titles):
                found.append(pid)
    return found


def _pids() -> Iterator[int]:
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                yield int(entry.name)


def end_marked(mark: str, *, grace: float = TERM_GRACE_SECONDS, paths: tuple[str, ...] = ()) -> int:
    """SIGTERM every process with ``mark`` (or ``paths``, see :func:`marked_processes`), SIGKILL
    those still there after ``grace``; how many."""
    pids = marked_processes(mark, paths)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    gone_by = time.monotonic() + grace
    while pids and time.monotonic() < gone_by:
        time.sleep(0.05)
        pids = [pid for pid in pids if _alive(pid)]
    for _ in range(20):  # a process forking while we kill it shows up in the next scan
        left = marked_processes(mark, paths)
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"  # a zombie has ended; only its parent's wait is missing


class ProcessDeadline:
    """Marks a run's processes and ends them all once ``deadline`` (``time.monotonic()``) passes.

    Put :attr:`env` into the environment of what the run starts; use it as a context manager around
    the run; :attr:`passed` tells afterwards whether the deadline ended it.
    """

    def __init__(
        self, deadline: float, *, grace: float = TERM_GRACE_SECONDS, paths: tuple[str, ...] = ()
    ) -> None:
        self.deadline = deadline
        self.grace = grace
        self.paths = paths
        self.mark = secrets.token_hex(8)
        self.passed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stage-deadline", daemon=True)

    @property
    def env(self) -> dict[str, str]:
        return {RUN_MARK_ENV: self.mark}

    def _watch(self) -> None:
        if self._done.wait(max(0.0, self.deadline - time.monotonic())):
            return
        self.passed = True
        ended = end_marked(self.mark, grace=self.grace, paths=self.paths)
        log.info("stage deadline passed: ended %d process(es) of the run", ended)

    def __enter__(self) -> ProcessDeadline:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join()
