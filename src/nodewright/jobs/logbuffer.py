"""A job log fed by a chatty source (Ansible's event stream), written in batches.

Each event written on its own is a write transaction, and with many provisionings at once on SQLite
(one writer at a time) those commits queue: the Ansible run waits on its own log. ``BufferedLog``
takes events at once and a thread of its own writes what has gathered every ``interval`` seconds in
one transaction, in order. A failed write (the attempt lost its lease, the database is gone) is
raised from the next event handed in, so the source stops as it would have, and from ``close``.

The source is a node, which may never stop talking: with a :class:`LogBudget` (one per attempt, see
``JobContext.buffered_log``) the events past its cap are counted instead of written, and ``close``
writes one last event saying how much was cut (``output_limits.cut_marker``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from nodewright.output_limits import JOB_LOG_CAP, cut_marker

LogEntry = tuple[str, str, Mapping[str, Any]]  # message, level, data

log = logging.getLogger(__name__)


def entry_size(message: str, data: Mapping[str, Any]) -> int:
    """What an entry costs the log: its message and its data as stored (JSON), in characters."""
    return len(message) + (len(json.dumps(data, default=str)) if data else 0)


@dataclass
class LogBudget:
    """How much node output an attempt may still write to its job log."""

    cap: int = JOB_LOG_CAP
    used: int = 0
    cut_events: int = 0
    cut_size: int = 0

    def take(self, size: int) -> bool:
        """Count an entry of ``size``; False (and counted as cut) once the cap would be passed."""
        if self.cut_events == 0 and self.used + size <= self.cap:
            self.used += size
            return True
        self.cut_events += 1
        self.cut_size += size
        return False

    def closing_entry(self) -> LogEntry | None:
        """The event that says what was cut, if anything was (written once per log)."""
        if not self.cut_events:
            return None
        message = (
            f"{cut_marker(self.cut_size, 'characters')} the node output of this attempt reached the "
            f"job log's cap of {self.cap} characters; {self.cut_events} more event(s) were not written"
        )
        return message, "warning", {"cut_events": self.cut_events, "cut_size": self.cut_size, "cap": self.cap}


class BufferedLog:
    def __init__(
        self,
        write_many: Callable[[Sequence[LogEntry]], None],
        *,
        interval: float = 0.25,
        max_pending: int = 1000,
        check_caller: Callable[[], None] | None = None,
        budget: LogBudget | None = None,
    ) -> None:
        """``check_caller`` runs before each event handed in and before ``close``, in the caller's
        thread; it raises to refuse a caller that must not wait for the writer (see
        ``JobContext.buffered_log``)."""
        self._write_many = write_many
        self._check_caller = check_caller
        self._interval = interval
        self._max_pending = max_pending
        self._budget = budget
        self._reported_cut = 0
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
        if self._budget is not None and not self._budget.take(entry_size(message, data)):
            with self._lock:
                self._raise_error()
            return
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

    def _append_cut_note(self) -> None:
        """The closing event about what the budget cut (since this log began), once."""
        closing = self._budget.closing_entry() if self._budget is not None else None
        if closing is None or self._budget is None or self._budget.cut_events == self._reported_cut:
            return
        self._reported_cut = self._budget.cut_events
        with self._lock:
            if self._error is None:
                self._pending.append(closing)

    def close(self) -> None:
        """Write what is left and stop; raises the first failed write."""
        self._append_cut_note()
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
