"""Provider kind -> adapter. The only place that knows which adapter serves which kind."""

from __future__ import annotations

from nodewright.db.database import Database
from nodewright.providers.base import ConnectionInfo, ProviderAdapter
from nodewright.providers.errors import ErrorCode, ProviderError

# Interactive calls (connect, check, catalog) may use the last requests of the budget; acquisitions
# and polls leave this many for them.
BACKGROUND_RESERVE = 10.0


def make_adapter(
    connection: ConnectionInfo, *, database: Database | None = None, background: bool = False
) -> ProviderAdapter:
    """The adapter for ``connection``. With ``database`` (and a stored connection), calls draw on
    the project's shared rate budget and polls go through the process's shared batched poller."""
    if connection.kind == "hetzner":
        from nodewright.providers.hetzner.factory import hetzner_adapter

        return hetzner_adapter(
            connection, database=database, reserve=BACKGROUND_RESERVE if background else 0.0
        )
    raise ProviderError(
        ErrorCode.provider_error, f"unknown provider kind {connection.kind!r}", retryable=False
    )
