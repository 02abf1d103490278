"""Building a Hetzner adapter wired to the shared budget, the shared poller and learned timings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from nodewright.db.database import Database
from nodewright.db.models import ProviderConnection
from nodewright.providers.base import ConnectionInfo
from nodewright.providers.hetzner.adapter import HetznerAdapter
from nodewright.providers.hetzner.poller import ActionPoller, poller_for
from nodewright.providers.hetzner.transport import HetznerTransport
from nodewright.providers.ratebudget import RateBudget


def _load_learned(database: Database, connection_id: int) -> dict[str, float]:
    with database.session() as session:
        value = session.scalar(
            select(ProviderConnection.learned_timings).where(ProviderConnection.id == connection_id)
        )
    return {str(k): float(v) for k, v in (value or {}).items()}


def _store_learned(database: Database, connection_id: int, learned: dict[str, Any]) -> None:
    with database.session(write=True) as session:
        row = session.get(ProviderConnection, connection_id)
        if row is not None:
            row.learned_timings = {k: round(float(v), 3) for k, v in learned.items()}


def hetzner_adapter(
    connection: ConnectionInfo, *, database: Database | None, reserve: float
) -> HetznerAdapter:
    if database is None or connection.id <= 0:
        return HetznerAdapter(connection)
    budget = RateBudget(database, connection.id, reserve=reserve)
    from nodewright.providers.connections import token_fingerprint

    def make_poller() -> ActionPoller:
        poll_budget = RateBudget(database, connection.id, reserve=reserve)
        return ActionPoller(
            HetznerTransport(connection, budget=poll_budget),
            learned=_load_learned(database, connection.id),
            on_learned=lambda learned: _store_learned(database, connection.id, learned),
        )

    # Keyed by the endpoint too: a connection moved to another endpoint must not keep polling
    # the old one through a poller built before the move.
    key = (connection.id, token_fingerprint(connection.token), connection.api_endpoint or "")
    poller = poller_for(key, make_poller)
    return HetznerAdapter(connection, budget=budget, poller=poller)
