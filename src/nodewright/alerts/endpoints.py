"""Webhook endpoints as a service: create, change, rotate the secret, delete; for API, pages, CLI.

The signing secret is made here, stored encrypted (secret box), and handed back exactly once, by
``create_endpoint`` and ``rotate_secret``; every other answer carries its fingerprint only. A
rotation keeps the previous secret signing for an overlap window, so receivers can switch over.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodewright.alerts import signing
from nodewright.alerts.events import EVENT_TYPES
from nodewright.alerts.urls import Resolver, UrlRefused, check_url, system_resolver
from nodewright.db.database import Database
from nodewright.db.models import StoredSecret, WebhookDelivery, WebhookEndpoint
from nodewright.db.types import utcnow
from nodewright.security import audit
from nodewright.security.secret import Secret
from nodewright.security.secretbox import SecretBox

SECRET_PURPOSE = "webhook_secret"  # noqa: S105 (a label, not a credential)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
DEFAULT_OVERLAP_SECONDS = 86_400
MAX_OVERLAP_SECONDS = 7 * 86_400
MAX_RESEND_EVERY = 10_000


class WebhookError(Exception):
    """A refused change: ``status`` for HTTP, ``field`` names the input."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class WithSecret:
    endpoint: WebhookEndpoint
    secret: Secret  # shown to the caller once, never again


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise WebhookError(
            422,
            "invalid_request",
            "the name must be 1-64 letters, digits, spaces, dots, dashes or underscores, "
            "starting with a letter or digit",
            "name",
        )


def check_events(events: list[str]) -> list[str]:
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise WebhookError(
            422,
            "invalid_request",
            f"unknown event type(s) {unknown}; known: {', '.join(EVENT_TYPES)}",
            "events",
        )
    return list(dict.fromkeys(events))


def check_endpoint_url(url: str, allowed: tuple[str, ...], resolver: Resolver = system_resolver) -> None:
    try:
        check_url(url, allowed, resolver)
    except UrlRefused as refused:
        raise WebhookError(422, "url_refused", refused.message, "url") from None


def check_resend(value: int) -> None:
    if not 0 <= value <= MAX_RESEND_EVERY:
        raise WebhookError(
            422, "invalid_request", f"resend_every_checks must be 0-{MAX_RESEND_EVERY}", "resend_every_checks"
        )


def _require(session: Session, endpoint_id: int) -> WebhookEndpoint:
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        raise WebhookError(404, "not_found", f"no webhook endpoint {endpoint_id}")
    return row


def _name_taken(session: Session, name: str, other_than: int | None = None) -> bool:
    found = session.scalar(select(WebhookEndpoint.id).where(WebhookEndpoint.name == name))
    return found is not None and found != other_than


def create_endpoint(
    database: Database,
    box: SecretBox,
    *,
    actor: str,
    name: str,
    url: str,
    events: list[str],
    enabled: bool = True,
    resend_every_checks: int = 0,
    allowed: tuple[str, ...] = (),
    resolver: Resolver = system_resolver,
) -> WithSecret:
    check_name(name)
    events = check_events(events)
    check_resend(resend_every_checks)
    check_endpoint_url(url, allowed, resolver)
    secret = signing.new_secret()
    with database.session(write=True) as session:
        if _name_taken(session, name):
            raise WebhookError(409, "conflict", f"a webhook endpoint named {name!r} exists", "name")
        stored = box.store(session, SECRET_PURPOSE, secret)
        row = WebhookEndpoint(
            name=name,
            url=url,
            events=events,
            enabled=enabled,
            resend_every_checks=resend_every_checks,
            secret_id=stored.id,
            secret_fingerprint=signing.fingerprint(secret),
            created_by=actor[:128],
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="webhook.create",
            target=f"webhook:{row.id}",
            outcome="ok",
            detail={"name": name, "events": events, "secret_fingerprint": row.secret_fingerprint},
        )
        session.expunge(row)
    return WithSecret(row, secret)


def list_endpoints(database: Database) -> list[WebhookEndpoint]:
    with database.session() as session:
        rows = list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
        session.expunge_all()
        return rows


def get_endpoint(database: Database, endpoint_id: int) -> WebhookEndpoint:
    with database.session() as session:
        row = _require(session, endpoint_id)
        session.expunge(row)
        return row


