"""The event types a webhook endpoint can subscribe to, and the one it cannot (the test event)."""

from __future__ import annotations

from typing import Literal, get_args

EventType = Literal[
    "node.degraded",
    "node.recovered",
    "node.lost",
    "node.remediation_started",
    "node.remediation_succeeded",
    "node.remediation_failed",
    "node.ready",
    "node.failed",
    "node.released",
    "fleet.brake_engaged",
    "fleet.brake_released",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
# Sent by the "test" button to one endpoint, whatever its filter; never emitted by the product.
TEST_EVENT = "webhook.test"


class UnknownEventType(ValueError):
    """``emit`` was called with a type outside :data:`EVENT_TYPES` (a bug of the caller)."""


def check_event_type(event_type: str) -> None:
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown webhook event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")


def matches(filter_: list[str] | None, event_type: str) -> bool:
    """An endpoint's filter: an empty one receives every event type."""
    return not filter_ or event_type in filter_
