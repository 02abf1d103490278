"""The process's shared action poller follows a connection to a new endpoint."""

from __future__ import annotations

from nodewright.db.database import Database
from nodewright.providers.base import ConnectionInfo
from nodewright.providers.hetzner.adapter import HetznerAdapter
from nodewright.providers.registry import make_adapter
from nodewright.security.secret import Secret


def test_a_moved_connection_polls_its_new_endpoint(database: Database) -> None:
    token = Secret("t" * 64)
    before = make_adapter(
        ConnectionInfo(7, "hetzner", token, "http://127.0.0.1:1/v1", 22, "root"), database=database
    )
    after = make_adapter(
        ConnectionInfo(7, "hetzner", token, "http://127.0.0.1:2/v1", 22, "root"), database=database
    )
    try:
        assert isinstance(after, HetznerAdapter) and isinstance(before, HetznerAdapter)
        assert after.poller._transport.endpoint == "http://127.0.0.1:2/v1"
    finally:
        before.close()
        after.close()
