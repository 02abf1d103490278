"""kill -9 of real ``nodewright worker`` processes at random points of node_provision.

Shared by the bounded test (tests/e2e/test_nodes_kill.py) and the long run in bench/nodes_kill.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from nodewright.jobs.processes import MARKER_ENV, Marker
from nodewright.providers.base import LABEL_NODE
from nodewright.sim.server import SimServer

SETTLED = ("ready", "failed")


def job_processes(worker_pids: set[int]) -> list[str]:
    """Live processes marked as a job's by one of ``worker_pids`` (ssh-agent, ssh, ansible-playbook and
    their descendants all carry the mark; other test runs on the machine carry other workers' pids)."""
    found = []
    prefix = MARKER_ENV.encode() + b"="
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for item in environ:
            if item.startswith(prefix):
                marker = Marker.parse(item[len(prefix) :].decode(errors="replace"))
                if marker is not None and marker.worker_pid in worker_pids:
                    found.append(f"{entry.name}: {cmdline[:160]}")
    return found


class Workers:
    """One ``nodewright worker`` at a time: started, killed with SIGKILL, restarted."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0
        self.pids: set[int] = set()

    def start(self) -> None:
        """Start a worker and return once it runs jobs (a kill before that would test nothing)."""
        path = self.log_dir / f"worker-{self.started}.log"
        log = open(path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "nodewright.cli", "worker", "--concurrency", "4"],
                                     env=self.env, stdout=log, stderr=log)  # fmt: skip
        log.close()
        self.started += 1
        self.pids.add(self.proc.pid)
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


def worker_env(data_dir: Path, db_url: str, secret_keys: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env.update(
        NODEWRIGHT_DATA_DIR=str(data_dir), NODEWRIGHT_DATABASE_URL=db_url, NODEWRIGHT_SECRET_KEYS=secret_keys,
        NODEWRIGHT_JOB_LEASE_SECONDS="4", NODEWRIGHT_JOB_POLL_INTERVAL="0.2",
        NODEWRIGHT_PROVIDER_ENDPOINTS="http://127.0.0.1:",
    )  # fmt: skip
    return env


@dataclass
class KillReport:
    nodes: int = 0
    kills: int = 0
    kill_stages: list[str] = field(default_factory=list)  # what the nodes in flight were doing
    not_ready: dict[int, Any] = field(default_factory=dict)
    servers: int = 0
    duplicate_or_orphan: list[int] = field(default_factory=list)
    leftover_processes: list[str] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)


def _nodes(client: TestClient, headers: dict[str, str], ids: list[int]) -> dict[int, dict[str, Any]]:
    return {i: client.get(f"/api/nodes/{i}", headers=headers).json() for i in ids}


def _settle(
    client: TestClient, headers: dict[str, str], ids: list[int], timeout: float
) -> dict[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    now = _nodes(client, headers, ids)
    while time.monotonic() < deadline and not all(n["status"] in SETTLED for n in now.values()):
        time.sleep(0.5)
        now = _nodes(client, headers, ids)
    return now


def run_kill_trials(
    client: TestClient,
    headers: dict[str, dict[str, str]],
    workers: Workers,
    provider_id: int,
    sim: SimServer,
    *,
    rounds: int,
    nodes_per_round: int,
    kills_per_round: int,
    rng: random.Random,
) -> KillReport:
    """Rounds of: create nodes, start a worker, kill it at random moments (restarting it each time),
    let the round settle, kill once more; then a last worker finishes everything."""
    report = KillReport()
    ids: list[int] = []
    for round_ in range(rounds):
        batch = []
        for i in range(nodes_per_round):
            body = {"provider_id": provider_id, "name": f"k{round_}-{i}-{rng.randrange(10**6)}",
                    "location": "fsn1", "server_type": "cx23", "image": "ubuntu-24.04"}  # fmt: skip
            answer = client.post("/api/nodes", json=body, headers=headers["operator"])
            assert answer.status_code == 202, answer.text
            batch.append(answer.json()["node"]["id"])
        ids.extend(batch)
        workers.start()
        for _ in range(kills_per_round):
            time.sleep(rng.uniform(0.2, 5.0))  # anywhere in acquire, connect, provision or verify
            now = _nodes(client, headers["viewer"], batch)
            in_flight = [n["stage"] or n["status"] for n in now.values() if n["status"] not in SETTLED]
            if not in_flight:
                break
            workers.kill()
            report.kills += 1
            report.kill_stages.extend(in_flight)
            workers.start()
        _settle(client, headers["viewer"], batch, 600)
        workers.kill()  # between rounds too: whatever is in flight dies with it
        report.kills += 1
    workers.start()
    final = _settle(client, headers["viewer"], ids, 600)
    workers.stop()
    report.nodes = len(ids)
    report.not_ready = {i: (n["status"], n["error"]) for i, n in final.items() if n["status"] != "ready"}
    for node in final.values():
        if node["job_id"]:
            job = client.get(f"/api/jobs/{node['job_id']}", headers=headers["viewer"]).json()
            report.attempts.append(int(job["attempt"]))
    servers = httpx.get(sim.base_url + "/_sim/servers").json()["servers"]
    report.servers = len(servers)
    owners = [int(s["labels"].get(LABEL_NODE, "0")) for s in servers]
    report.duplicate_or_orphan = sorted({o for o in owners if owners.count(o) > 1 or o not in ids})
    deadline = time.monotonic() + 15
    while job_processes(workers.pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    report.leftover_processes = job_processes(workers.pids)
    return report
