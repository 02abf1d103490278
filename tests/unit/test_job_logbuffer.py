"""The batched job log: order kept, fewer writes, a failed write stops the source."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from nodewright.jobs.logbuffer import BufferedLog, LogEntry


class Writes:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, entries: Sequence[LogEntry]) -> None:
        with self.lock:
            if self.fail_on is not None and len(self.batches) + 1 >= self.fail_on:
                raise RuntimeError("the attempt lost its lease")
            self.batches.append([message for message, _, _ in entries])


def test_events_arrive_in_order_in_fewer_writes() -> None:
    writes = Writes()
    with BufferedLog(writes, interval=0.2) as sink:
        for i in range(200):
            sink("info", f"event {i}", {"i": i})
    assert [m for batch in writes.batches for m in batch] == [f"event {i}" for i in range(200)]
    assert len(writes.batches) < 200 / 10  # batched, not one write per event


def test_close_writes_what_is_left_at_once() -> None:
    writes = Writes()
    log = BufferedLog(writes, interval=3600)  # the timer would never fire within the test
    log("info", "last words", {})
    log.close()
    assert writes.batches == [["last words"]]


def test_a_failed_write_stops_the_source_and_is_raised_by_close() -> None:
    writes = Writes(fail_on=1)
    log = BufferedLog(writes, interval=0.01)
    log("info", "first", {})
    with pytest.raises(RuntimeError, match="lost its lease"):
        for _ in range(1000):  # the writer thread fails; a later event hands the error back
            log("info", "more", {})
            threading.Event().wait(0.01)
    with pytest.raises(RuntimeError, match="lost its lease"):
        log.close()


def test_an_exception_under_way_is_not_replaced_by_the_log_s() -> None:
    writes = Writes(fail_on=1)
    with pytest.raises(KeyError), BufferedLog(writes, interval=3600) as sink:
        sink("info", "x", {})
        raise KeyError("the run's own failure")


def test_a_writer_that_cannot_keep_up_slows_the_source() -> None:
    gate = threading.Event()
    written: list[int] = []

    def slow(entries: Sequence[LogEntry]) -> None:
        gate.wait(10)
        written.append(len(entries))

    log = BufferedLog(slow, interval=0.01, max_pending=5)
    log("info", "0", {})
    threading.Event().wait(0.1)  # the writer has taken event 0 and waits on the gate
    blocked = threading.Thread(target=lambda: [log("info", str(i), {}) for i in range(1, 10)])
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive()  # five pending: the sixth waits for the writer
    gate.set()
    blocked.join(10)
    log.close()
    assert sum(written) == 10