def update_endpoint(
    database: Database,
    endpoint_id: int,
    *,
    actor: str,
    name: str | None = None,
    url: str | None = None,
    events: list[str] | None = None,
    enabled: bool | None = None,
    resend_every_checks: int | None = None,
    allowed: tuple[str, ...] = (),
    resolver: Resolver = system_resolver,
) -> WebhookEndpoint:
    if name is not None:
        check_name(name)
    if events is not None:
        events = check_events(events)
    if resend_every_checks is not None:
        check_resend(resend_every_checks)
    if url is not None:
        check_endpoint_url(url, allowed, resolver)
    with database.session(write=True) as session:
        row = _require(session, endpoint_id)
        if name is not None and _name_taken(session, name, other_than=row.id):
            raise WebhookError(409, "conflict", f"a webhook endpoint named {name!r} exists", "name")
        changed = {}
        for key, value in (
            ("name", name),
            ("url", url),
            ("events", events),
            ("enabled", enabled),
            ("resend_every_checks", resend_every_checks),
        ):
            if value is not None:
                setattr(row, key, value)
                changed[key] = value
        audit.record(
            session,
            actor=actor,
            action="webhook.update",
            target=f"webhook:{row.id}",
            outcome="ok",
            detail={"changed": sorted(changed)},
        )
        session.flush()
        session.expunge(row)
        return row


def rotate_secret(
    database: Database,
    box: SecretBox,
    endpoint_id: int,
    *,
    actor: str,
    overlap_seconds: int = DEFAULT_OVERLAP_SECONDS,
) -> WithSecret:
    """A new secret signs from now on; the current one keeps signing for ``overlap_seconds``
    (0: at once no more). A secret older than that (an earlier rotation's) is deleted."""
    if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
        raise WebhookError(
            422, "invalid_request", f"overlap_seconds must be 0-{MAX_OVERLAP_SECONDS}", "overlap_seconds"
        )
    secret = signing.new_secret()
    with database.session(write=True) as session:
        row = _require(session, endpoint_id)
        stale = row.previous_secret_id
        stored = box.store(session, SECRET_PURPOSE, secret)
        if overlap_seconds > 0:
            row.previous_secret_id = row.secret_id
            row.previous_expires_at = utcnow() + dt.timedelta(seconds=overlap_seconds)
            retired = stale
        else:
            row.previous_secret_id = None
            row.previous_expires_at = None
            retired = row.secret_id
        row.secret_id = stored.id
        row.secret_fingerprint = signing.fingerprint(secret)
        session.flush()
        for secret_id in {stale, retired} - {None, row.previous_secret_id, row.secret_id}:
            old = session.get(StoredSecret, secret_id)
            if old is not None:
                session.delete(old)
        audit.record(
            session,
            actor=actor,
            action="webhook.rotate",
            target=f"webhook:{row.id}",
            outcome="ok",
            detail={"secret_fingerprint": row.secret_fingerprint, "overlap_seconds": overlap_seconds},
        )
        session.flush()
        session.expunge(row)
    return WithSecret(row, secret)


def signing_secrets(session: Session, box: SecretBox, row: WebhookEndpoint, now: dt.datetime) -> list[Secret]:
    """The secrets that sign now: the current one, then the previous one while its overlap lasts."""
    keys = [box.load(session, row.secret_id)]
    if (
        row.previous_secret_id is not None
        and row.previous_expires_at is not None
        and now < row.previous_expires_at
    ):
        keys.append(box.load(session, row.previous_secret_id))
    return keys


def delete_endpoint(database: Database, endpoint_id: int, *, actor: str) -> None:
    """Remove the endpoint, its secrets and its delivery log; pending deliveries end at their next try."""
    with database.session(write=True) as session:
        row = _require(session, endpoint_id)
        secret_ids = [i for i in (row.secret_id, row.previous_secret_id) if i is not None]
        name = row.name
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
        session.delete(row)
        session.flush()
        for secret_id in secret_ids:
            old = session.get(StoredSecret, secret_id)
            if old is not None:
                session.delete(old)
        audit.record(
            session,
            actor=actor,
            action="webhook.delete",
            target=f"webhook:{endpoint_id}",
            outcome="ok",
            detail={"name": name},
        )
