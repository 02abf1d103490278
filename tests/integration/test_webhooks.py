"""Webhook deliveries to a real HTTP receiver on loopback (allowed by NODEWRIGHT_WEBHOOK_ENDPOINTS in
the test settings), through the real job engine, on SQLite and PostgreSQL.

The signature check below is written from the Standard Webhooks spec, not from the product code:
the secret is base64 after ``whsec_``; the signature is base64(HMAC-SHA256(key, "id.timestamp.body"));
the header may list several space-separated ``v1,<sig>`` values (rotation overlap).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from nodewright import alerts
from nodewright.context import AppContext
from nodewright.db.models import Job, WebhookDelivery, WebhookEndpoint
from nodewright.jobs.registry import load_handler_modules
from nodewright.jobs.registry import registry as default_registry
from nodewright.security.roles import Role
from tests.support.apps import RoleUser
from tests.support.jobs import make_due, run_next
from tests.support.webhook_receiver import Received, Receiver, webhook_receiver

load_handler_modules()


def verify(secret: str, message: Received) -> bool:
    """Standard Webhooks verification, from the spec."""
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_") :])
    msg_id = message.headers["webhook-id"]
    timestamp = message.headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > 300:  # the spec's replay tolerance
        return False
    signed = f"{msg_id}.{timestamp}.{message.body.decode()}".encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in message.headers["webhook-signature"].split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def admin(role_users: dict[Role, RoleUser]) -> dict[str, str]:
    return role_users[Role.admin].headers


def create(client: TestClient, headers: dict[str, str], url: str, **extra: Any) -> dict[str, Any]:
    body = {"name": extra.pop("name", "hook"), "url": url, **extra}
    response = client.post("/api/webhooks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def drain(ctx: AppContext) -> list[str]:
    outcomes = []
    while (outcome := run_next(ctx.database, registry=default_registry)) is not None:
        outcomes.append(outcome)
    return outcomes


def emit(ctx: AppContext, event_type: str, data: dict[str, Any]) -> None:
    with ctx.database.session(write=True) as session:
        alerts.emit(session, event_type, data)


NODE_DATA = {"node": {"id": 7, "name": "web-1", "status": "lost"}, "reason": "server gone", "links": {}}


def test_a_delivery_is_signed_per_standard_webhooks(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], receiver: Receiver
) -> None:
    created = create(client, admin(role_users), receiver.url)
    secret = created["secret"]
    emit(app_context, "node.lost", NODE_DATA)
    assert drain(app_context) == ["succeeded"]
    [message] = receiver.received
    assert verify(secret, message)
    assert message.headers["webhook-id"].startswith("msg_")
    body = json.loads(message.body)
    assert body["type"] == "node.lost" and body["data"] == NODE_DATA and body["timestamp"]
    # The check can fail: another secret, or a body changed by one byte, does not verify.
    other = create(client, admin(role_users), receiver.url, name="other")["secret"]
    assert not verify(other, message)
    tampered = Received(message.path, message.headers, message.body.replace(b"web-1", b"web-2"))
    assert not verify(secret, tampered)
    log = client.get(f"/api/webhooks/{created['id']}/deliveries", headers=admin(role_users)).json()
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("succeeded", 1, 200)]
    assert log[0]["latency_ms"] is not None and log[0]["event_id"] == message.headers["webhook-id"]


def test_a_failing_receiver_gets_retries_with_the_same_webhook_id(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], receiver: Receiver
) -> None:
    """Through the real ``webhooks.deliver`` handler (the registry's, claimed and run by the job
    engine): every attempt carries the event's ``webhook-id`` and is signed anew with its own
    timestamp, which is the attempt's time, not the event's (the delivery is backdated an hour
    here, beyond the receivers' 5-minute replay tolerance that ``verify`` applies)."""
    import datetime as dt

    created = create(client, admin(role_users), receiver.url)
    receiver.statuses = [500, 500, 200]
    emit(app_context, "node.failed", NODE_DATA)
    with app_context.database.session(write=True) as session:
        job_id = session.scalars(select(Job.id).where(Job.kind == "webhooks.deliver")).one()
        delivery = session.scalars(select(WebhookDelivery)).one()
        delivery.created_at = delivery.created_at - dt.timedelta(hours=1)
    assert run_next(app_context.database, registry=default_registry) == "retry_wait"
    log = client.get(f"/api/webhooks/{created['id']}/deliveries", headers=admin(role_users)).json()
    assert (log[0]["status"], log[0]["attempts"], log[0]["last_status_code"]) == ("pending", 1, 500)
    assert log[0]["next_attempt_at"] is not None
    make_due(app_context.database, job_id)
    assert run_next(app_context.database, registry=default_registry) == "retry_wait"
    make_due(app_context.database, job_id)
    assert run_next(app_context.database, registry=default_registry) == "succeeded"
    ids = {m.headers["webhook-id"] for m in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1
    assert ids == {log[0]["event_id"]} and len({m.body for m in receiver.received}) == 1
    assert all(verify(created["secret"], m) for m in receiver.received)
    stamps = [int(m.headers["webhook-timestamp"]) for m in receiver.received]
    assert stamps == sorted(stamps)
    # Each signature covers its attempt's timestamp: the same message a second off does not verify.
    for message in receiver.received:
        shifted = {**message.headers, "webhook-timestamp": str(int(message.headers["webhook-timestamp"]) - 1)}
        assert not verify(created["secret"], Received(message.path, shifted, message.body))
    log = client.get(f"/api/webhooks/{created['id']}/deliveries", headers=admin(role_users)).json()
    assert (log[0]["status"], log[0]["attempts"], log[0]["last_status_code"]) == ("succeeded", 3, 200)


def test_a_delivery_older_than_three_days_is_failed(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], receiver: Receiver
) -> None:
    import datetime as dt

    create(client, admin(role_users), receiver.url)
    emit(app_context, "node.failed", NODE_DATA)
    with app_context.database.session(write=True) as session:
        delivery = session.scalars(select(WebhookDelivery)).one()
        delivery.created_at = delivery.created_at - dt.timedelta(days=3, minutes=1)
    assert drain(app_context) == ["failed"]
    assert receiver.received == []
    with app_context.database.session() as session:
        assert session.scalars(select(WebhookDelivery.status)).one() == "failed"


def test_send_again_and_the_test_event(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], receiver: Receiver
) -> None:
    created = create(client, admin(role_users), receiver.url, events=["node.lost"])
    tested = client.post(f"/api/webhooks/{created['id']}/test", headers=admin(role_users))
    assert tested.status_code == 202 and tested.json()["event_type"] == "webhook.test"
    emit(app_context, "node.ready", NODE_DATA)  # filtered out: this endpoint wants node.lost only
    emit(app_context, "node.lost", NODE_DATA)
    assert drain(app_context) == ["succeeded", "succeeded"]
    assert [json.loads(m.body)["type"] for m in receiver.received] == ["webhook.test", "node.lost"]
    first = receiver.received[1]
    log = client.get(f"/api/webhooks/{created['id']}/deliveries", headers=admin(role_users)).json()
    lost = next(d for d in log if d["event_type"] == "node.lost")
    again = client.post(
        f"/api/webhooks/{created['id']}/deliveries/{lost['id']}/redeliver", headers=admin(role_users)
    )
    assert again.status_code == 202 and again.json()["redelivery_of"] == lost["id"]
    assert drain(app_context) == ["succeeded"]
    resent = receiver.received[2]
    assert resent.headers["webhook-id"] == first.headers["webhook-id"] and resent.body == first.body
    assert verify(created["secret"], resent)
    missing = client.post(
        f"/api/webhooks/{created['id']}/deliveries/999999/redeliver", headers=admin(role_users)
    )
    assert missing.status_code == 404
    # A disabled endpoint receives nothing.
    client.patch(f"/api/webhooks/{created['id']}", json={"enabled": False}, headers=admin(role_users))
    emit(app_context, "node.lost", NODE_DATA)
    assert drain(app_context) == [] and len(receiver.received) == 3


