# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""kill -9 of the worker at random points of node_provision, again and again: after restarts every
node ends ready, with exactly one server per node, no orphan at the simulator, and no ansible-playbook,
ssh or ssh-agent process of a killed attempt left running."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.jobs.processes import MARKER_ENV
from nodewright.providers.base import LABEL_NODE
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import ssh_sim_server  # noqa: F401
from tests.support.apps import RoleUser, create_role_users, make_settings
from tests.support.nodes import connect_sim
from tests.support.system import require_binary

ROUNDS = 2
NODES_PER_ROUND = 4
KILLS_PER_ROUND = 7  # (7 + 1 between rounds) x 2 = 16 kills per database, 32 over SQLite and PostgreSQL
SETTLED = ("ready", "failed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def job_processes() -> list[str]:
    """Processes carrying a job marker, or ansible/ssh of a nodewright run (by their directories)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if MARKER_ENV.encode() + b"=" in environ or "nw-ansible-" in cmdline or "nw-cp-" in cmdline:
            found.append(f"{entry.name}: {cmdline[:160]}")
    return found


class Workers:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        """Start a worker and return once it runs jobs (a kill before that would test nothing)."""
        path = self.log_dir / f"worker-{self.started}.log"
        log = open(path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "nodewright.cli", "worker", "--concurrency", "4"],
                                     env=self.env, stdout=log, stderr=log)  # fmt: skip
        log.close()
        self.started += 1
        deadline = time.monotonic() + 60
        while b"started (" not in path.read_bytes():
            assert self.proc.poll() is None, path.read_text(errors="replace")
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)  # the worker alone: its children are orphaned, as in a crash
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def world(
    db_url: str, tmp_path: Path, ssh_sim_server: SimServer
) -> Iterator[tuple[TestClient, dict[Role, RoleUser], Workers, int]]:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    settings = make_settings(db_url, tmp_path / "data", embedded_workers=0)
    with TestClient(create_app(settings, start_workers=False)) as client:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        users = create_role_users(ctx)
        provider_id = connect_sim(client, users[Role.admin].headers, ssh_sim_server)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
        env.update(
            NODEWRIGHT_DATA_DIR=str(settings.data_dir), NODEWRIGHT_DATABASE_URL=db_url,
            NODEWRIGHT_SECRET_KEYS=settings.secret_keys.get_secret_value(),  # type: ignore[union-attr]
            NODEWRIGHT_JOB_LEASE_SECONDS="4", NODEWRIGHT_JOB_POLL_INTERVAL="0.2",
            NODEWRIGHT_PROVIDER_ENDPOINTS="http://127.0.0.1:",
        )  # fmt: skip
        workers = Workers(env, tmp_path)
        try:
            yield client, users, workers, provider_id
        finally:
            workers.stop()


def statuses(client: TestClient, headers: dict[str, str], ids: list[int]) -> dict[int, dict[str, Any]]:
    return {i: client.get(f"/api/nodes/{i}", headers=headers).json() for i in ids}


def test_kill_9_at_random_points_of_node_provision(
    world: tuple[TestClient, dict[Role, RoleUser], Workers, int], ssh_sim_server: SimServer
) -> None:
    client, users, workers, provider_id = world
    operator, viewer = users[Role.operator].headers, users[Role.viewer].headers
    rng = random.Random(int(os.environ.get("NODEWRIGHT_KILL_SEED", str(time.time_ns()))))
    ids: list[int] = []
    kills = 0
    for round_ in range(ROUNDS):
        batch = []
        for i in range(NODES_PER_ROUND):
            body = {"provider_id": provider_id, "name": f"k{round_}-{i}", "location": "fsn1",
                    "server_type": "cx22", "image": "ubuntu-24.04"}  # fmt: skip
            answer = client.post("/api/nodes", json=body, headers=operator)
            assert answer.status_code == 202, answer.text
            batch.append(answer.json()["node"]["id"])
        ids.extend(batch)
        workers.start()
        for _ in range(KILLS_PER_ROUND):
            time.sleep(rng.uniform(0.2, 5.0))  # anywhere in acquire, connect, provision or verify
            if all(n["status"] in SETTLED for n in statuses(client, viewer, batch).values()):
                break
            workers.kill()
            kills += 1
            workers.start()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            now = statuses(client, viewer, batch)
            if all(n["status"] in SETTLED for n in now.values()):
                break
            time.sleep(0.5)
        workers.kill()  # between rounds too: whatever is in flight dies with it
        kills += 1
    workers.start()
    deadline = time.monotonic() + 300
    final: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        final = statuses(client, viewer, ids)
        if all(n["status"] in SETTLED for n in final.values()):
            break
        time.sleep(0.5)
    workers.stop()

    assert kills >= ROUNDS * 2
    not_ready = {i: (n["status"], n["error"]) for i, n in final.items() if n["status"] != "ready"}
    assert not_ready == {}, not_ready
    servers = httpx.get(ssh_sim_server.base_url + "/_sim/servers").json()["servers"]
    owners = sorted(int(s["labels"][LABEL_NODE]) for s in servers)
    assert owners == sorted(ids), "exactly one server per node, and no orphan"
    assert {final[i]["server"]["id"] for i in ids} == {s["id"] for s in servers}
    deadline = time.monotonic() + 15
    while job_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job_processes() == []
