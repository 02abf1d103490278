"""``emit``: the one way the rest of nodewright raises a webhook event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewright.alerts.deliveries import event_body, new_event_id, queue_delivery
from nodewright.alerts.events import check_event_type, matches
from nodewright.db.models import WebhookEndpoint
from nodewright.db.types import utcnow


def emit(
    session: Session, event_type: str, data: dict[str, Any], *, resend_checks: int | None = None
) -> None:
    """Queue ``event_type`` with ``data`` for every enabled endpoint whose filter matches.

    Runs inside the caller's transaction: the deliveries (and their jobs) commit with the
    transition that caused them, or not at all. Raises ``UnknownEventType`` for a type outside
    ``EVENT_TYPES``. Strings in ``data`` are cleaned of control characters (``security.text``) and
    registered secrets are redacted. One event id is shared by all its deliveries.
    """
    check_event_type(event_type)
    endpoints = [
        e
        for e in session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True)))
        if matches(e.events, event_type)
        and (
            resend_checks is None
            or (
                e.resend_every_checks > 0 and resend_checks > 0 and resend_checks % e.resend_every_checks == 0
            )
        )
    ]
    if not endpoints:
        return
    body = event_body(event_type, data, utcnow())
    event_id = new_event_id()
    for endpoint in endpoints:
        queue_delivery(session, endpoint, event_id=event_id, event_type=event_type, body=body)
