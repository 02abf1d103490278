"""``Idempotency-Key`` on node creation: whose key it is, how long it lasts, what a retry gets.

A key belongs to its caller's user (``user:<id>``): the same user retrying, from any of their
sessions or API tokens, gets the first node and job back; another user's identical key is theirs
alone and creates their own node. A key lasts 24 hours, as Stripe's do: after that it may be used
anew, and the hourly ``nodes.prune_idempotency_keys`` job deletes expired keys.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodewright.db.models import IdempotencyKey
from nodewright.db.types import utcnow
from nodewright.jobs.context import JobContext
from nodewright.jobs.registry import job_handler, registry

TTL = dt.timedelta(hours=24)
PRUNE_KIND = "nodes.prune_idempotency_keys"
PRUNE_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True)
class CallerKey:
    """One caller's key: ``scope`` names the caller, ``key`` is what they sent."""

    scope: str
    key: str

    @classmethod
    def for_user(cls, user_id: int, key: str) -> CallerKey:
        return cls(scope=f"user:{user_id}", key=key)


def live(session: Session, caller_key: CallerKey, now: dt.datetime | None = None) -> IdempotencyKey | None:
    """The caller's key if it has not expired."""
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.scope == caller_key.scope, IdempotencyKey.key == caller_key.key
        )
    )
    if row is None or row.expires_at <= (now or utcnow()):
        return None
    return row


def claim(session: Session, caller_key: CallerKey, *, node_id: int, digest: str) -> None:
    """Record the key for ``node_id`` in the node's own transaction. An expired copy is removed
    first; a live one held by a concurrent request makes the flush fail (IntegrityError), and the
    caller answers as that request did."""
    now = utcnow()
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.scope == caller_key.scope,
            IdempotencyKey.key == caller_key.key,
            IdempotencyKey.expires_at <= now,
        )
    )
    session.add(
        IdempotencyKey(
            scope=caller_key.scope,
            key=caller_key.key,
            request_digest=digest,
            node_id=node_id,
            created_at=now,
            expires_at=now + TTL,
        )
    )
    session.flush()


def prune(session: Session, *, now: dt.datetime | None = None, limit: int = 1000) -> int:
    ids = list(
        session.scalars(
            select(IdempotencyKey.id).where(IdempotencyKey.expires_at <= (now or utcnow())).limit(limit)
        )
    )
    if ids:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids)))
    return len(ids)


@job_handler(PRUNE_KIND, max_attempts=3)
def prune_keys(ctx: JobContext) -> dict[str, Any]:
    """Delete expired keys, hourly: they answer nothing any more and would only grow the table."""
    deleted = 0
    while True:
        with ctx.transaction() as session:
            batch = prune(session)
        deleted += batch
        ctx.check_canceled()
        if batch < 1000:
            break
    if deleted:
        ctx.log(f"pruned {deleted} expired idempotency key(s)", deleted=deleted)
    return {"deleted": deleted}


registry.periodic(PRUNE_KIND, PRUNE_INTERVAL_SECONDS)
