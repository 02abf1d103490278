"""Retry schedule: exponential, jittered within bounds, capped, never before ``retry_after``."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodewright.jobs.backoff import backoff_delay, next_run_after


def test_nominal_schedule_doubles_without_jitter() -> None:
    delays = [backoff_delay(n, base=2.0, cap=600.0, jitter=0.0) for n in range(1, 8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]


def test_cap_applies() -> None:
    assert backoff_delay(30, base=2.0, cap=600.0, jitter=0.0) == 600.0
    assert backoff_delay(10_000, base=2.0, cap=600.0, jitter=0.5) <= 600.0


def test_retry_after_is_a_floor() -> None:
    assert backoff_delay(1, base=2.0, jitter=0.0, retry_after=90.0) == 90.0
    assert backoff_delay(5, base=2.0, jitter=0.0, retry_after=1.0) == 32.0


def test_jitter_spreads_retries() -> None:
    rng = random.Random(7)
    delays = {backoff_delay(3, base=2.0, jitter=0.25, rng=rng) for _ in range(50)}
    assert len(delays) > 40
    assert all(6.0 <= d <= 10.0 for d in delays)


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.01, max_value=60),
    cap=st.floats(min_value=1, max_value=3600),
    jitter=st.floats(min_value=0, max_value=0.9),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=7200)),
)
def test_delay_bounds(
    attempt: int, base: float, cap: float, jitter: float, retry_after: float | None
) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, jitter=jitter, retry_after=retry_after)
    nominal = min(cap, base * 2.0 ** min(attempt - 1, 62))
    assert delay >= 0
    assert delay <= max(cap, retry_after or 0)
    assert delay >= min(nominal * (1 - jitter), cap) - 1e-9 or delay >= (retry_after or 0)
    if retry_after is not None:
        assert delay >= retry_after


def test_next_run_after_adds_the_delay() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert next_run_after(now, 2, base=3.0, jitter=0.0) == now + dt.timedelta(seconds=6)
