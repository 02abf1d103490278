"""A job log fed by a chatty source (Ansible's event stream), written in batches.

Each event written on its own is a write transaction, and with many provisionings at once on SQLite
(one writer at a time) those commits queue: the Ansible run waits on its own log. ``BufferedLog``
takes events at once and a thread of its own writes what has gathered every ``interval`` seconds in
one transaction, in order. A failed write (the attempt lost its lease, the database is gone) is
raised from the next event handed in, so the source stops as it would have, and from ``close``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

LogEntry = tuple[str, str, Mapping[str, Any]]  # message, level, data

log = logging.getLogger(__name__)


class BufferedLog:
    def __init__(
        self,
        write_many: Callable[[Sequence[LogEntry]], None],
        *,
        interval: float = 0.25,
        max_pending: int = 1000,
        check_caller: Callable[[], None] | None = None,
    ) -> None:
        """``check_caller`` runs before each event handed in and before ``close``, in the caller's
        thread; it raises to refuse a caller that must not wait for the writer (see
        ``JobContext.buffered_log``)."""
        self._write_many = write_many
        self._check_caller = check_caller
        self._interval = interval
        self._max_pending = max_pending
        self._lock = threading.Condition()
        self._pending: list[LogEntry] = []
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="job-log-writer", daemon=True)
        self._thread.start()

    def __call__(self, level: str, message: str, data: Mapping[str, Any]) -> None:
        """The sink signature of ``provisioning.runner.run_playbook``."""
        if self._check_caller is not None:
            self._check_caller()
        with self._lock:
            self._raise_error()
            if self._closed:
                raise RuntimeError("the job log is closed")
            # A writer that cannot keep up slows the source down instead of growing without end.
            while len(self._pending) >= self._max_pending and self._error is None:
                self._lock.wait(0.5)
            self._raise_error()
            self._pending.append((message, level, data))

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._closed:
                    self._lock.wait(self._interval)
                batch, self._pending = self._pending, []
                closed = self._closed
            if batch:
                try:
                    self._write_many(batch)
                except BaseException as exc:  # handed to the source, not lost
                    with self._lock:
                        self._error = exc
                        self._lock.notify_all()
                    return
            with self._lock:
                self._lock.notify_all()
                if closed and not self._pending:
                    return

    def close(self) -> None:
        """Write what is left and stop; raises the first failed write."""
        if self._check_caller is not None:
            try:
                self._check_caller()
            except BaseException:
                # Refused to wait here; the writer still ends, once it can write what is left.
                with self._lock:
                    self._closed = True
                    self._lock.notify_all()
                raise
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join()
        self._raise_error()

    def __enter__(self) -> BufferedLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except BaseException as error:  # the exception already under way is the one to see
            if error is not exc:
                log.warning("job log writes failed too: %s", error)
