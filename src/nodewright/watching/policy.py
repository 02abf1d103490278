"""A node's watch policy: the profile's ``watch:`` block over the installation's defaults.

Defaults come from settings (``NODEWRIGHT_WATCH_*``); a profile sets any of them for its nodes and
may add ``watch.checks``, run after the readiness checks ``verify`` runs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from nodewright.config import Settings
from nodewright.provisioning.profiles import Check, Profile, ProfileError, RemediationSpec, get_profile

MIN_INTERVAL_SECONDS = 5.0
# Backoff for a node failing for long: after BACKOFF_AFTER consecutive failures the interval doubles
# every BACKOFF_STEP further failures, up to BACKOFF_MAX_FACTOR times, never past BACKOFF_CAP_SECONDS
# (unless the interval itself is longer).
BACKOFF_AFTER = 10
BACKOFF_STEP = 5
BACKOFF_MAX_FACTOR = 16
BACKOFF_CAP_SECONDS = 900.0
JITTER = 0.1  # each next check lands within +-10% of the interval
TICK_SECONDS = 2.5  # the watcher's tick: a due check waits up to this long for its sweep


@dataclass(frozen=True)
class WatchPolicy:
    interval_seconds: float
    timeout_seconds: float
    grace_seconds: float
    failures_before_degraded: int
    successes_before_ready: int
    checks: tuple[Check, ...] = ()
    profile: Profile | None = None  # None when the profile cannot be loaded (checks then fail)
    remediation: RemediationSpec = field(default_factory=RemediationSpec)  # off unless the profile says


def defaults(settings: Settings) -> WatchPolicy:
    return WatchPolicy(
        interval_seconds=max(MIN_INTERVAL_SECONDS, settings.watch_interval_seconds),
        timeout_seconds=settings.watch_timeout_seconds,
        grace_seconds=settings.watch_grace_seconds,
        failures_before_degraded=settings.watch_failures_before_degraded,
        successes_before_ready=settings.watch_successes_before_ready,
    )


def policy_for(profile_name: str, settings: Settings) -> WatchPolicy:
    base = defaults(settings)
    try:
        profile = get_profile(profile_name, settings.resolved_profiles_dir)
    except ProfileError:
        return base
    spec = profile.watch

    def pick(value: float | int | None, default: float | int) -> float | int:
        return default if value is None else value

    return WatchPolicy(
        interval_seconds=max(MIN_INTERVAL_SECONDS, float(pick(spec.interval_seconds, base.interval_seconds))),
        timeout_seconds=float(pick(spec.timeout_seconds, base.timeout_seconds)),
        grace_seconds=float(pick(spec.grace_seconds, base.grace_seconds)),
        failures_before_degraded=int(pick(spec.failures_before_degraded, base.failures_before_degraded)),
        successes_before_ready=int(pick(spec.successes_before_ready, base.successes_before_ready)),
        checks=spec.checks,
        profile=profile,
        remediation=profile.remediation,
    )


def effective_interval(policy: WatchPolicy, consecutive_failures: int) -> float:
    """The interval, stretched for a node that has failed for long (Coolify's unreachable backoff)."""
    interval = policy.interval_seconds
    if consecutive_failures < BACKOFF_AFTER:
        return interval
    factor: int = min(BACKOFF_MAX_FACTOR, 2 ** ((consecutive_failures - BACKOFF_AFTER) // BACKOFF_STEP + 1))
    return float(min(interval * factor, max(interval, BACKOFF_CAP_SECONDS)))


def spread(node_id: int, interval: float) -> float:
    """A stable offset within the interval, so a fleet that became ready together is not checked
    together (crc32 of the id, as Coolify spreads its server checks)."""
    return (zlib.crc32(str(node_id).encode()) % 1000) / 1000 * interval


def remediation_delay(policy: WatchPolicy) -> float:
    """How long a decided remediation step waits before it starts: long enough that every node of
    the connection failing since the same moment is degraded (and counted by the fleet brake) by
    then. Their first failing checks land within one interval (+ jitter) of each other; each of the
    ``failures_before_degraded - 1`` further checks may drift apart by twice the jitter; each waits
    up to a tick for its sweep, and the last one may take its whole timeout."""
    k = policy.failures_before_degraded
    drift = 1 + JITTER + 2 * JITTER * (k - 1)
    return policy.interval_seconds * drift + k * TICK_SECONDS + policy.timeout_seconds
