# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""100 nodes watched by the real engine (a WorkerPool: its maintenance enqueues ``watching.tick``,
which enqueues the sweeps, which enqueue the checks) at the 5 s minimum interval: at most one
listing of the connection's servers per interval, counted at the simulator, and no provider call
per node (no ``GET /servers/{id}``, nothing else).

The nodes' servers exist at the simulator but the nodes have no SSH target: their checks fail
without SSH (they degrade), which changes nothing in what the watcher asks of the provider. Bounds
come from the elapsed time measured around the pool, never from sleeps assumed exact; the run
ends at a deadline or once enough has been seen, whichever comes first.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import hcloud
import httpx
import pytest
from hcloud.images import Image
from hcloud.server_types import ServerType
from sqlalchemy import distinct, func, select

from nodewright.context import AppContext
from nodewright.db.models import Job, Node, NodeCheck
from nodewright.db.types import utcnow
from nodewright.jobs.worker import WorkerPool
from nodewright.providers import connections
from nodewright.providers.acquisition import installation_id
from nodewright.providers.base import LABEL_INSTALLATION, LABEL_NODE
from nodewright.security.secret import Secret
from nodewright.sim.server import SimServer
from nodewright.watching.sweep import SWEEP_KIND
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import make_settings, opened_context

NODES, PAGE, INTERVAL = 100, 50, 5.0
PAGES = math.ceil(NODES / PAGE)  # one listing = this many GET /servers (hcloud-python pages by 50)
RUN_AT_LEAST, RUN_AT_MOST, LISTINGS_WANTED = 30.0, 120.0, 5


@pytest.fixture
def watched(db_url: str, tmp_path: Path, sim: SimServer) -> Iterator[tuple[AppContext, int]]:
    settings = make_settings(
        db_url, tmp_path / "data", watch_interval_seconds=INTERVAL, watch_grace_seconds=0.0,
        watch_timeout_seconds=5.0, job_poll_interval=0.2,
    )  # fmt: skip
    with opened_context(settings) as ctx:
        token = random_token()
        httpx.post(
            sim.base_url + "/_sim/tokens", json={"token": token, "mode": "read_write"}
        ).raise_for_status()
        provider_id = connections.create_connection(
            ctx.database, ctx.box, actor="test", kind="hetzner", name="sim", token=Secret(token),
            api_endpoint=sim.api_url,
        ).id  # fmt: skip
        cloud = hcloud.Client(
            token=token, api_endpoint=sim.api_url, poll_interval=0.05, poll_max_retries=2400
        )
        owner = installation_id(ctx.database)
        for i in range(NODES):
            with ctx.database.session(write=True) as session:
                node = Node(
                    name=f"w{i}", contract="provider/v1", provider_id=provider_id, location="fsn1",
                    server_type="cx23", image="ubuntu-24.04", labels={}, profile="baseline",
                    ssh_authorized_keys=[], status="ready", evidence={}, created_by="test",
                    ready_at=utcnow() - dt.timedelta(days=1),
                )  # fmt: skip
                session.add(node)
                session.flush()
                node_id = node.id
            created = cloud.servers.create(
                f"w{i}", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
                labels={LABEL_INSTALLATION: owner, LABEL_NODE: str(node_id)},
            )  # fmt: skip
            with ctx.database.session(write=True) as session:
                row = session.get(Node, node_id)
                assert row is not None
                row.server_id = created.server.id
        deadline = time.monotonic() + 120
        while any(s.status != "running" for s in cloud.servers.get_all()) and time.monotonic() < deadline:
            time.sleep(0.2)  # a deadline, not a timing assertion: the servers finish booting
        yield ctx, provider_id


def listings(ctx: AppContext) -> int:
    with ctx.database.session() as session:
        results = session.scalars(select(Job.result).where(Job.kind == SWEEP_KIND, Job.state == "succeeded"))
        return sum(1 for r in results if r and r.get("listed"))


def checked_nodes(ctx: AppContext) -> int:
    with ctx.database.session() as session:
        return session.scalar(select(func.count(distinct(NodeCheck.node_id)))) or 0


@pytest.mark.db_only("sqlite", reason="provider calls per interval: the counts do not depend on the database")
def test_one_listing_per_interval_and_no_call_per_node(
    watched: tuple[AppContext, int], sim: SimServer
) -> None:
    ctx, _provider_id = watched
    httpx.delete(sim.base_url + "/_sim/requests").raise_for_status()
    pool = WorkerPool(ctx.database, ctx.settings, concurrency=2)
    started = time.monotonic()
    pool.start()
    try:
        while True:
            time.sleep(1.0)
            ran = time.monotonic() - started
            enough = listings(ctx) >= LISTINGS_WANTED and checked_nodes(ctx) == NODES
            if ran >= RUN_AT_MOST or (ran >= RUN_AT_LEAST and enough):
                break
    finally:
        pool.stop()
    elapsed = time.monotonic() - started  # measured after the pool stopped: no call can follow
    log = httpx.get(sim.base_url + "/_sim/requests", params={"limit": 100_000}).json()["requests"]
    calls = [(e["method"], re.sub(r"/\d+", "/{id}", e["path"])) for e in log if e["path"].startswith("/v1/")]

    # Every node was checked (several times), and the only provider call was the listing.
    assert checked_nodes(ctx) == NODES
    with ctx.database.session() as session:
        assert (session.scalar(select(func.count()).select_from(NodeCheck)) or 0) > NODES
        reconciles = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.kind == "nodes.reconcile", Job.state == "succeeded")
        )
    assert set(calls) == {("GET", "/v1/servers")}, sorted(set(calls))
    assert all("label_selector=" in e["query"] for e in log if e["path"] == "/v1/servers")
    # Reconcile (every 300 s, its first run at the start) lists the same servers the same way.
    watch_calls = len(calls) - (reconciles or 0) * PAGES
    assert watch_calls % PAGES == 0
    assert 1 <= watch_calls // PAGES <= elapsed / INTERVAL + 1, (watch_calls, elapsed, reconciles)
    assert listings(ctx) == watch_calls // PAGES  # the sweeps that listed are the listings counted
