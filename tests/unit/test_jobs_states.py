"""Job state rules and the error payload shape."""

from __future__ import annotations

import pytest

from nodewright.jobs.errors import JobError, RetryableError, TerminalError, internal_error
from nodewright.jobs.registry import Registry, load_handler
from nodewright.jobs.states import (
    ALL_STATES,
    CLAIMABLE,
    HOLDING,
    PENDING,
    TERMINAL,
    JobState,
    can_transition,
    is_terminal,
)


def test_the_seven_states() -> None:
    assert set(ALL_STATES) == {
        "queued",
        "running",
        "retry_wait",
        "succeeded",
        "failed",
        "canceling",
        "canceled",
    }


def test_terminal_states_are_final() -> None:
    for state in TERMINAL:
        assert is_terminal(state)
        assert not any(can_transition(state, target) for target in ALL_STATES)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        ("queued", "running", True),
        ("queued", "canceled", True),
        ("queued", "succeeded", False),
        ("retry_wait", "running", True),
        ("running", "retry_wait", True),
        ("running", "canceling", True),
        ("running", "queued", True),
        ("canceling", "canceled", True),
        ("canceling", "running", False),
        ("succeeded", "queued", False),
    ],
)
def test_transitions(current: str, target: str, allowed: bool) -> None:
    assert can_transition(current, target) is allowed


def test_state_groups_match_the_partial_indexes() -> None:
    from nodewright.db.models.jobs import _HOLDING_SQL, _PENDING_SQL

    assert all(f"'{s}'" in _HOLDING_SQL for s in HOLDING)
    assert all(f"'{s}'" in _PENDING_SQL for s in PENDING)
    assert set(CLAIMABLE) == {JobState.QUEUED, JobState.RETRY_WAIT}


def test_error_payload() -> None:
    err = RetryableError("rate_limited", "slow down", retry_after=30.0, hint="wait")
    assert err.to_dict() == {
        "code": "rate_limited",
        "message": "slow down",
        "retryable": True,
        "hint": "wait",
        "retry_after": 30.0,
    }
    assert TerminalError("quota_exceeded", "limit").retryable is False
    assert JobError("x", "y").retryable is False
    generic = internal_error()
    assert generic.code == "internal_error"
    assert "Traceback" not in generic.message


def test_registry_options_and_handler_paths() -> None:
    reg = Registry()

    @reg.handler("k", max_attempts=7, timeout_seconds=3)
    def handler(ctx: object) -> None:
        return None

    spec = reg.get("k")
    assert spec is not None
    assert spec.max_attempts == 7
    assert reg.max_attempts_for("k") == 7
    assert reg.max_attempts_for("unknown") == 5
    assert load_handler("nodewright.jobs.builtin:noop").__name__ == "noop"
    with pytest.raises(ValueError):
        reg.register("bad", handler, max_attempts=0)
