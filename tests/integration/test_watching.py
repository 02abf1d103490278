# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Watching against the simulator and the real database: one batched list per connection per
interval however many nodes, checks of due nodes as jobs, ready -> degraded after N failures with
one node.degraded event each, maintenance silencing all of it, the history bound, bad input."""

from __future__ import annotations

import datetime as dt
import math

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from nodewright.context import AppContext
from nodewright.db.models import AuditEvent, Node, NodeCheck, NodeHealth, WatchSweep
from nodewright.db.types import utcnow
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.registry import load_handler_modules
from nodewright.jobs.registry import registry as default_registry
from nodewright.provisioning.checks import CheckResult
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from nodewright.watching import history
from nodewright.watching.outcome import apply_result
from nodewright.watching.policy import defaults
from nodewright.watching.sweep import SWEEP_KIND, TICK_KIND
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import RoleUser
from tests.support.fleet import add_ready_nodes, connect
from tests.support.jobs import run_next

load_handler_modules()
PAGE = 50  # hcloud-python lists with per_page=50, the API's maximum
NODES = 60


def drain(ctx: AppContext) -> int:
    count = 0
    while run_next(ctx.database, registry=default_registry) is not None:
        count += 1
    return count


@pytest.fixture
def fleet(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> tuple[int, list[int]]:
    """A connection to the simulator and NODES ready nodes, each holding one of its servers."""
    provider_id, cloud = connect(client, role_users[Role.admin].headers, sim)
    ids = add_ready_nodes(app_context, provider_id, cloud, NODES)
    return provider_id, ids


def list_calls(sim: SimServer) -> int:
    entries = httpx.get(sim.base_url + "/_sim/requests").json()["requests"]
    return sum(1 for e in entries if e["method"] == "GET" and e["path"] == "/v1/servers")


def sweep_once(ctx: AppContext, provider_id: int) -> int:
    with ctx.database.session(write=True) as session:
        enqueue(session, SWEEP_KIND, {"provider_id": provider_id}, max_attempts=1)
    return drain(ctx)


def all_due(ctx: AppContext) -> None:
    with ctx.database.session(write=True) as session:
        session.execute(update(NodeHealth).values(next_check_at=utcnow() - dt.timedelta(seconds=1)))


def test_one_batched_list_per_interval_and_degraded_after_n_failures(
    app_context: AppContext, fleet: tuple[int, list[int]], sim: SimServer
) -> None:
    provider_id, ids = fleet
    pages = math.ceil(NODES / PAGE)
    httpx.delete(sim.base_url + "/_sim/requests").raise_for_status()
    sweep_once(app_context, provider_id)
    assert list_calls(sim) == pages  # one listing of all NODES servers
    policy = defaults(app_context.settings)
    for _ in range(policy.failures_before_degraded):
        all_due(app_context)
        sweep_once(app_context, provider_id)  # runs the checks it enqueued (no SSH target: they fail)
    assert list_calls(sim) == pages  # within the interval: no further provider call, whatever N
    with app_context.database.session() as session:
        statuses = set(session.scalars(select(Node.status).where(Node.id.in_(ids))))
        assert statuses == {"degraded"}
        assert {n.server_status for n in session.scalars(select(Node))} == {"running"}
        degraded_events = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "node.degraded")
        )
        assert degraded_events == NODES  # one per node, at the transition only
        assert (
            session.scalar(select(func.count()).select_from(NodeCheck))
            == NODES * policy.failures_before_degraded
        )
    # One interval later the sweep lists again, once.
    with app_context.database.session(write=True) as session:
        session.execute(
            update(WatchSweep).values(listed_at=utcnow() - dt.timedelta(seconds=policy.interval_seconds))
        )
    sweep_once(app_context, provider_id)
    assert list_calls(sim) == 2 * pages


def test_tick_enqueues_one_sweep_per_connection(
    app_context: AppContext, fleet: tuple[int, list[int]]
) -> None:
    provider_id, _ids = fleet
    from nodewright.db.models import Job

    with app_context.database.session(write=True) as session:
        enqueue(session, TICK_KIND, {}, max_attempts=1)
        enqueue(session, TICK_KIND, {}, max_attempts=1)
    run_next(app_context.database, registry=default_registry)
    run_next(app_context.database, registry=default_registry)
    with app_context.database.session() as session:
        sweeps = list(session.scalars(select(Job).where(Job.kind == SWEEP_KIND)))
    assert [s.args["provider_id"] for s in sweeps] == [provider_id]  # deduplicated while pending


FAIL = [CheckResult("ssh with the pinned host key", False, "ssh_unreachable: connection refused")]
PASS = [CheckResult("ssh with the pinned host key", True, "SHA256:x")]


def apply(ctx: AppContext, node_id: int, results: list[CheckResult]) -> str | None:
    with ctx.database.session(write=True) as session:
        return apply_result(
            session, node_id, results, seconds=0.1, policy=defaults(ctx.settings), now=utcnow()
        ).transition


def test_maintenance_silences_then_recovery_needs_m_passes(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    fleet: tuple[int, list[int]],
) -> None:
    _provider_id, ids = fleet
    web = ids[1]  # labels role=web
    operator = role_users[Role.operator].headers
    pause = {"selector": {"role": "web"}, "reason": "kernel upgrade", "duration_seconds": 3600}
    created = client.post("/api/maintenance", json=pause, headers=operator)
    assert created.status_code == 201, created.text
    for _ in range(10):
        assert apply(app_context, web, FAIL) is None
    node = client.get(f"/api/nodes/{web}", headers=operator).json()
    assert node["status"] == "ready" and node["health"]["maintenance"]["reason"] == "kernel upgrade"
    paused = client.get("/api/nodes", params={"health": "paused", "limit": 500}, headers=operator).json()
    assert paused["total"] == NODES // 2  # the selector role=web covers every other node
    assert {n["id"] for n in paused["items"]} == {ids[i] for i in range(NODES) if i % 2}
    checks = client.get(f"/api/nodes/{web}/health", headers=operator).json()["checks"]
    assert len(checks) == 10 and all(c["paused"] and not c["ok"] for c in checks)
    ended = client.delete(f"/api/maintenance/{created.json()['id']}", headers=operator)
    assert ended.status_code == 200 and ended.json()["active"] is False
    transitions = [apply(app_context, web, FAIL) for _ in range(3)]
    assert transitions == [None, None, "degraded"]
    assert client.get("/api/nodes", params={"health": "degraded"}, headers=operator).json()["total"] == 1
    assert [apply(app_context, web, PASS), apply(app_context, web, FAIL), apply(app_context, web, PASS)] == [
        None,
        None,
        None,
    ]  # fmt: skip  (a failure between passes resets the count)
    assert apply(app_context, web, PASS) == "recovered"
    with app_context.database.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.target == f"node:{web}")))
    assert actions.count("node.degraded") == 1 and actions.count("node.recovered") == 1


def test_history_keeps_the_last_500_and_a_daily_rollup(app_context: AppContext) -> None:
    now = utcnow()
    with app_context.database.session(write=True) as session:
        for i in range(history.HISTORY_KEEP + 7):
            history.record(session, node_id=424242, at=now, ok=i % 2 == 0, seconds=0.5, paused=False,
                           health="passing", results=[])  # fmt: skip
    with app_context.database.session() as session:
        assert (
            session.scalar(select(func.count()).select_from(NodeCheck).where(NodeCheck.node_id == 424242))
            == 500
        )
        (day,) = history.days(session, 424242)
        assert day.passed + day.failed == history.HISTORY_KEEP + 7


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"node_id": 1, "selector": {"a": "b"}, "reason": "x", "duration_seconds": 600}, "node_id"),
        ({"reason": "x", "duration_seconds": 600}, "node_id"),
        ({"node_id": 999999, "reason": "x", "duration_seconds": 600}, "node_id"),
        ({"selector": {"a": "b"}, "reason": "x", "ends_at": "2001-01-01T00:00:00Z"}, "ends_at"),
        ({"selector": {"a": "b"}, "reason": "x"}, "ends_at"),
        ({"selector": {"a": "b"}, "reason": "x", "duration_seconds": 1}, "duration_seconds"),
        ({"selector": {"a b": "c"}, "reason": "x", "duration_seconds": 600}, "selector"),
        ({"selector": {"a": "b"}, "reason": "", "duration_seconds": 600}, "reason"),
    ],
)
def test_bad_maintenance_input_names_the_field(
    client: TestClient, role_users: dict[Role, RoleUser], body: dict[str, object], field: str
) -> None:
    response = client.post("/api/maintenance", json=body, headers=role_users[Role.operator].headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in " ".join(str(e.get("field")) for e in response.json().get("errors") or [])
