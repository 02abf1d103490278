"""Deliveries: one row per (event, endpoint) and one job that sends it, with retries.

``queue_delivery`` runs inside the caller's transaction (``emit``'s, or a "send again"), so a
delivery exists only if that transaction commits. The body is fixed when the event happens; the
timestamp and signature are made at each attempt.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewright.alerts.endpoints import WebhookError
from nodewright.alerts.events import TEST_EVENT
from nodewright.db.database import Database
from nodewright.db.models import WebhookDelivery, WebhookEndpoint
from nodewright.db.types import utcnow
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.plaintext import contains_secret
from nodewright.security.redaction import redact
from nodewright.security.text import clean_value

DELIVER_KIND = "webhooks.deliver"
MAX_LIST = 200


def new_event_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def event_body(event_type: str, data: dict[str, Any], when: dt.datetime) -> str:
    """The JSON body: ``{type, timestamp, data}``; foreign text cleaned, registered secrets redacted."""
    safe = clean_value(redact(data))
    body = json.dumps(
        {"type": event_type, "timestamp": when.isoformat().replace("+00:00", "Z"), "data": safe},
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    )
    if contains_secret(body):  # redact() covers it; a second look costs nothing
        raise ValueError("a webhook body would carry a secret")
    return body


def queue_delivery(
    session: Session,
    endpoint: WebhookEndpoint,
    *,
    event_id: str,
    event_type: str,
    body: str,
    redelivery_of: int | None = None,
    created_by: str | None = None,
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=event_type,
        body=body,
        status="pending",
        attempts=0,
        redelivery_of=redelivery_of,
        created_at=utcnow(),
    )
    session.add(delivery)
    session.flush()
    job = enqueue(session, DELIVER_KIND, {"delivery_id": delivery.id}, created_by=created_by or "alerts")
    delivery.job_id = job.id
    delivery.next_attempt_at = job.run_after
    session.flush()
    return delivery


def list_deliveries(database: Database, endpoint_id: int, *, limit: int = 50) -> list[WebhookDelivery]:
    with database.session() as session:
        if session.get(WebhookEndpoint, endpoint_id) is None:
            raise WebhookError(404, "not_found", f"no webhook endpoint {endpoint_id}")
        rows = list(
            session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .order_by(WebhookDelivery.id.desc())
                .limit(min(max(limit, 1), MAX_LIST))
            )
        )
        session.expunge_all()
        return rows


def get_delivery(database: Database, delivery_id: int) -> WebhookDelivery | None:
    with database.session() as session:
        row = session.get(WebhookDelivery, delivery_id)
        if row is not None:
            session.expunge(row)
        return row


def redeliver(database: Database, endpoint_id: int, delivery_id: int, *, actor: str) -> WebhookDelivery:
    """ "Send again": the same event (same ``webhook-id`` and body) as a new delivery with its own tries."""
    with database.session(write=True) as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        original = session.get(WebhookDelivery, delivery_id)
        if endpoint is None or original is None or original.endpoint_id != endpoint_id:
            raise WebhookError(
                404, "not_found", f"no delivery {delivery_id} of webhook endpoint {endpoint_id}"
            )
        row = queue_delivery(
            session,
            endpoint,
            event_id=original.event_id,
            event_type=original.event_type,
            body=original.body,
            redelivery_of=original.id,
            created_by=actor,
        )
        session.expunge(row)
        return row


def send_test(database: Database, endpoint_id: int, *, actor: str) -> WebhookDelivery:
    """A ``webhook.test`` event to this endpoint alone, whatever its filter (enabled or not)."""
    now = utcnow()
    with database.session(write=True) as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            raise WebhookError(404, "not_found", f"no webhook endpoint {endpoint_id}")
        body = event_body(
            TEST_EVENT, {"endpoint": {"id": endpoint.id, "name": endpoint.name}, "requested_by": actor}, now
        )
        row = queue_delivery(
            session, endpoint, event_id=new_event_id(), event_type=TEST_EVENT, body=body, created_by=actor
        )
        session.expunge(row)
        return row
