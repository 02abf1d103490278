"""The ``webhooks.deliver`` job: sign and POST one delivery, retried with exponential backoff for
up to three days (from the delivery's creation); after that, or on ``410 Gone``, it is failed.

Each attempt signs anew (fresh ``webhook-timestamp``, today's secrets) over the stored body, with
the delivery's ``event_id`` as ``webhook-id`` on every attempt, so receivers can deduplicate.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from nodewright import runtime
from nodewright.alerts import sender, signing
from nodewright.alerts.deliveries import DELIVER_KIND
from nodewright.alerts.endpoints import signing_secrets
from nodewright.db.models import WebhookDelivery, WebhookEndpoint
from nodewright.db.types import utcnow
from nodewright.jobs.context import JobContext
from nodewright.jobs.errors import RetryableError, TerminalError
from nodewright.jobs.registry import job_handler
from nodewright.security.secret import Secret

MAX_AGE = dt.timedelta(days=3)
BACKOFF_BASE = 30.0
BACKOFF_CAP = 6 * 3600.0
# Enough attempts to span three days at this backoff (30 s doubling to 6 h); the age check ends it.
MAX_ATTEMPTS = 30


def nominal_delay(attempt: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt - 1, 30))


def _finish(ctx: JobContext, delivery_id: int, **fields: Any) -> None:
    with ctx.transaction() as session:
        row = session.get(WebhookDelivery, delivery_id)
        if row is not None:
            for key, value in fields.items():
                setattr(row, key, value)


@job_handler(DELIVER_KIND, max_attempts=MAX_ATTEMPTS, timeout_seconds=60.0, backoff_base=BACKOFF_BASE,
             backoff_cap=BACKOFF_CAP)  # fmt: skip
def deliver(ctx: JobContext) -> dict[str, Any]:
    delivery_id = int(ctx.args["delivery_id"])
    now = utcnow()
    with ctx.database.session() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery is not None else None
        if delivery is None or endpoint is None:
            return {"delivery_id": delivery_id, "skipped": "endpoint deleted"}
        if delivery.status != "pending":
            return {"delivery_id": delivery_id, "status": delivery.status}
        keys: list[Secret] = signing_secrets(session, runtime.secret_box(), endpoint, now)
        url, event_id, body, created_at = endpoint.url, delivery.event_id, delivery.body, delivery.created_at
        attempts = delivery.attempts
    if now - created_at > MAX_AGE:
        _finish(ctx, delivery_id, status="failed", last_error="given up: not delivered within 3 days",
                next_attempt_at=None)  # fmt: skip
        raise TerminalError("delivery_expired", "not delivered within 3 days")
    timestamp = int(time.time())
    payload = body.encode()
    headers = {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(keys, event_id, timestamp, payload),
    }
    result = sender.post(url, payload, headers, allowed=runtime.settings().allowed_webhook_endpoints)
    attempts += 1
    fields: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": result.status_code,
        "latency_ms": result.latency_ms,
        "last_error": result.error,
    }
    if result.ok:
        _finish(ctx, delivery_id, status="succeeded", delivered_at=utcnow(), next_attempt_at=None, **fields)
        ctx.log(f"delivered: HTTP {result.status_code}", attempt=attempts)
        return {"delivery_id": delivery_id, "status": "succeeded", "status_code": result.status_code}
    next_at = utcnow() + dt.timedelta(seconds=nominal_delay(ctx.attempt))
    final = not result.retryable or ctx.attempt >= ctx.max_attempts or next_at - created_at > MAX_AGE
    if result.status_code == 410:
        with ctx.transaction() as session:
            gone = session.get(WebhookEndpoint, endpoint.id)
            if gone is not None:
                gone.enabled = False
    _finish(ctx, delivery_id, status="failed" if final else "pending",
            next_attempt_at=None if final else next_at, **fields)  # fmt: skip
    message = f"attempt {attempts} failed: {result.error}"
    ctx.log(message, "warning", attempt=attempts)
    if final:
        raise TerminalError("webhook_failed", message)
    raise RetryableError("webhook_failed", message)
