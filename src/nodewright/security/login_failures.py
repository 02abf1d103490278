"""The sign-in throttle shared by every ``serve`` process, through the database.

``LoginThrottle`` counts failures in the process. Behind a load balancer with several ``serve``
processes that multiplied the guesses an attacker got by the number of processes. Here every failed
password check is also a row in ``login_failures``, and before a password is checked the counts of
all processes are read from the database: one guess more than the limit, wherever it lands, is
refused.

The database's counts decide. A refusal they give is remembered in the process's own counter until
it ends, so a flood of refused sign-ins costs one query per key and process, not one per request;
what is allowed goes on to the password check, whose budget bounds those queries and the rows
written (one per evaluated guess). Rows older than the window are deleted as new ones are written.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

from sqlalchemy import ColumnElement, and_, delete, select, update

from nodewright.db.database import Database
from nodewright.db.models.login_failures import LoginFailure
from nodewright.db.types import utcnow
from nodewright.security.throttle import LoginThrottle, address_key


class SharedLoginThrottle:
    """``LoginThrottle``'s interface, with the counts of every process sharing the database."""

    def __init__(
        self, database: Database, local: LoginThrottle, account_digest: Callable[[str], str]
    ) -> None:
        """``account_digest``: the keyed digest (the same in every process) that stands for the
        typed user name in the table, which never holds the text itself."""
        self.database = database
        self.local = local
        self._account_digest = account_digest

    @property
    def max_failures(self) -> int:
        return self.local.max_failures

    @property
    def window_seconds(self) -> float:
        return self.local.window_seconds

    def _keys(self, username: str, address: str) -> tuple[str, str]:
        return self._account_digest(LoginThrottle.account_key(username)), address_key(address)[:64]

    def known_retry_after(self, username: str, address: str) -> int | None:
        """``retry_after`` from what this process already knows, without asking the database."""
        return self.local.retry_after(username, address)

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until the next attempt is allowed, or None when it is allowed now."""
        wait = self.local.retry_after(username, address)
        if wait is not None:
            return wait
        account, address_k = self._keys(username, address)
        window = dt.timedelta(seconds=self.local.window_seconds)
        counts: list[tuple[str, ColumnElement[bool], int]] = [
            (
                "pair",
                and_(
                    LoginFailure.account == account,
                    LoginFailure.address == address_k,
                    LoginFailure.pair_cleared.is_(False),
                ),
                self.local.max_failures,
            ),
            ("address", LoginFailure.address == address_k, self.local.max_failures_per_address),
            ("account", LoginFailure.account == account, self.local.max_failures_per_account),
        ]
        now = utcnow()
        # Per count, the limit-th newest failure in the window (none while under the limit): the
        # count stays at its limit until that failure leaves the window. One statement for all three.
        oldest = [
            select(LoginFailure.failed_at)
            .where(condition, LoginFailure.failed_at > now - window)
            .order_by(LoginFailure.failed_at.desc())
            .offset(limit - 1)
            .limit(1)
            .scalar_subquery()
            for _name, condition, limit in counts
        ]
        with self.database.session() as session:
            row = session.execute(select(*oldest)).one()
        holds: dict[str, int] = {}
        for (name, _condition, _limit), oldest_counted in zip(counts, row, strict=True):
            if oldest_counted is not None:
                holds[name] = max(1, math.ceil((oldest_counted + window - now).total_seconds()))
        if not holds:
            return None
        self.local.hold(username, address, holds)
        return max(holds.values())

    def failed(self, username: str, address: str) -> None:
        account, address_k = self._keys(username, address)
        now = utcnow()
        with self.database.session(write=True) as session:
            session.add(LoginFailure(account=account, address=address_k, failed_at=now))
            session.execute(
                delete(LoginFailure).where(
                    LoginFailure.failed_at <= now - dt.timedelta(seconds=self.local.window_seconds)
                )
            )

    def succeeded(self, username: str, address: str) -> None:
        """Clears the pair's failures in every process (not the address's or the account's)."""
        self.local.succeeded(username, address)
        account, address_k = self._keys(username, address)
        with self.database.session(write=True) as session:
            session.execute(
                update(LoginFailure)
                .where(LoginFailure.account == account, LoginFailure.address == address_k)
                .values(pair_cleared=True)
            )
