"""kill -9 of the worker at random points of node_provision, the long run (the test suite runs a
bounded one): rounds of nodes created at once on the simulator's real SSH nodes, a real
``nodewright worker`` killed with SIGKILL at random moments and restarted; prints the counts, which
must be: every node ready, one server per node, no orphan, no process of a killed attempt left.

    .venv/bin/python bench/nodes_kill.py --rounds 3 --nodes 4 --kills 5 \\
        --postgres-url postgresql://postgres@127.0.0.1:5432/test

Needs root (SSH nodes). Runs on a fresh SQLite database, and on a fresh PostgreSQL database when a URL
is given (it creates and drops its own). The harness is ``tests/support/node_kill.py``.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from tests.support.apps import create_role_users  # noqa: E402
from tests.support.node_kill import Workers, run_kill_trials, worker_env  # noqa: E402
from tests.support.nodes import connect_sim  # noqa: E402

from jobs_bench import PgDatabases  # noqa: E402
from nodes_bench import migrate_database  # noqa: E402
from nodewright.app import create_app  # noqa: E402
from nodewright.config import Settings  # noqa: E402
from nodewright.context import AppContext  # noqa: E402
from nodewright.security.roles import Role  # noqa: E402
from nodewright.sim.config import SimConfig  # noqa: E402
from nodewright.sim.server import SimServer  # noqa: E402


def one(url: str, label: str, work: Path, sim: SimServer, options: argparse.Namespace) -> dict[str, object]:
    import httpx

    httpx.post(sim.base_url + "/_sim/reset").raise_for_status()
    keys = Fernet.generate_key().decode()
    settings = Settings(data_dir=work / label, database_url=url, secret_keys=SecretStr(keys),
                        embedded_workers=0, provider_endpoints="http://127.0.0.1:")  # type: ignore[call-arg]  # fmt: skip
    migrate_database(url)
    started = time.monotonic()
    with TestClient(create_app(settings, start_workers=False)) as client:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        users = create_role_users(ctx)
        provider_id = connect_sim(client, users[Role.admin].headers, sim)
        workers = Workers(worker_env(settings.data_dir, url, keys), work)
        try:
            report = run_kill_trials(
                client,
                {"operator": users[Role.operator].headers, "viewer": users[Role.viewer].headers},
                workers, provider_id, sim, rounds=options.rounds, nodes_per_round=options.nodes,
                kills_per_round=options.kills, rng=random.Random(options.seed),
            )  # fmt: skip
        finally:
            workers.stop()
    return {
        "database": label,
        "nodes": report.nodes,
        "kills": report.kills,
        "killed_during": dict(collections.Counter(report.kill_stages)),
        "not_ready": len(report.not_ready),
        "servers": report.servers,
        "duplicates_or_orphans": len(report.duplicate_or_orphan),
        "leftover_processes": len(report.leftover_processes),
        "max_attempt": max(report.attempts, default=0),
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--postgres-url")
    options = parser.parse_args()
    sim = SimServer(ssh_nodes=True, config=SimConfig(ssh_nodes=True, create_duration=0.5, start_duration=0.5))
    sim.start()
    pg = PgDatabases(options.postgres_url) if options.postgres_url else None
    try:
        with tempfile.TemporaryDirectory(prefix="nodes-kill-") as tmp:
            work = Path(tmp)
            results = [one(f"sqlite:///{work / 'sqlite.db'}", "sqlite", work, sim, options)]
            if pg is not None:
                results.append(one(pg.create("nodekill"), "postgresql", work, sim, options))
    finally:
        sim.stop()
        if pg is not None:
            pg.drop_all()
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
