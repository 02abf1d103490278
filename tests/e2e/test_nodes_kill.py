# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""kill -9 of the worker at random points of node_provision, again and again: after restarts every
node ends ready, with exactly one server per node, no orphan at the simulator, and no ansible-playbook,
ssh or ssh-agent process of a killed attempt left running. (The long run, with its counts in
docs/benchmarks.md: bench/nodes_kill.py.)"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import ssh_sim_server  # noqa: F401
from tests.support.apps import create_role_users, make_settings
from tests.support.node_kill import Workers, run_kill_trials, worker_env
from tests.support.nodes import connect_sim
from tests.support.system import require_binary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    # One database in the suite keeps CI under its time budget; bench/nodes_kill.py runs both.
    pytest.mark.db_only(
        "postgresql", reason="kill -9 recovery runs on PostgreSQL in CI; the long run covers both"
    ),
]


def test_kill_9_at_random_points_of_node_provision(
    db_url: str, tmp_path: Path, ssh_sim_server: SimServer
) -> None:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    settings = make_settings(db_url, tmp_path / "data", embedded_workers=0)
    seed = int(os.environ.get("NODEWRIGHT_KILL_SEED", str(time.time_ns())))
    with TestClient(create_app(settings, start_workers=False)) as client:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        users = create_role_users(ctx)
        provider_id = connect_sim(client, users[Role.admin].headers, ssh_sim_server)
        keys = settings.secret_keys.get_secret_value()  # type: ignore[union-attr]
        workers = Workers(worker_env(settings.data_dir, db_url, keys), tmp_path)
        try:
            report = run_kill_trials(
                client,
                {"operator": users[Role.operator].headers, "viewer": users[Role.viewer].headers},
                workers,
                provider_id,
                ssh_sim_server,
                rounds=1,
                nodes_per_round=2,
                kills_per_round=4,
                rng=random.Random(seed),
            )
        finally:
            workers.stop()
    assert report.kills >= 2, f"seed {seed}: the nodes settled before the worker could be killed"
    assert report.not_ready == {}, f"seed {seed}: {report.not_ready}"
    assert report.servers == report.nodes and report.duplicate_or_orphan == [], f"seed {seed}"
    assert report.leftover_processes == [], f"seed {seed}"
