"""Every /api route: no credentials -> 401, a role too low -> 403, the right role -> 2xx.

``CASES`` must list every route the app serves under /api; ``test_every_api_route_is_covered`` fails
when a new route is added without its row here.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nodewright.context import AppContext
from nodewright.security import accounts, api_tokens
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import RoleUser

_names = itertools.count()

Prepared = tuple[str, dict[str, Any] | None]


def _static(path: str, body: dict[str, Any] | None = None) -> Callable[[AppContext], Prepared]:
    return lambda _ctx: (path, body)


def _new_user_body(_ctx: AppContext) -> Prepared:
    return "/api/users", {"username": f"u{next(_names)}", "role": "viewer", "password": "long enough pw 1"}


def _new_token_body(_ctx: AppContext) -> Prepared:
    return "/api/tokens", {"username": "viewer-user", "name": f"t{next(_names)}"}


def _token_to_revoke(ctx: AppContext) -> Prepared:
    with ctx.database.session(write=True) as session:
        user = accounts.get_user(session, "viewer-user")
        assert user is not None
        token, _ = api_tokens.create_token(session, user, f"r{next(_names)}", actor="test")
        return f"/api/tokens/{token.id}", None


def _job_id(ctx: AppContext) -> int:
    from nodewright.jobs.enqueue import enqueue

    with ctx.database.session(write=True) as session:
        job = enqueue(session, "noop", {}, resource_key=f"node:{next(_names)}")
        session.flush()
        return int(job.id)


def _job_path(suffix: str = "") -> Callable[[AppContext], Prepared]:
    return lambda ctx: (f"/api/jobs/{_job_id(ctx)}{suffix}", None)


_sim_url: list[str] = []


@pytest.fixture(autouse=True)
def _simulator(sim: SimServer) -> None:  # noqa: F811
    """Provider routes validate tokens against a provider: the simulator, for every row."""
    _sim_url[:] = [sim.base_url + "/v1"]


def _new_provider_body(_ctx: AppContext) -> Prepared:
    body = {
        "kind": "hetzner",
        "name": f"p{next(_names)}",
        "token": random_token(),
        "api_endpoint": _sim_url[0],
    }
    return "/api/providers", body


def _provider_id(ctx: AppContext) -> int:
    from nodewright.providers import connections
    from nodewright.security.secret import Secret

    row = connections.create_connection(
        ctx.database,
        ctx.box,
        actor="test",
        kind="hetzner",
        name=f"p{next(_names)}",
        token=Secret(random_token()),
        api_endpoint=_sim_url[0],
    )
    return row.id


def _provider_path(suffix: str = "", body: dict[str, Any] | None = None) -> Callable[[AppContext], Prepared]:
    return lambda ctx: (f"/api/providers/{_provider_id(ctx)}{suffix}", body)


def _new_node_body(ctx: AppContext) -> Prepared:
    body = {
        "provider_id": _provider_id(ctx),
        "name": f"n{next(_names)}",
        "location": "fsn1",
        "server_type": "cx23",
        "image": "ubuntu-24.04",
    }
    return "/api/nodes", body


def _node_id(ctx: AppContext, status: str = "ready") -> int:
    from nodewright.db.models import Node

    provider_id = _provider_id(ctx)
    with ctx.database.session(write=True) as session:
        node = Node(
            name=f"n{next(_names)}", contract="provider/v1", provider_id=provider_id, location="fsn1",
            server_type="cx23", image="ubuntu-24.04", labels={}, profile="baseline", ssh_authorized_keys=[],
            status=status, evidence={}, created_by="test",
        )  # fmt: skip
        session.add(node)
        session.flush()
        return int(node.id)


def _node_path(suffix: str = "", status: str = "ready") -> Callable[[AppContext], Prepared]:
    return lambda ctx: (f"/api/nodes/{_node_id(ctx, status)}{suffix}", None)


def _node_with_server(suffix: str) -> Callable[[AppContext], Prepared]:
    """A ready node that has a server (a snapshot needs one); the job itself never runs here."""

    def prepare(ctx: AppContext) -> Prepared:
        from nodewright.db.models import Node

        node_id = _node_id(ctx)
        with ctx.database.session(write=True) as session:
            node = session.get(Node, node_id)
            assert node is not None
            node.server_id = 4_200_000 + node_id
        return f"/api/nodes/{node_id}{suffix}", None

    return prepare


def _orphan_path(suffix: str) -> Callable[[AppContext], Prepared]:
    def prepare(ctx: AppContext) -> Prepared:
        from nodewright.db.models import OrphanServer

        provider_id = _provider_id(ctx)
        with ctx.database.session(write=True) as session:
            orphan = OrphanServer(provider_id=provider_id, server_id=next(_names) + 1000, name="stray",
                                  status="running", labels={})  # fmt: skip
            session.add(orphan)
            session.flush()
            return f"/api/orphans/{orphan.id}{suffix}", None

    return prepare


def _adoptable_orphan(ctx: AppContext) -> Prepared:
    """A failed node of ours whose host key nodewright holds, and the server its label names."""
    from nodewright.db.models import Node, OrphanServer
    from nodewright.providers.acquisition import generate_host_key

    node_id = _node_id(ctx, "failed")
    pair = generate_host_key()
    with ctx.database.session(write=True) as session:
        node = session.get(Node, node_id)
        assert node is not None
        node.host_key_secret_id = ctx.box.store(session, "node_host_key", pair.private_openssh).id
        node.host_public_key = pair.public_openssh
        orphan = OrphanServer(provider_id=node.provider_id, server_id=next(_names) + 1000, name="stray",
                              status="running", labels={}, node_id=node_id, ipv4="198.18.0.9")  # fmt: skip
        session.add(orphan)
        session.flush()
        return f"/api/orphans/{orphan.id}/adopt", None


def _maintenance_body(ctx: AppContext) -> Prepared:
    return "/api/maintenance", {"node_id": _node_id(ctx), "reason": "kernel upgrade", "duration_seconds": 600}


def _maintenance_path(ctx: AppContext) -> Prepared:
    from nodewright.db.models import MaintenanceWindow
    from nodewright.db.types import utcnow

    with ctx.database.session(write=True) as session:
        ends_at = utcnow() + dt.timedelta(hours=1)
        window = MaintenanceWindow(selector={"role": "web"}, reason="r", ends_at=ends_at, created_by="test")
        session.add(window)
        session.flush()
        return f"/api/maintenance/{window.id}", None


def _webhook_id(ctx: AppContext) -> int:
    from nodewright.alerts import endpoints

    found = endpoints.create_endpoint(
        ctx.database, ctx.box, actor="test", name=f"w{next(_names)}", url="http://127.0.0.1:9/hook",
        events=[], allowed=ctx.settings.allowed_webhook_endpoints,
    )  # fmt: skip
    return found.endpoint.id


def _webhook_path(suffix: str = "", body: dict[str, Any] | None = None) -> Callable[[AppContext], Prepared]:
    return lambda ctx: (f"/api/webhooks/{_webhook_id(ctx)}{suffix}", body)


def _new_webhook_body(_ctx: AppContext) -> Prepared:
    return "/api/webhooks", {"name": f"w{next(_names)}", "url": "http://127.0.0.1:9/hook"}


def _delivery_path(ctx: AppContext) -> Prepared:
    from nodewright.alerts import deliveries

    webhook_id = _webhook_id(ctx)
    delivery = deliveries.send_test(ctx.database, webhook_id, actor="test")
    return f"/api/webhooks/{webhook_id}/deliveries/{delivery.id}/redeliver", None


@dataclass(frozen=True)
class Case:
    method: str
    route: str  # the route's path template, as FastAPI knows it
    role: Role
    prepare: Callable[[AppContext], Prepared] = field(repr=False)


CASES = [
    Case("GET", "/api/me", Role.viewer, _static("/api/me")),
    Case("GET", "/api/users", Role.admin, _static("/api/users")),
    Case("POST", "/api/users", Role.admin, _new_user_body),
    Case("PATCH", "/api/users/{username}", Role.admin, _static("/api/users/viewer-user", {"role": "viewer"})),
    Case(
        "POST", "/api/users/{username}/password", Role.admin, _static("/api/users/viewer-user/password", {})
    ),
    Case("GET", "/api/tokens", Role.admin, _static("/api/tokens")),
    Case("POST", "/api/tokens", Role.admin, _new_token_body),
    Case("DELETE", "/api/tokens/{token_id}", Role.admin, _token_to_revoke),
    Case("GET", "/api/audit", Role.admin, _static("/api/audit")),
    Case("GET", "/api/jobs", Role.viewer, _static("/api/jobs")),
    Case("GET", "/api/jobs/{job_id}", Role.viewer, _job_path()),
    Case("GET", "/api/jobs/{job_id}/events", Role.viewer, _job_path("/events")),
    Case("POST", "/api/jobs/{job_id}/cancel", Role.operator, _job_path("/cancel")),
    Case("GET", "/api/nodes", Role.viewer, _static("/api/nodes")),
    Case("POST", "/api/nodes", Role.operator, _new_node_body),
    Case("GET", "/api/nodes/{node_id}", Role.viewer, _node_path()),
    Case("DELETE", "/api/nodes/{node_id}", Role.operator, _node_path()),
    Case("POST", "/api/nodes/{node_id}/retry", Role.operator, _node_path("/retry", "failed")),
    Case("POST", "/api/nodes/{node_id}/snapshot", Role.operator, _node_with_server("/snapshot")),
    Case("GET", "/api/nodes/{node_id}/evidence", Role.viewer, _node_path("/evidence")),
    Case("GET", "/api/nodes/{node_id}/health", Role.viewer, _node_path("/health")),
    Case("GET", "/api/maintenance", Role.viewer, _static("/api/maintenance")),
    Case("GET", "/api/brakes", Role.viewer, _static("/api/brakes")),
    Case("POST", "/api/maintenance", Role.operator, _maintenance_body),
    Case("DELETE", "/api/maintenance/{maintenance_id}", Role.operator, _maintenance_path),
    Case("GET", "/api/orphans", Role.viewer, _static("/api/orphans")),
    Case("POST", "/api/orphans/{orphan_id}/delete", Role.operator, _orphan_path("/delete")),
    Case("POST", "/api/orphans/{orphan_id}/adopt", Role.operator, _adoptable_orphan),
    Case("GET", "/api/gates", Role.viewer, _static("/api/gates")),
    Case("PUT", "/api/gates", Role.admin, _static("/api/gates", {"provider_create": True})),
    Case("GET", "/api/providers", Role.viewer, _static("/api/providers")),
    Case("POST", "/api/providers", Role.admin, _new_provider_body),
    Case("GET", "/api/providers/{provider_id}", Role.viewer, _provider_path()),
    Case("PATCH", "/api/providers/{provider_id}", Role.admin, _provider_path("", {"ssh_port": 2222})),
    Case("DELETE", "/api/providers/{provider_id}", Role.admin, _provider_path()),
    Case("POST", "/api/providers/{provider_id}/check", Role.admin, _provider_path("/check")),
    Case("GET", "/api/providers/{provider_id}/catalog", Role.viewer, _provider_path("/catalog")),
    Case("GET", "/api/webhooks", Role.admin, _static("/api/webhooks")),
    Case("POST", "/api/webhooks", Role.admin, _new_webhook_body),
    Case("GET", "/api/webhooks/{webhook_id}", Role.admin, _webhook_path()),
    Case("PATCH", "/api/webhooks/{webhook_id}", Role.admin, _webhook_path("", {"enabled": False})),
    Case("DELETE", "/api/webhooks/{webhook_id}", Role.admin, _webhook_path()),
    Case("POST", "/api/webhooks/{webhook_id}/rotate", Role.admin, _webhook_path("/rotate")),
    Case("POST", "/api/webhooks/{webhook_id}/test", Role.admin, _webhook_path("/test")),
    Case("GET", "/api/webhooks/{webhook_id}/deliveries", Role.admin, _webhook_path("/deliveries")),
    Case("POST", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", Role.admin, _delivery_path),
]

_BELOW = {Role.operator: Role.viewer, Role.admin: Role.operator}


def _call(client: TestClient, case: Case, ctx: AppContext, headers: dict[str, str]) -> int:
    path, body = case.prepare(ctx)
    response = client.request(case.method, path, json=body, headers=headers)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.status_code


def test_every_api_route_is_covered(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    served = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/")
        for method in operations
    }
    listed = {(c.method, c.route) for c in CASES}
    assert served <= listed, f"routes without an auth-matrix row: {sorted(served - listed)}"
    assert listed <= served, f"rows for routes the app does not serve: {sorted(listed - served)}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.route}")
def test_route_auth(
    case: Case, client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    assert _call(client, case, app_context, {}) == 401
    assert _call(client, case, app_context, {"Authorization": "Bearer nwt_not-a-real-token"}) == 401
    if case.role in _BELOW:
        assert _call(client, case, app_context, role_users[_BELOW[case.role]].headers) == 403
    status = _call(client, case, app_context, role_users[case.role].headers)
    assert 200 <= status < 300, f"{case.role.value} got {status}"
    if case.role is not Role.admin:
        assert 200 <= _call(client, case, app_context, role_users[Role.admin].headers) < 300


def test_revoked_token_is_refused(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    viewer = role_users[Role.viewer]
    assert client.get("/api/me", headers=viewer.headers).status_code == 200
    with app_context.database.session(write=True) as session:
        for token in api_tokens.list_tokens(session):
            if token.name == "viewer-token":
                api_tokens.revoke_token(session, token.id, actor="test")
    response = client.get("/api/me", headers=viewer.headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_last_used_time_is_kept(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    assert client.get("/api/me", headers=role_users[Role.viewer].headers).status_code == 200
    listed = client.get("/api/tokens", headers=role_users[Role.admin].headers).json()
    by_name = {t["name"]: t for t in listed}
    assert by_name["viewer-token"]["last_used_at"] is not None
    assert "token" not in by_name["viewer-token"]  # the token itself is never listed


def test_public_service_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "python_info" in metrics.text or "process_" in metrics.text or "# HELP" in metrics.text
