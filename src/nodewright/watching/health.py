"""The health state machine: consecutive failures and successes decide ready <-> degraded.

Health is one of ``unknown`` (never checked), ``passing``, ``failing`` (failures below the
threshold: still ``ready``) and ``degraded``. A single pass resets the failure count and a single
failure the success count (Nomad's check_restart, Consul's thresholds), so a flapping node is
neither degraded nor recovered by noise. Pure functions: the caller writes the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Health(StrEnum):
    unknown = "unknown"
    passing = "passing"
    failing = "failing"
    degraded = "degraded"


class Transition(StrEnum):
    degraded = "degraded"  # ready -> degraded
    recovered = "recovered"  # degraded -> ready


@dataclass(frozen=True)
class Counters:
    health: Health
    failures: int
    successes: int


def step(
    current: Counters, ok: bool, *, failures_before_degraded: int, successes_before_ready: int
) -> tuple[Counters, Transition | None]:
    """The counters after one check result, and the transition it causes (if any)."""
    if ok:
        successes = current.successes + 1
        if current.health is Health.degraded:
            if successes >= successes_before_ready:
                return Counters(Health.passing, 0, successes), Transition.recovered
            return Counters(Health.degraded, 0, successes), None
        return Counters(Health.passing, 0, successes), None
    failures = current.failures + 1
    if current.health is Health.degraded:
        return Counters(Health.degraded, failures, 0), None
    if failures >= failures_before_degraded:
        return Counters(Health.degraded, failures, 0), Transition.degraded
    return Counters(Health.failing, failures, 0), None


def paused(current: Counters) -> Counters:
    """A check during maintenance has no consequences: counting starts afresh after the pause,
    and a degraded node stays degraded until it passes ``successes_before_ready`` checks."""
    return Counters(current.health if current.health is Health.degraded else Health.unknown, 0, 0)
