"""The demo's simulator as a provider connection, so a first try goes from sign-in to a node without
looking up an endpoint or a token."""

from __future__ import annotations

import secrets
import string
from typing import NamedTuple

from sqlalchemy import select

from nodewright.context import AppContext
from nodewright.db.models import ProviderConnection
from nodewright.providers import connections
from nodewright.security.secret import Secret

CONNECTION_NAME = "simulator"
ACTOR = "system:demo"


class Connected(NamedTuple):
    line: str  # for the operator
    provider_id: int | None  # the connection to this run's simulator; None when there is none


def connect_simulator(ctx: AppContext, api_url: str, ssh_port: int) -> Connected:
    """Create (or point at this run's simulator) the connection named ``simulator``. The simulator
    takes any 64-character token, so one is made up once."""
    with ctx.database.session() as session:
        existing = session.scalar(
            select(ProviderConnection).where(ProviderConnection.name == CONNECTION_NAME)
        )
    # A new endpoint takes a token with it (no stored token is sent to another endpoint).
    token = Secret("".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(64)))
    allowed = ctx.settings.allowed_provider_endpoints
    try:
        if existing is None:
            created = connections.create_connection(
                ctx.database, ctx.box, actor=ACTOR, kind="hetzner", name=CONNECTION_NAME, token=token,
                api_endpoint=api_url, ssh_port=ssh_port, allowed_endpoints=allowed,
            )  # fmt: skip
            return Connected(f"Provider connection '{CONNECTION_NAME}' created for the simulator.",
                             created.id)  # fmt: skip
        if not (existing.api_endpoint or "").startswith("http://127.0.0.1:"):
            # Not one the demo made (a real account of that name in this database): left alone.
            return Connected(f"Provider connection '{CONNECTION_NAME}' exists and is not a simulator: "
                             "left as it is; connect the simulator on /providers under another name.",
                             None)  # fmt: skip
        if (existing.api_endpoint, existing.ssh_port) != (api_url, ssh_port):
            connections.update_connection(
                ctx.database, ctx.box, existing.id, actor=ACTOR, token=token, api_endpoint=api_url,
                ssh_port=ssh_port, allowed_endpoints=allowed,
            )  # fmt: skip
    except connections.ConnectionError_ as exc:
        line = f"Could not connect the simulator as provider '{CONNECTION_NAME}': {exc.message}."
        return Connected(f"{line} See /providers.", None)
    return Connected(f"Provider connection '{CONNECTION_NAME}' points at the simulator.", existing.id)
