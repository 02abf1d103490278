"""SQLite coordination between worker processes that does not need the database's write lock.

All processes of a SQLite installation share one machine, so they can also share a directory next to
the database file (``<database>.jobs/``). Two things live there:

- **Liveness** (``alive-<worker>``): each worker rewrites its file every third of its lease from a
  thread that never touches the database, listing the attempts it holds. On SQLite a lease renewal
  needs the database-wide write lock, so any process holding that lock past the lease (a paused
  worker, a long writer, a handler's long ``ctx.transaction()``) used to make every running job look
  dead; the sweep now also requires the owner's liveness file to be stale (or not to list the
  attempt) before it requeues: no attempt is requeued while its worker is alive and renewing.
- **Wake-up** (``wake-<pid>-<n>``): each worker binds an abstract-namespace datagram socket named
  after its file there; a commit that makes a job claimable sends one byte to every other worker,
  so a standalone ``nodewright worker`` starts a job right away instead of at its next poll.

Both are best effort on top of the database: a missing directory or a failed send changes nothing
but latency (polling stays as the fallback), and a stale liveness file only delays a requeue.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

_LISTING_TTL_SECONDS = 0.5


def runtime_dir(database_url: str) -> Path | None:
    """The shared directory of a file-backed SQLite database, or None (PostgreSQL, in-memory)."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return Path(os.path.abspath(url.database) + ".jobs")


def _ensure(directory: Path) -> bool:
    """Create the directory, and say whether it is ours alone to trust.

    It sits next to the database file, whose directory others may write to (``/tmp``, a shared
    data directory). One planted there in advance (a symlink, another user's directory, one others
    can write into) would let them forge liveness files (so a dead worker's jobs are never
    requeued) or plant a symlink where a worker writes its file. Such a directory is not used:
    liveness and wake-ups then fall back to the database alone.
    """
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        info = directory.lstat()
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        log.warning(
            "not using %s for job liveness and wake-ups: it must be a directory of this user that no "
            "one else can write to (remove it and it is recreated)",
            directory,
        )
        return False
    return True


def trusted_dir(database_url: str) -> Path | None:
    """:func:`runtime_dir`, created if need be, or None when it is missing or not safe to use."""
    directory = runtime_dir(database_url)
    if directory is None or not _ensure(directory):
        return None
    return directory


def _safe(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:24]


# ----------------------------------------------------------------- liveness


class Liveness(threading.Thread):
    """Rewrites ``alive-<worker>`` with the attempts the worker holds, independent of the database."""

    def __init__(
        self,
        directory: Path,
        worker_id: str,
        lease_seconds: float,
        held: Callable[[], Iterable[tuple[int, int]]],
        healthy: Callable[[], bool],
    ) -> None:
        super().__init__(name="nodewright-jobs-liveness", daemon=True)
        self.path = directory / f"alive-{_safe(worker_id)}"
        self._lease = lease_seconds
        self._held = held
        self._healthy = healthy
        self._stop_event = threading.Event()
        _ensure(directory)

    def beat(self) -> None:
        body = json.dumps(
            {
                "lease": self._lease,
                "pid": os.getpid(),
                "start": _start_time(os.getpid()),
                "jobs": [[j, a] for j, a in self._held()],
            }
        )
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(body)
            os.replace(tmp, self.path)
        except OSError:
            log.debug("could not write liveness file %s", self.path, exc_info=True)

    def run(self) -> None:
        interval = max(0.05, self._lease / 4)
        while not self._stop_event.wait(interval):
            if self._healthy():  # a dead monitor renews nothing: then let the file go stale
                self.beat()

    def stop(self) -> None:
        self._stop_event.set()
        with contextlib.suppress(OSError):
            self.path.unlink()


# A worker whose process still runs (same pid and start time, not stopped) may be slow to rewrite its
# file on an overloaded machine; it keeps its attempts for this many leases before it counts as hung.
RUNNING_GRACE_LEASES = 5.0


def _start_time(pid: int) -> int | None:
    from nodewright.jobs.processes import start_time

    return start_time(pid)


def _runs(pid: object, start: object) -> bool:
    """The process exists (and is not a zombie) and is not stopped (SIGSTOP, a debugger)."""
    if not isinstance(pid, int) or _start_time(pid) != start:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 :].split()[0] not in (b"T", b"t")


def attempt_alive(directory: Path | None, owner: str | None, job_id: int, attempt: int) -> bool:
    """True if ``owner``'s liveness file lists this attempt and is fresh: written within its lease,
    or within a few leases while the owner's process demonstrably still runs."""
    if directory is None or owner is None:
        return False
    path = directory / f"alive-{_safe(owner)}"
    try:
        age = time.time() - path.stat().st_mtime
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if [job_id, attempt] not in body.get("jobs", []):
        return False
    lease = float(body.get("lease", 0))
    if age <= lease:
        return True
    return age <= lease * RUNNING_GRACE_LEASES and _runs(body.get("pid"), body.get("start"))


# ----------------------------------------------------------------- wake-up

_own: set[str] = set()
_listing: dict[Path, tuple[float, list[str]]] = {}
_lock = threading.Lock()
_counter = iter(range(1 << 62))


def _address(directory: Path, name: str) -> bytes:
    return b"\0nodewright-" + _safe(str(directory)).encode() + b"-" + name.encode()


class WakeListener(threading.Thread):
    """Receives wake-up datagrams for one worker pool and pokes its ``notify``."""

    def __init__(self, directory: Path, notify: Callable[[], None]) -> None:
        super().__init__(name="nodewright-jobs-wake", daemon=True)
        self._notify = notify
        self._stop_event = threading.Event()
        self.name_in_dir = f"wake-{os.getpid()}-{next(_counter)}"
        self._file = directory / self.name_in_dir
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(_address(directory, self.name_in_dir))
        self._sock.settimeout(0.5)
        _ensure(directory)
        self._file.touch()
        with _lock:
            _own.add(str(self._file))
            _listing.pop(directory, None)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self._sock.recv(16)
            except TimeoutError:
                continue
            except OSError:
                return
            self._notify()

    def stop(self) -> None:
        self._stop_event.set()
        with _lock:
            _own.discard(str(self._file))
        with contextlib.suppress(OSError):
            self._file.unlink()
        self._sock.close()


def _peers(directory: Path) -> list[str]:
    now = time.monotonic()
    with _lock:
        cached = _listing.get(directory)
        if cached is not None and now - cached[0] < _LISTING_TTL_SECONDS:
            return cached[1]
    try:
        names = [n for n in os.listdir(directory) if n.startswith("wake-")]
    except OSError:
        names = []
    with _lock:
        names = [n for n in names if str(directory / n) not in _own]
        _listing[directory] = (now, names)
    return names


def wake_others(database_url: str) -> None:
    """Poke the workers of other processes on this SQLite database (after a commit)."""
    directory = runtime_dir(database_url)
    if directory is None or not directory.is_dir() or not _ensure(directory):
        return
    names = _peers(directory)
    if not names:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for name in names:
            try:
                sock.sendto(b"!", _address(directory, name))
            except (ConnectionRefusedError, FileNotFoundError):
                # Its worker is gone (killed): forget it.
                with contextlib.suppress(OSError):
                    (directory / name).unlink()
                with _lock:
                    _listing.pop(directory, None)
            except OSError:  # a full queue already holds a wake-up for that worker
                continue
