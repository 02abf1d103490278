"""Sign-in throttle: after repeated failures, refuse for a while, counted three ways.

- per (username, address): an attacker guessing one account's password from one place is stopped
  after a handful of guesses, without locking the user out from elsewhere;
- per address (an IPv6 client per /64): one client spraying guesses over many (made-up or real)
  user names is stopped, so a flood of new names never escapes the throttle;
- per account: guesses at one account from many addresses are slowed down too. Its limit is higher
  than the pair's, since anyone can push an account into it (the price of bounding distributed
  guessing; the account's owner waits out the window).

The check runs before the password is verified and treats unknown and existing usernames alike, so a
refusal says nothing about whether the account exists. This class keeps the counts of one process;
``security.login_failures.SharedLoginThrottle`` puts the database's counts, which every ``serve``
process writes, behind it.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import deque
from collections.abc import Callable

MAX_FAILURES = 5
MAX_FAILURES_PER_ADDRESS = 30
MAX_FAILURES_PER_ACCOUNT = 20
WINDOW_SECONDS = 15 * 60
# Bound on remembered keys per counter, so a flood of made-up usernames cannot grow memory.
MAX_KEYS = 10_000


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def address_key(address: str) -> str:
    """The key a client address is throttled under: the address itself for IPv4, its /64 for IPv6
    (one subscriber gets a whole /64 and can pick a new address per request)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ip in _NAT64:  # an IPv4 client behind a translator (RFC 6052): one per IPv4 address
            return str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureCounter:
    """Failures per key inside a sliding window, with a bound on the number of keys kept."""

    def __init__(
        self, *, limit: int, window_seconds: float, max_keys: int, clock: Callable[[], float]
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str) -> int | None:
        now = self._clock()
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window_seconds - now))

    def failed(self, key: str) -> None:
        now = self._clock()
        times = self._recent(key, now)
        if times is None:
            if len(self._failures) >= self.max_keys:
                self._prune(now)
            times = self._failures[key] = deque(maxlen=self.limit)
        times.append(now)

    def hold(self, key: str, seconds: int) -> None:
        """Count ``key`` as at its limit for ``seconds`` more (a refusal learned elsewhere)."""
        now = self._clock()
        if key not in self._failures and len(self._failures) >= self.max_keys:
            self._prune(now)
        at = now + seconds - self.window_seconds
        self._failures[key] = deque([at] * self.limit, maxlen=self.limit)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= self.max_keys:
            # Forget the key whose latest failure is oldest.
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        max_failures_per_address: int = MAX_FAILURES_PER_ADDRESS,
        max_failures_per_account: int = MAX_FAILURES_PER_ACCOUNT,
        window_seconds: float = WINDOW_SECONDS,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.max_failures_per_address = max_failures_per_address
        self.max_failures_per_account = max_failures_per_account
        self.window_seconds = window_seconds
        self._lock = threading.Lock()

        def counter(limit: int) -> FailureCounter:
            return FailureCounter(limit=limit, window_seconds=window_seconds, max_keys=max_keys, clock=clock)

        self._pairs = counter(max_failures)
        self._addresses = counter(max_failures_per_address)
        self._accounts = counter(max_failures_per_account)

    @property
    def _failures(self) -> dict[str, deque[float]]:
        return self._pairs._failures

    @staticmethod
    def account_key(username: str) -> str:
        return username.strip().lower()[:128]

    def _keys(self, username: str, address: str) -> list[tuple[FailureCounter, str]]:
        account = self.account_key(username)
        address = address_key(address)
        return [
            (self._pairs, f"{account}\x00{address}"),
            (self._addresses, address),
            (self._accounts, account),
        ]

    def known_retry_after(self, username: str, address: str) -> int | None:
        """The same as ``retry_after``: everything this throttle knows is in the process."""
        return self.retry_after(username, address)

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until the next attempt is allowed, or None when it is allowed now."""
        with self._lock:
            waits = [w for c, k in self._keys(username, address) if (w := c.retry_after(k)) is not None]
        return max(waits) if waits else None

    def failed(self, username: str, address: str) -> None:
        with self._lock:
            for counter, key in self._keys(username, address):
                counter.failed(key)

    def hold(self, username: str, address: str, seconds: dict[str, int]) -> None:
        """Refuse for a while what another process's failures put over a limit: ``seconds`` maps
        ``pair``, ``address`` or ``account`` to the wait the shared counts gave."""
        with self._lock:
            pair, by_address, by_account = self._keys(username, address)
            for name, (counter, key) in (("pair", pair), ("address", by_address), ("account", by_account)):
                if name in seconds:
                    counter.hold(key, seconds[name])

    def succeeded(self, username: str, address: str) -> None:
        """A right password clears the pair's failures (not the address's or the account's: one
        success must not buy a spraying client or a distributed guesser a fresh budget)."""
        with self._lock:
            self._pairs.forget(self._keys(username, address)[0][1])


class PasswordCheckGate:
    """A budget for password verifications: at most ``limit`` at once and ``per_second`` on average
    (a token bucket holding up to ``limit``). argon2 costs a third of a CPU second per check here, on
    purpose; without a budget, unauthenticated callers choose how much of the machine goes to
    hashing. Over the budget a sign-in is refused at once (429 with ``retry_after()``), never queued."""

    def __init__(
        self, limit: int, per_second: float = 1_000_000.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.per_second = per_second
        self._clock = clock
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._tokens = float(limit)
        self._filled_at = clock()
        self._in_flight = 0

    def _refill(self, now: float) -> None:
        self._tokens = min(float(self.limit), self._tokens + (now - self._filled_at) * self.per_second)
        self._filled_at = now

    def try_acquire(self) -> bool:
        with self._lock:
            self._refill(self._clock())
            if self._tokens < 1.0:
                return False
            if not self._slots.acquire(blocking=False):
                return False
            self._tokens -= 1.0
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._slots.release()  # ValueError on a release without an acquire, before counting
            self._in_flight -= 1

    def would_refuse(self) -> bool:
        """True when ``try_acquire`` would fail now (no token or no free slot), without taking
        anything: lets a flood be refused before its request is even read."""
        with self._lock:
            self._refill(self._clock())
            return self._tokens < 1.0 or self._in_flight >= self.limit

    def retry_after(self) -> int:
        """Whole seconds until a check could be admitted again (at least 1)."""
        with self._lock:
            missing = max(0.0, 1.0 - self._tokens)
        return max(1, math.ceil(missing / self.per_second))