def test_rotation_signs_with_both_secrets_during_the_overlap(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], receiver: Receiver
) -> None:
    created = create(client, admin(role_users), receiver.url)
    old = created["secret"]
    rotated = client.post(f"/api/webhooks/{created['id']}/rotate", json={}, headers=admin(role_users))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and rotated.json()["previous_secret_expires_at"] is not None
    emit(app_context, "node.lost", NODE_DATA)
    assert drain(app_context) == ["succeeded"]
    message = receiver.received[-1]
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    assert verify(old, message) and verify(new, message)
    # Rotating with no overlap: only the newest secret signs.
    newest = client.post(
        f"/api/webhooks/{created['id']}/rotate", json={"overlap_seconds": 0}, headers=admin(role_users)
    ).json()["secret"]
    emit(app_context, "node.lost", NODE_DATA)
    assert drain(app_context) == ["succeeded"]
    message = receiver.received[-1]
    assert verify(newest, message) and not verify(new, message) and not verify(old, message)
    bad = client.post(
        f"/api/webhooks/{created['id']}/rotate", json={"overlap_seconds": -1}, headers=admin(role_users)
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "overlap_seconds"


def test_redirects_are_not_followed(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], receiver: Receiver
) -> None:
    with webhook_receiver() as elsewhere:
        receiver.statuses = [302]
        receiver.redirect_to = elsewhere.url
        created = create(client, admin(role_users), receiver.url)
        emit(app_context, "node.lost", NODE_DATA)
        assert drain(app_context) == ["retry_wait"]
        assert elsewhere.received == [] and len(receiver.received) == 1
    log = client.get(f"/api/webhooks/{created['id']}/deliveries", headers=admin(role_users)).json()
    assert log[0]["last_status_code"] == 302 and "redirect" in log[0]["last_error"]


