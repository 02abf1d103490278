"""The demo's provider connection to its simulator, when it cannot be made: a line that says why, no
crash, nothing stored."""

from __future__ import annotations

from nodewright.context import AppContext
from nodewright.demo import connect_simulator
from nodewright.providers import connections


def test_a_refused_simulator_connection_is_reported_not_raised(app_context: AppContext) -> None:
    # The test settings allow loopback endpoints only: this one is refused before any request.
    line, provider_id = connect_simulator(app_context, "http://198.51.100.7:8480/v1", 22)
    assert provider_id is None
    assert line.startswith("Could not connect the simulator as provider 'simulator': ")
    assert "not allowed" in line
    assert connections.list_connections(app_context.database) == []


def test_a_real_connection_named_simulator_is_left_alone(app_context: AppContext) -> None:
    """The demo run against a database that holds a real account named 'simulator' must not point
    it at loopback or replace its token."""
    from nodewright.db.models import ProviderConnection
    from nodewright.security.secret import Secret

    with app_context.database.session(write=True) as session:
        secret = app_context.box.store(session, connections.TOKEN_PURPOSE, Secret("r" * 64))
        session.add(ProviderConnection(kind="hetzner", name="simulator", token_secret_id=secret.id,
                                       token_fingerprint="sha256:real", api_endpoint=None, ssh_port=22,
                                       ssh_user="root", status="ok", created_by="user:admin"))  # fmt: skip
    line, provider_id = connect_simulator(app_context, "http://127.0.0.1:8480/v1", 22)
    assert "is not a simulator: left as it is" in line and provider_id is None
    [row] = connections.list_connections(app_context.database)
    assert (row.api_endpoint, row.token_fingerprint) == (None, "sha256:real")


def test_renaming_a_connection_outside_a_narrowed_allowlist_works_but_a_new_token_is_checked(
    app_context: AppContext,
) -> None:
    """A connection made before the allowlist narrowed can still be renamed; a new token, which
    would be sent to its endpoint, is refused there."""
    from nodewright.db.models import ProviderConnection
    from nodewright.security.secret import Secret

    with app_context.database.session(write=True) as session:
        secret = app_context.box.store(session, connections.TOKEN_PURPOSE, Secret("p" * 64))
        row = ProviderConnection(
            kind="hetzner", name="via-proxy", token_secret_id=secret.id, token_fingerprint="sha256:p",
            api_endpoint="http://proxy.internal/v1", ssh_port=22, ssh_user="root", status="ok",
            created_by="user:admin",
        )  # fmt: skip
        session.add(row)
        session.flush()
        row_id = row.id
    narrowed = ("https://api.hetzner.cloud/",)
    renamed = connections.update_connection(app_context.database, app_context.box, row_id, actor="user:admin",
                                            name="via-proxy-2", allowed_endpoints=narrowed)  # fmt: skip
    assert renamed.name == "via-proxy-2"
    try:
        connections.update_connection(app_context.database, app_context.box, row_id, actor="user:admin",
                                      token=Secret("q" * 64), allowed_endpoints=narrowed)  # fmt: skip
    except connections.ConnectionError_ as exc:
        assert "not allowed here" in exc.message and "https://api.hetzner.cloud/" in exc.message
    else:
        raise AssertionError("a new token was accepted for an endpoint outside the allowlist")
