"""Sign-in throttle: after repeated failures for one username from one address, refuse for a while.

Counted per (username, client address) so that an attacker guessing one account's password is slowed
down without letting anyone lock a user out from everywhere. The check runs before the password is
verified and treats unknown and existing usernames alike, so a refusal says nothing about whether the
account exists. State is kept in the process: each ``serve`` process throttles on its own, which bounds
the guessing rate per process and needs no shared storage.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60
# Bound on remembered (username, address) pairs, so a flood of made-up usernames cannot grow memory.
MAX_KEYS = 10_000


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], deque[float]] = {}

    @staticmethod
    def _key(username: str, address: str) -> tuple[str, str]:
        return username.strip().lower()[:128], address

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until the next attempt is allowed, or None when it is allowed now."""
        with self._lock:
            now = self._clock()
            times = self._recent(self._key(username, address), now)
            if times is None or len(times) < self.max_failures:
                return None
            return max(1, math.ceil(times[0] + self.window_seconds - now))

    def failed(self, username: str, address: str) -> None:
        with self._lock:
            now = self._clock()
            key = self._key(username, address)
            times = self._recent(key, now)
            if times is None:
                if len(self._failures) >= self.max_keys:
                    self._prune(now)
                times = self._failures[key] = deque(maxlen=self.max_failures)
            times.append(now)

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop(self._key(username, address), None)

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= self.max_keys:
            # Forget the pair whose latest failure is oldest.
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]
