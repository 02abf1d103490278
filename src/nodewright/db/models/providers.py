"""Provider connections: one cloud project each, with its encrypted token and what we learned of it.

The row is also where every worker process shares the project's rate-limit budget (the snapshot
columns) and the catalog's last good copy, so that several processes on several machines agree
without talking to each other.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nodewright.db.base import Base
from nodewright.db.types import UTCDateTime, utcnow


class ProviderConnection(Base):
    __tablename__ = "provider_connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_secret_id: Mapped[int] = mapped_column(ForeignKey("stored_secrets.id", ondelete="RESTRICT"))
    token_fingerprint: Mapped[str] = mapped_column(String(32))
    api_endpoint: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ssh_port: Mapped[int] = mapped_column(Integer, default=22)
    ssh_user: Mapped[str] = mapped_column(String(32), default="root")
    status: Mapped[str] = mapped_column(String(24), default="unchecked")
    last_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    unavailable_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_hint: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_retryable: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    rate_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate_remaining: Mapped[float | None] = mapped_column(Float, nullable=True)
    rate_reset_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    rate_observed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # nodewright's own client SSH key for this project: private half encrypted, registered once.
    client_key_secret_id: Mapped[int | None] = mapped_column(
        ForeignKey("stored_secrets.id", ondelete="SET NULL"), nullable=True
    )
    client_key_public: Mapped[str | None] = mapped_column(Text, nullable=True)
    client_key_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_key_provider_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    catalog: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    catalog_fetched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    learned_timings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
