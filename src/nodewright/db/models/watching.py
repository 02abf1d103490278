"""Watching: each watched node's health, its bounded check history and daily roll-up, the
per-connection list clock of the sweep, and maintenance pauses.

``node_id`` and ``provider_id`` carry no foreign keys, like ``nodes.job_id``: rows of a released
node are dropped by the watcher itself, and a batch migration of ``nodes`` on SQLite must not
cascade into them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nodewright.db.base import Base
from nodewright.db.types import UTCDateTime, utcnow


class NodeHealth(Base):
    """The watcher's running view of one node: counters of the state machine and the schedule."""

    __tablename__ = "node_health"

    node_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # passing | failing (failures below the threshold) | degraded | unknown (never checked)
    health: Mapped[str] = mapped_column(String(16), default="unknown", index=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_successes: Mapped[int] = mapped_column(Integer, default=0)
    last_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    degraded_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What failed last: [{"name", "detail"}], already redacted and cut.
    last_failure: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Set by whatever restarts the node (remediation): no consequences of checks before it.
    grace_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Failed checks since the node became degraded (alerts resend every N of them).
    degraded_checks: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class NodeCheck(Base):
    """One check of one node (the last ``HISTORY_KEEP`` per node are kept)."""

    __tablename__ = "node_checks"
    __table_args__ = (Index("ix_node_checks_node_at", "node_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # The node's health after this check (passing, failing, degraded), so a timeline needs no replay.
    health: Mapped[str] = mapped_column(String(16))
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class NodeCheckDay(Base):
    """Per node and UTC day: how many checks passed and failed (kept past the bounded history)."""

    __tablename__ = "node_check_days"
    __table_args__ = (Index("uq_node_check_days_node_day", "node_id", "day", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(Integer)
    day: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD, UTC
    passed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class WatchSweep(Base):
    """Per provider connection: when the sweep last listed its servers (one call per interval)."""

    __tablename__ = "watch_sweeps"

    provider_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    listed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    list_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    servers: Mapped[int] = mapped_column(Integer, default=0)


class MaintenanceWindow(Base):
    """A pause: one node (``node_id``) or every node matching a label selector, until ``ends_at``."""

    __tablename__ = "maintenance_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    selector: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str] = mapped_column(String(500))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class NodeRemediation(Base):
    """One step of a node's remediation ladder (reboot, reprovision, replace), or the record that
    the ladder or budget ran out (``action`` = ``exhausted``, not counted as an attempt).

    ``state``: ``queued`` (waiting for its job: the brake is looked at again when it starts),
    ``running``, ``waiting`` (done; the checks after the grace period decide), ``succeeded`` (the
    node recovered), ``failed``, ``held`` (the brake was engaged when the job started), ``skipped``
    (no longer needed), ``canceled``, ``exhausted``.
    """

    __tablename__ = "node_remediations"
    __table_args__ = (Index("ix_node_remediations_node", "node_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(Integer)
    provider_id: Mapped[int] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # 1-based position in this episode
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    old_server_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_server_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RemediationBrake(Base):
    """Per provider connection: the fleet brake (engaged while too many watched nodes are degraded)."""

    __tablename__ = "remediation_brakes"

    provider_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    engaged: Mapped[bool] = mapped_column(Boolean, default=False)
    degraded: Mapped[int] = mapped_column(Integer, default=0)
    watched: Mapped[int] = mapped_column(Integer, default=0)
    threshold_percent: Mapped[float] = mapped_column(Float, default=40.0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    engaged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
