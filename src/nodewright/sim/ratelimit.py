"""Per-project token bucket, as the real API documents it (3600 capacity, +1 per second).

Clients read ``RateLimit-Remaining``/``RateLimit-Reset`` and retry 429s with backoff, so the bucket
must be exact enough that those code paths can be exercised deterministically (tiny capacities in
tests) while never throttling ordinary use with the real defaults.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # UNIX time at which the bucket is full again


class TokenBucket:
    def __init__(self, capacity: int, refill_per_second: float, now: float) -> None:
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self.tokens = float(capacity)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.refill_per_second)
            self.updated = now

    def take(self, now: float, wall: float) -> RateDecision:
        self._refill(now)
        allowed = self.tokens >= 1.0
        if allowed:
            self.tokens -= 1.0
        missing = self.capacity - self.tokens
        reset = math.ceil(wall + missing / self.refill_per_second)
        return RateDecision(allowed, self.capacity, math.floor(self.tokens), reset)


class RateLimiter:
    """One bucket per project; thread-safe because the HTTP server is threaded."""

    def __init__(
        self,
        capacity: int,
        refill_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self._clock = clock
        self._wall = wall
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, project: str) -> RateDecision:
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(project)
            if bucket is None:
                bucket = self._buckets[project] = TokenBucket(self.capacity, self.refill_per_second, now)
            return bucket.take(now, self._wall())

    def peek(self) -> RateDecision:
        """Headers for requests that belong to no project (unauthenticated)."""
        return RateDecision(True, self.capacity, self.capacity, int(self._wall()))

    def configure(self, capacity: int | None = None, refill_per_second: float | None = None) -> None:
        with self._lock:
            if capacity is not None:
                self.capacity = capacity
            if refill_per_second is not None:
                self.refill_per_second = refill_per_second
            self._buckets.clear()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
