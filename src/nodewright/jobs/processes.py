"""Tie every process a job starts to the job, so a killed or lost attempt leaves nothing running.

A job's processes are: its child (process mode), and whatever the handler starts (ansible-playbook,
ssh, and their own children, which may start their own session with ``setsid`` and so escape
process-group kills). Three mechanisms together cover them:

- **The child dies with its worker**: the worker passes its pid in; the child sets
  ``PR_SET_PDEATHSIG(SIGKILL)`` first thing and then checks that its parent is still that pid. A worker
  killed during the child's start-up (before the signal was armed) is caught by the check, one killed
  later by the kernel. Nothing depends on a watcher thread noticing in time.
- **Every descendant carries a marker**: the child names itself ``nw<db>.<job id>`` (``PR_SET_NAME``)
  and puts ``NODEWRIGHT_JOB_PROCESS=<db>:<job>:<attempt>:<worker pid>:<worker start time>`` into its
  environment, which every process it starts inherits, setsid or not. In thread mode handlers pass
  ``ctx.process_env()`` to their subprocesses for the same effect. ``<db>`` names the database
  (:func:`database_tag`): job ids are per database, and two installations on one machine (staging
  beside production, a test run beside either) both have a job 7; cleaning up one's must not kill
  the other's.
- **Whoever comes next kills by marker**: the worker kills the job's marked processes when an attempt
  ends (any way), before it starts the next attempt of a job (what a previous, lost attempt left), and
  its monitor kills marked processes whose worker is gone (same pid and start time no longer alive).

Scanning ``/proc`` works anywhere Linux runs, unprivileged and without cgroup v2 delegation (our
containers mount cgroup v1 plus a read-only-in-practice unified tree); a cgroup per attempt would
also catch a process that scrubs its environment (``env -i``), which this does not. Processes on
other machines are out of reach by design: a job's processes run where its child ran.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.engine import make_url

MARKER_ENV = "NODEWRIGHT_JOB_PROCESS"
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PROC = "/proc"


def database_tag(database_url: str) -> str:
    """A short name of the database, the same in every process of an installation."""
    url = make_url(database_url)
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        url = url.set(drivername="sqlite", database=os.path.realpath(url.database))  # one file, one tag
    rendered = url.render_as_string(hide_password=True)
    return hashlib.sha256(rendered.encode()).hexdigest()[:4]


@dataclass(frozen=True)
class Marker:
    database: str
    job_id: int
    attempt: int
    worker_pid: int
    worker_start: int

    def __str__(self) -> str:
        return f"{self.database}:{self.job_id}:{self.attempt}:{self.worker_pid}:{self.worker_start}"

    @classmethod
    def parse(cls, value: str) -> Marker | None:
        database, _, rest = value.partition(":")
        try:
            job_id, attempt, pid, start = (int(part) for part in rest.split(":"))
        except ValueError:
            return None
        return cls(database, job_id, attempt, pid, start)

    @classmethod
    def for_attempt(cls, database: str, job_id: int, attempt: int) -> Marker:
        pid = os.getpid()
        return cls(database, job_id, attempt, pid, start_time(pid) or 0)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if number == 0:
            return text


def child_name(database: str, job_id: int) -> str:
    """The job child's process name: 15 bytes hold ``nw``, the tag, a dot and 8 base-36 digits."""
    return f"nw{database}.{_base36(job_id)}"[:15]


def _prctl(option: int, arg: int | bytes) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0)) == 0


def tie_to_parent(parent_pid: int, marker: Marker) -> bool:
    """In a job child, first thing: die with ``parent_pid``. False if it is already gone."""
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    _prctl(_PR_SET_NAME, child_name(marker.database, marker.job_id).encode())
    # The re-check closes the window between fork and prctl: had the parent died in it, we were
    # reparented and the death signal will never come.
    return os.getppid() == parent_pid


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a pid from its reuse)."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":  # exited, not yet reaped: gone for our purposes (and it cannot be killed)
        return None
    return int(fields[19])


def alive(pid: int, started: int) -> bool:
    return start_time(pid) == started


def _pids() -> Iterator[int]:
    with contextlib.suppress(OSError):
        for entry in os.scandir(_PROC):
            if entry.name.isdigit():
                yield int(entry.name)


def _marker_of(pid: int) -> Marker | None:
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as handle:
            environ = handle.read()
    except OSError:
        return None
    prefix = MARKER_ENV.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return Marker.parse(item[len(prefix) :].decode(errors="replace"))
    return None


def _comm(pid: int) -> str:
    try:
        with open(f"{_PROC}/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def job_processes(database: str | None = None, job_id: int | None = None) -> dict[int, Marker | None]:
    """Pids of the job's processes on this machine (every job's of every database when ``job_id``
    is None); ``database`` is the :func:`database_tag` the job id belongs to.

    A child is found by its name (its own environment predates the marker), descendants by marker.
    """
    found: dict[int, Marker | None] = {}
    me = os.getpid()
    for pid in _pids():
        if pid == me or start_time(pid) is None:
            continue
        marker = _marker_of(pid)
        if marker is not None and (job_id is None or (marker.database, marker.job_id) == (database, job_id)):
            found[pid] = marker
        elif job_id is not None and database is not None and _comm(pid) == child_name(database, job_id):
            found[pid] = None
    return found


def _kill_until_gone(rescan: Callable[[], dict[int, Marker | None]]) -> int:
    killed = 0
    pids = rescan()
    for _ in range(20):  # a process forking while we kill it shows up in the next scan
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        pids = rescan()
    return killed


def kill_job_processes(database: str, job_id: int, *, keep: int | None = None) -> int:
    """SIGKILL every process of the database's job on this machine (but ``keep``); returns how many."""

    def scan() -> dict[int, Marker | None]:
        return {pid: m for pid, m in job_processes(database, job_id).items() if pid != keep}

    return _kill_until_gone(scan)


def reap_orphans() -> int:
    """SIGKILL marked processes whose worker is gone (killed with SIGKILL, say); returns how many."""

    def scan() -> dict[int, Marker | None]:
        return {
            pid: m
            for pid, m in job_processes().items()
            if m is not None and not alive(m.worker_pid, m.worker_start)
        }

    return _kill_until_gone(scan)


# Jobs of this process that handed out a marked environment (thread mode): only those need a scan
# of /proc when their attempt ends, which keeps the scan off the hot path of every other job.
_marked: set[tuple[str, int]] = set()


def take_marked(database: str, job_id: int) -> bool:
    if (database, job_id) in _marked:
        _marked.discard((database, job_id))
        return True
    return False


def process_env(marker: Marker, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a handler's subprocess that ties it (and its descendants) to the job."""
    _marked.add((marker.database, marker.job_id))
    env = dict(os.environ)
    env.update(extra or {})
    env[MARKER_ENV] = str(marker)
    return env
