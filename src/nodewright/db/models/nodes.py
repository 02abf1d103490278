"""Nodes: a server acquired from a provider connection, provisioned and verified by a job.

A node row is the operator's intent; it commits with its ``node_provision`` job before any provider
call. What the stages learn (server id, SSH target, pinned host key, evidence) is written back here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from nodewright.db.base import Base
from nodewright.db.types import UTCDateTime, utcnow


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (
        # A name is taken while its node is not released; a released node's name may be reused.
        Index(
            "uq_nodes_live_name",
            "name",
            unique=True,
            sqlite_where=text("status != 'released'"),
            postgresql_where=text("status != 'released'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    contract: Mapped[str] = mapped_column(String(32))
    provider_id: Mapped[int] = mapped_column(
        ForeignKey("provider_connections.id", ondelete="RESTRICT"), index=True
    )
    location: Mapped[str] = mapped_column(String(64))
    server_type: Mapped[str] = mapped_column(String(64))
    image: Mapped[str] = mapped_column(String(128))
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    profile: Mapped[str] = mapped_column(String(63))
    ssh_authorized_keys: Mapped[list[str]] = mapped_column(JSON, default=list)

    status: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_hint: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_retryable: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    server_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    server_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    server_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    ssh_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ssh_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ssh_user: Mapped[str | None] = mapped_column(String(32), nullable=True)
    host_public_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    host_key_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    host_key_secret_id: Mapped[int | None] = mapped_column(
        ForeignKey("stored_secrets.id", ondelete="SET NULL"), nullable=True
    )
    price_hourly: Mapped[str | None] = mapped_column(String(32), nullable=True)
    price_monthly: Mapped[str | None] = mapped_column(String(32), nullable=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    request_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    ready_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OrphanServer(Base):
    """A server carrying this installation's labels that no live node owns (seen by reconcile)."""

    __tablename__ = "orphan_servers"
    __table_args__ = (Index("uq_orphan_servers_provider_server", "provider_id", "server_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider_connections.id", ondelete="CASCADE"))
    server_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16))
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    node_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # from the ownership label
    ipv4: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
