"""The demo's provider connection to its simulator, when it cannot be made: a line that says why, no
crash, nothing stored."""

from __future__ import annotations

from nodewright.context import AppContext
from nodewright.demo import connect_simulator
from nodewright.providers import connections


def test_a_refused_simulator_connection_is_reported_not_raised(app_context: AppContext) -> None:
    # The test settings allow loopback endpoints only: this one is refused before any request.
    line = connect_simulator(app_context, "http://198.51.100.7:8480/v1", 22)
    assert line.startswith("Could not connect the simulator as provider 'simulator': ")
    assert "not allowed" in line
    assert connections.list_connections(app_context.database) == []
