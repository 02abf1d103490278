"""Feature gates switched at run time (``PUT /api/gates``); a missing row means the configured default."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from nodewright.db.base import Base
from nodewright.db.types import UTCDateTime, utcnow


class FeatureGate(Base):
    __tablename__ = "feature_gates"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))
