"""A provider project's rate-limit budget, shared by every worker process through the database.

Hetzner limits each project to a token bucket (3600 requests, refilled by one per second) and
answers ``RateLimit-Limit/-Remaining/-Reset`` on every call. Each process that talks to the
project takes one request from the budget row before sending (a short write transaction), and
folds the answer's headers back in. The estimate is deliberately pessimistic: it never rises above
what the provider last said plus what has refilled since, and requests already in flight have
been taken from it, so concurrent callers on several machines stay under the limit instead of
discovering it by a 429. A reserve is kept for interactive calls (connect, check, catalog).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from nodewright.db.database import Database
from nodewright.db.models import ProviderConnection
from nodewright.db.types import utcnow

DEFAULT_REFILL_PER_SECOND = 1.0
# Longest single wait; the caller loops, so a cancel or a deadline is noticed in between.
MAX_WAIT_SLICE = 1.0


@dataclass(frozen=True)
class Snapshot:
    limit: int | None
    remaining: float | None
    reset_at: dt.datetime | None
    observed_at: dt.datetime | None


def refill_rate(
    limit: int | None, remaining: float | None, reset_at: dt.datetime | None, now: dt.datetime
) -> float:
    """Requests per second coming back: (limit - remaining) over the time to reset, else 1/s."""
    if limit is None or remaining is None or reset_at is None:
        return DEFAULT_REFILL_PER_SECOND
    missing = limit - remaining
    seconds = (reset_at - now).total_seconds()
    if missing <= 0 or seconds <= 0:
        return max(DEFAULT_REFILL_PER_SECOND, limit / 3600)
    return max(missing / seconds, limit / 3600)


def estimate(snapshot: Snapshot, now: dt.datetime) -> float | None:
    if snapshot.limit is None or snapshot.remaining is None or snapshot.observed_at is None:
        return None
    rate = refill_rate(snapshot.limit, snapshot.remaining, snapshot.reset_at, snapshot.observed_at)
    elapsed = max(0.0, (now - snapshot.observed_at).total_seconds())
    return min(float(snapshot.limit), snapshot.remaining + elapsed * rate)


class RateBudget:
    def __init__(
        self,
        database: Database,
        connection_id: int,
        *,
        reserve: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        canceled: Callable[[], bool] = lambda: False,
    ) -> None:
        self._database = database
        self._connection_id = connection_id
        self._reserve = reserve
        self._sleep = sleep
        self._canceled = canceled
        self.waited_seconds = 0.0

    def take(self) -> None:
        """Take one request from the budget, waiting while it is empty."""
        while True:
            wait = self._try_take()
            if wait <= 0:
                return
            if self._canceled():
                return  # the caller's own cancellation check follows the call
            slice_ = min(wait, MAX_WAIT_SLICE)
            self.waited_seconds += slice_
            self._sleep(slice_)

    def _try_take(self) -> float:
        now = utcnow()
        with self._database.session(write=True) as session:
            row = session.execute(
                select(ProviderConnection)
                .where(ProviderConnection.id == self._connection_id)
                .with_for_update()
            ).scalar_one_or_none()
            if row is None:
                return 0.0
            snap = Snapshot(row.rate_limit, row.rate_remaining, row.rate_reset_at, row.rate_observed_at)
            current = estimate(snap, now)
            if current is None:
                return 0.0  # nothing known yet: the first answer tells us
            if current - 1 >= self._reserve:
                row.rate_remaining = current - 1
                row.rate_observed_at = now
                return 0.0
            rate = refill_rate(snap.limit, snap.remaining, snap.reset_at, snap.observed_at or now)
            return max(0.05, (1 + self._reserve - current) / rate)

    def observe(self, headers: dict[str, str], status: int) -> None:
        """Fold an answer's headers in: never above our own estimate (others' calls are in flight)."""
        try:
            limit = int(headers["ratelimit-limit"])
            remaining = float(headers["ratelimit-remaining"])
        except (KeyError, ValueError):
            return
        reset_at = None
        with contextlib.suppress(KeyError, ValueError):
            reset_at = dt.datetime.fromtimestamp(float(headers["ratelimit-reset"]), dt.UTC)
        if status == 429:
            remaining = 0.0
        now = utcnow()
        with self._database.session(write=True) as session:
            row = session.execute(
                select(ProviderConnection)
                .where(ProviderConnection.id == self._connection_id)
                .with_for_update()
            ).scalar_one_or_none()
            if row is None:
                return
            current = estimate(
                Snapshot(row.rate_limit, row.rate_remaining, row.rate_reset_at, row.rate_observed_at), now
            )
            row.rate_limit = limit
            row.rate_remaining = remaining if current is None else min(remaining, current)
            row.rate_reset_at = reset_at
            row.rate_observed_at = now


def snapshot(database: Database, connection_id: int) -> Snapshot | None:
    with database.session() as session:
        row = session.get(ProviderConnection, connection_id)
        if row is None:
            return None
        return Snapshot(row.rate_limit, row.rate_remaining, row.rate_reset_at, row.rate_observed_at)
