"""The per-project token bucket behind RateLimit-* headers and 429 rate_limit_exceeded."""

from __future__ import annotations

from nodewright.sim.faults import FaultRegistry, FaultSpecError, parse_fault
from nodewright.sim.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_drains_and_refills_one_per_second() -> None:
    clock = Clock()
    limiter = RateLimiter(3, 1.0, clock=clock, wall=clock)
    decisions = [limiter.take("p") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].limit == 3
    assert decisions[-1].reset == 1003
    clock.now += 1.0
    assert limiter.take("p").allowed
    assert not limiter.take("p").allowed
    clock.now += 100
    assert limiter.take("p").remaining == 2  # capped at capacity


def test_projects_have_separate_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(1, 1.0, clock=clock, wall=clock)
    assert limiter.take("a").allowed
    assert not limiter.take("a").allowed
    assert limiter.take("b").allowed


def test_real_defaults_allow_bursts() -> None:
    limiter = RateLimiter(3600, 1.0)
    assert all(limiter.take("p").allowed for _ in range(3600))
    assert not limiter.take("p").allowed


def test_fault_nth_and_count() -> None:
    registry = FaultRegistry()
    registry.add(
        {"kind": "error", "code": "conflict", "method": "get", "path": "/v1/servers*", "nth": 2, "count": 2}
    )
    fired = [bool(registry.fire("GET", "/v1/servers")) for _ in range(5)]
    assert fired == [False, True, True, False, False]
    assert not registry.fire("POST", "/v1/servers")


def test_fault_probability_is_seedable() -> None:
    registry = FaultRegistry()
    registry.add({"kind": "error", "code": "timeout", "probability": 0.5, "count": None, "seed": 7})
    first = [bool(registry.fire("GET", "/v1/x")) for _ in range(50)]
    registry = FaultRegistry()
    registry.add({"kind": "error", "code": "timeout", "probability": 0.5, "count": None, "seed": 7})
    assert first == [bool(registry.fire("GET", "/v1/x")) for _ in range(50)]
    assert 0 < sum(first) < 50


def test_fault_spec_validation() -> None:
    for bad in (
        {"kind": "nope"},
        {"kind": "error"},
        {"kind": "error", "code": "x", "nth": 0},
        {"kind": "slow", "delay": -1},
        {"kind": "error", "code": "x", "probability": 2},
    ):
        try:
            parse_fault(bad, 1)
        except FaultSpecError:
            continue
        raise AssertionError(f"accepted {bad}")
    assert parse_fault({"kind": "non_json"}, 1).error_status() == 502
    assert parse_fault({"kind": "error", "code": "locked"}, 1).error_status() == 423
