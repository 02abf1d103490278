"""Watching's controller cost: CPU seconds per node-check, provider calls per sweep.

Runs the real sweep and check jobs (engine claim, fenced transactions, history, roll-up) against the
simulator over SQLite, for N nodes and R rounds, in this process (one worker thread), and reports

- controller CPU seconds per node-check (this process and its children, getrusage),
- the largest fleet one worker core watches at a 60 s interval (60 / CPU per check),
- list calls at the simulator per round (its request log): one paginated listing per connection.

The simulator's nodes here have no SSH target, so a check's SSH session (ssh-agent + ssh + the
readiness commands) is NOT in these numbers; docs/benchmarks.md says what that adds.

    PYTHONPATH=src python bench/watch_bench.py --nodes 500 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

import hcloud
import httpx
from cryptography.fernet import Fernet
from hcloud.images import Image
from hcloud.server_types import ServerType
from pydantic import SecretStr
from sqlalchemy import create_engine, update

from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db import migrate
from nodewright.db.models import Node, NodeHealth, WatchSweep
from nodewright.db.types import utcnow
from nodewright.jobs.claim import claim_next
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.registry import load_handler_modules, registry
from nodewright.jobs.runner import run_claimed
from nodewright.providers import connections
from nodewright.providers.acquisition import installation_id
from nodewright.providers.base import LABEL_INSTALLATION, LABEL_NODE
from nodewright.security.secret import Secret
from nodewright.sim.config import SimConfig
from nodewright.sim.server import SimServer
from nodewright.watching.sweep import SWEEP_KIND


def cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def drain(ctx: AppContext) -> int:
    import threading

    count = 0
    while (claimed := claim_next(ctx.database, "bench", registry.kinds(), 30.0)) is not None:
        kind = registry.get(claimed.kind)
        assert kind is not None
        run_claimed(ctx.database, claimed, kind, cancel_flag=threading.Event())
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load_handler_modules()
    sim = SimServer(
        ssh_nodes=False,
        config=SimConfig(
            ssh_nodes=False, create_duration=0.0, start_duration=0.0, rate_limit_capacity=1_000_000
        ),
    )
    sim.start()
    tmp = Path(tempfile.mkdtemp(prefix="watch-bench-"))
    url = f"sqlite:///{tmp / 'bench.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    settings = Settings(
        data_dir=tmp / "data",
        database_url=url,
        embedded_workers=0,  # type: ignore[call-arg]
        secret_keys=SecretStr(Fernet.generate_key().decode()),
        provider_endpoints="http://127.0.0.1:",
    )
    ctx = AppContext.open(settings)
    try:
        token = "b" * 64
        httpx.post(
            sim.base_url + "/_sim/tokens", json={"token": token, "mode": "read_write"}
        ).raise_for_status()
        row = connections.create_connection(
            ctx.database,
            ctx.box,
            actor="bench",
            kind="hetzner",
            name="sim",
            token=Secret(token),
            api_endpoint=sim.api_url,
        )
        cloud = hcloud.Client(token=token, api_endpoint=sim.api_url, poll_interval=0.01)
        owner = installation_id(ctx.database)
        with ctx.database.session(write=True) as session:
            nodes = [
                Node(
                    name=f"b{i}",
                    contract="provider/v1",
                    provider_id=row.id,
                    location="fsn1",
                    server_type="cx22",
                    image="ubuntu-24.04",
                    labels={},
                    profile="baseline",
                    ssh_authorized_keys=[],
                    status="ready",
                    evidence={},
                    created_by="bench",
                    ready_at=utcnow() - dt.timedelta(days=1),
                )
                for i in range(args.nodes)
            ]
            session.add_all(nodes)
            session.flush()
            ids = [n.id for n in nodes]
        for node_id in ids:
            created = cloud.servers.create(
                f"b{node_id}",
                server_type=ServerType(name="cx22"),
                image=Image(name="ubuntu-24.04"),
                labels={LABEL_INSTALLATION: owner, LABEL_NODE: str(node_id)},
            )
            with ctx.database.session(write=True) as session:
                session.execute(update(Node).where(Node.id == node_id).values(server_id=created.server.id))
        httpx.delete(sim.base_url + "/_sim/requests").raise_for_status()
        checks = 0
        started_cpu, started = cpu(), time.monotonic()
        for _ in range(args.rounds):
            with ctx.database.session(write=True) as session:
                session.execute(update(NodeHealth).values(next_check_at=utcnow() - dt.timedelta(seconds=1)))
                session.execute(update(WatchSweep).values(listed_at=utcnow() - dt.timedelta(hours=1)))
                enqueue(session, SWEEP_KIND, {"provider_id": row.id}, max_attempts=1)
            checks += drain(ctx) - 1
        spent_cpu, wall = cpu() - started_cpu, time.monotonic() - started
        log = httpx.get(sim.base_url + "/_sim/requests").json()["requests"]
        lists = sum(1 for e in log if e["method"] == "GET" and e["path"] == "/v1/servers")
        per_check = spent_cpu / max(1, checks)
        print(f"nodes={args.nodes} rounds={args.rounds} node-checks={checks} (first round schedules only)")
        print(f"controller CPU: {spent_cpu:.2f} s, wall {wall:.2f} s")
        print(f"{per_check * 1000:.2f} ms CPU per node-check")
        print(f"largest fleet per worker core at a 60 s interval: {int(60 / per_check)} nodes")
        print(
            f"GET /v1/servers at the simulator: {lists} in {args.rounds} rounds "
            f"({lists / args.rounds:g} per round; pages of 50)"
        )
    finally:
        ctx.close()
        sim.stop()


if __name__ == "__main__":
    sys.exit(main())
