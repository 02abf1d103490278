"""Wake idle workers when a job becomes claimable, with polling as the fallback.

PostgreSQL: ``pg_notify`` inside the enqueuing transaction is delivered only on commit, to a
dedicated LISTEN connection in every worker process on every machine. SQLite (one machine): an
in-process wake-up after commit, and a datagram to the workers of other processes
(``local.wake_others``); polling stays as the fallback. Waiting uses a
generation counter rather than a bare Event, so a notification that arrives while a thread is busy
claiming is not lost.
"""

from __future__ import annotations

import logging
import threading
import weakref

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "nodewright_jobs"
_SESSION_FLAG = "nodewright_jobs_notify"


class Wakeup:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, since: int, timeout: float) -> bool:
        """Block until a notification newer than ``since`` arrives or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(lambda: self._generation != since, timeout=timeout)


_local_wakeups: weakref.WeakSet[Wakeup] = weakref.WeakSet()
_local_lock = threading.Lock()


def subscribe_local(wakeup: Wakeup) -> None:
    with _local_lock:
        _local_wakeups.add(wakeup)


def notify_local(sqlite_url: str | None = None) -> None:
    """Wake this process's workers; with ``sqlite_url``, those of other processes on it too."""
    if sqlite_url is not None:
        from nodewright.jobs.local import wake_others

        wake_others(sqlite_url)
    with _local_lock:
        targets = list(_local_wakeups)
    for wakeup in targets:
        wakeup.notify()


def notify_on_commit(session: Session) -> None:
    """Announce new claimable work once ``session`` commits (and not at all if it rolls back)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    sqlite_url = (
        bind.engine.url.render_as_string(hide_password=False) if bind.dialect.name == "sqlite" else None
    )
    if not session.info.get(_SESSION_FLAG):
        session.info[_SESSION_FLAG] = True

        def _after_commit(sess: Session) -> None:
            sess.info.pop(_SESSION_FLAG, None)
            notify_local(sqlite_url)

        # After a rollback the listener simply stays armed: at worst a later commit on this session
        # wakes workers that find nothing new, which is harmless.
        event.listen(session, "after_commit", _after_commit, once=True)


def libpq_url(database_url: str) -> str:
    """SQLAlchemy URL (``postgresql+psycopg://``) to a plain libpq URL for a raw psycopg connection."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresListener(threading.Thread):
    """LISTENs on a dedicated autocommit connection and pokes ``wakeup``; reconnects on failure."""

    def __init__(self, database_url: str, wakeup: Wakeup) -> None:
        super().__init__(name="nodewright-jobs-listen", daemon=True)
        self._conninfo = libpq_url(database_url)
        self._wakeup = wakeup
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        import psycopg

        while not self._stop_event.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Anything committed while we were (re)connecting is found by this poke.
                    self._wakeup.notify()
                    while not self._stop_event.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._wakeup.notify()
            except Exception:
                log.warning("job LISTEN connection failed; polling until it is back", exc_info=True)
                self._stop_event.wait(1.0)
