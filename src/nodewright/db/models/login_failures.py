"""Failed sign-ins, one row per failed password check, seen by every ``serve`` process."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from nodewright.db.base import Base
from nodewright.db.types import UTCDateTime, utcnow


class LoginFailure(Base):
    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_account", "account", "failed_at"),
        Index("ix_login_failures_address", "address", "failed_at"),
        Index("ix_login_failures_failed_at", "failed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The throttle's keys: a keyed digest of the user name as typed (folded; the text itself is
    # often a password typed into the wrong field), and the client's address key.
    account: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A right password from the same place clears the pair's count, not the address's or account's.
    pair_cleared: Mapped[bool] = mapped_column(Boolean, default=False)
