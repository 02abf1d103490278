"""Idempotency keys: a caller's ``Idempotency-Key`` and the node it created, for 24 hours.

A key belongs to the caller (the user behind the session or API token, so that two tokens of one
user share their keys, as Stripe's account-scoped keys do): another user's identical key is another
key. The uniqueness on (scope, key) is what lets concurrent retries get one node.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from nodewright.db.base import Base
from nodewright.db.types import UTCDateTime, utcnow


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("uq_idempotency_keys_scope_key", "scope", "key", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))  # "user:<id>"
    key: Mapped[str] = mapped_column(String(128))
    request_digest: Mapped[str] = mapped_column(String(64))
    # No foreign key (like nodes.job_id): nodes are never deleted, and on SQLite a batch migration
    # of ``nodes`` recreates that table, which a cascading key would follow by deleting every key.
    node_id: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
