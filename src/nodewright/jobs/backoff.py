"""Retry delays: exponential backoff with jitter, never earlier than the provider's ``retry_after``.

Jitter spreads retries of many jobs that failed together (a provider outage) so they do not return
as a thundering herd.
"""

from __future__ import annotations

import datetime as dt
import random

DEFAULT_BASE_SECONDS = 2.0
DEFAULT_CAP_SECONDS = 600.0
DEFAULT_JITTER = 0.25


def backoff_delay(
    attempt: int,
    *,
    base: float = DEFAULT_BASE_SECONDS,
    cap: float = DEFAULT_CAP_SECONDS,
    jitter: float = DEFAULT_JITTER,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    The nominal delay is ``base * 2**(attempt-1)`` capped at ``cap``; jitter scales it by a factor in
    ``[1 - jitter, 1 + jitter]`` (still capped). ``retry_after`` is a floor.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    nominal = min(cap, base * (2.0 ** min(attempt - 1, 62)))
    factor = 1.0 + (rng or random).uniform(-jitter, jitter)
    delay = min(cap, nominal * factor)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(0.0, delay)


def next_run_after(
    now: dt.datetime,
    attempt: int,
    *,
    base: float = DEFAULT_BASE_SECONDS,
    cap: float = DEFAULT_CAP_SECONDS,
    jitter: float = DEFAULT_JITTER,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> dt.datetime:
    delay = backoff_delay(attempt, base=base, cap=cap, jitter=jitter, retry_after=retry_after, rng=rng)
    return now + dt.timedelta(seconds=delay)