def test_the_url_is_checked_again_at_send_time(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], receiver: Receiver
) -> None:
    created = create(client, admin(role_users), receiver.url)
    with app_context.database.session(write=True) as session:
        row = session.get(WebhookEndpoint, created["id"])
        assert row is not None
        row.url = "http://10.0.0.1/hook"  # as if allowed once, or DNS now answering a private address
    emit(app_context, "node.lost", NODE_DATA)
    assert drain(app_context) == ["retry_wait"]
    assert receiver.received == []
    log = client.get(f"/api/webhooks/{created['id']}/deliveries", headers=admin(role_users)).json()
    assert log[0]["last_error"].startswith("refused") and log[0]["last_status_code"] is None


REFUSED_URLS = [
    "http://127.0.0.1/hook",  # loopback, not named by the allowlist (which names 127.0.0.1 with a port)
    "http://127.0.0.2:8080/",
    "http://localhost:9/",  # a DNS name resolving to loopback
    "http://[::1]:9/",
    "http://[::ffff:127.0.0.1]:9/",
    "http://[::ffff:10.0.0.1]/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://0.0.0.0/",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0x7f000001/",
    "http://100.64.0.1/",
    "ftp://example.com/",
    "http://127.0.0.1:@evil.example/",
    "http://user:pw@example.com/",
    "not a url",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_refused_urls_name_the_field(
    url: str, client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    response = client.post("/api/webhooks", json={"name": "bad", "url": url}, headers=admin(role_users))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["url"]
    with app_context.database.session() as session:
        assert session.scalars(select(WebhookEndpoint)).all() == []


def test_bad_input_names_the_field(
    client: TestClient, role_users: dict[Role, RoleUser], receiver: Receiver
) -> None:
    cases = [
        ({"name": "x", "url": receiver.url, "events": ["node.exploded"]}, "events.0"),
        ({"name": "", "url": receiver.url}, "name"),
        ({"name": "x", "url": receiver.url, "resend_every_checks": -1}, "resend_every_checks"),
        ({"name": "x", "url": receiver.url, "extra": 1}, "extra"),
    ]
    for body, field in cases:
        response = client.post("/api/webhooks", json=body, headers=admin(role_users))
        assert response.status_code == 422, response.text
        assert field in [e["field"] for e in response.json()["errors"]], response.text
    create(client, admin(role_users), receiver.url, name="dup")
    again = client.post("/api/webhooks", json={"name": "dup", "url": receiver.url}, headers=admin(role_users))
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "name"


def test_emit_is_part_of_the_callers_transaction(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], receiver: Receiver
) -> None:
    create(client, admin(role_users), receiver.url)
    with pytest.raises(alerts.UnknownEventType):
        emit(app_context, "node.exploded", NODE_DATA)

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), app_context.database.session(write=True) as session:
        alerts.emit(session, "node.lost", NODE_DATA)
        raise Rollback
    with app_context.database.session() as session:
        assert session.scalars(select(WebhookDelivery)).all() == []
        assert session.scalars(select(Job).where(Job.kind == "webhooks.deliver")).all() == []
    emit(app_context, "node.lost", {"reason": "evil\x1b]0;title\x07text"})
    assert drain(app_context) == ["succeeded"]
    assert json.loads(receiver.received[0].body)["data"]["reason"] == "evil\\x1b]0;title\\x07text"
