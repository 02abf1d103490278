"""Acquiring servers: the ``hcloud`` CLI vs the SDK's ``wait_until_finished`` vs nodewright.

Against one simulator (loopback, no SSH nodes, the same action durations for all three), each client
acquires servers -- create, wait for both actions, fetch -- first one at a time, then in a burst.
Each client has its own token, i.e. its own simulated project, so the simulator's request log tells
the calls apart. Reported per acquired server:

- API calls (every request the simulator answered for that project, lookups and polls included;
  the one-time SSH-key registration is done before measuring, for all three);
- detection delay: from the moment the simulator finished a server's last action (``start_server``)
  to the answer of the first request that told the client so.

nodewright runs its real acquisition path (``acquire_server``: shared rate budget in a SQLite
database, batched poller, learned timings) with in-memory checkpoints instead of a job's steps (the
steps cost database writes, not API calls).

Usage:  .venv/bin/python bench/provider_bench.py [--single 5] [--burst 50] [--cli-burst 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import hcloud
from cryptography.fernet import Fernet
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.ssh_keys import SSHKey
from pydantic import SecretStr

from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db import migrate
from nodewright.db.engine import make_engine
from nodewright.providers import connections
from nodewright.providers.acquisition import NodeServerSpec, acquire_server, generate_host_key
from nodewright.security.secret import Secret
from nodewright.sim.config import SimConfig
from nodewright.sim.control_client import SimControl
from nodewright.sim.server import SimServer

T = TypeVar("T")
# Not multiples of the clients' poll intervals (0.5 s, 1 s), so no client is favoured by phase.
CREATE_SECONDS = 3.2
START_SECONDS = 1.7


class MemorySteps:
    canceled = False
    attempt = 1

    def __init__(self) -> None:
        self.completed_steps: dict[str, Any] = {}

    def step(self, name: str, fn: Callable[[], T]) -> T:
        if name not in self.completed_steps:
            self.completed_steps[name] = fn()
        value: T = self.completed_steps[name]
        return value

    def log(self, message: str, level: str = "info", **data: Any) -> int:
        return 0


def token(letter: str) -> str:
    return letter * 64


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def action_ids_in(record: dict[str, Any]) -> set[int]:
    path = record["path"]
    if path.startswith("/v1/actions/"):
        return {int(path.rsplit("/", 1)[1])}
    if path == "/v1/actions":
        return {int(v) for v in parse_qs(record["query"]).get("id", [])}
    return set()


def measure(sim: SimServer, project: str, server_names: list[str], since: float) -> dict[str, Any]:
    """Calls per server and detection delays for the servers named, from the simulator's log."""
    log = [r for r in SimControl(sim.base_url).requests(limit=100000) if r["project"] == project]
    log = [r for r in log if parse_time(r["time"]) >= since]
    state = sim.runtime.state
    delays: list[float] = []
    with state.lock:
        finished: dict[int, float] = {}
        for server_name in server_names:
            start = [
                a
                for a in state.actions.values()
                if a.command == "start_server"
                and a.project == project
                and state.servers.get(a.server_id) is not None
                and state.servers[a.server_id].name == server_name
            ]
            if start and start[-1].finished is not None:
                finished[start[-1].id] = start[-1].finished
    for action_id, done_at in finished.items():
        seen = [
            parse_time(r["time"])
            for r in log
            if action_id in action_ids_in(r)
            and r["status"] == 200
            and parse_time(r["time"]) >= done_at - 0.001
        ]
        if seen:
            delays.append(max(0.0, min(seen) - done_at))
    return {
        "calls": len(log),
        "calls_per_server": len(log) / max(1, len(server_names)),
        "rate_limited": sum(1 for r in log if r["status"] == 429),
        "delay_p50": percentile(delays, 0.5) if delays else float("nan"),
        "delay_p95": percentile(delays, 0.95) if delays else float("nan"),
        "servers": len(finished),
    }


# ----------------------------------------------------------------------------- the three clients


def run_cli(sim: SimServer, tok: str, names: list[str], workdir: Path) -> None:
    hcloud_bin = shutil.which("hcloud")
    if hcloud_bin is None:
        raise SystemExit("the hcloud CLI is not installed (Debian package hcloud-cli)")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "HCLOUD_TOKEN": tok,
        "HCLOUD_ENDPOINT": sim.base_url + "/v1",
        "HCLOUD_CONFIG": str(workdir / "cli.toml"),
    }
    cmd = ["--type", "cx23", "--image", "ubuntu-24.04", "--location", "fsn1", "--ssh-key", "bench-cli"]
    procs = [
        subprocess.Popen(
            [hcloud_bin, "server", "create", "--name", name, *cmd],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name in names
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"hcloud server create failed: {err.decode(errors='replace')}")


def run_sdk(sim: SimServer, tok: str, names: list[str]) -> None:
    def one(name: str) -> None:
        client = hcloud.Client(token=tok, api_endpoint=sim.base_url + "/v1")  # SDK defaults: 1 s polls
        result = client.servers.create(
            name=name,
            server_type=ServerType(name="cx23"),
            image=Image(name="ubuntu-24.04"),
            location=Location(name="fsn1"),
            ssh_keys=[SSHKey(name="bench-sdk")],
        )
        result.action.wait_until_finished()
        for action in result.next_actions:
            action.wait_until_finished()
        client.servers.get_by_id(result.server.id)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_nodewright(ctx: AppContext, connection_id: int, names: list[str], first_node: int) -> None:
    errors: list[BaseException] = []

    def one(index: int, name: str) -> None:
        try:
            acquire_server(
                MemorySteps(),
                ctx.database,
                ctx.box,
                NodeServerSpec(connection_id, first_node + index, name, "fsn1", "cx23", "ubuntu-24.04"),
                generate_host_key(),
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"nodewright acquisition failed: {errors[0]!r}")


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--single", type=int, default=5, help="servers acquired one at a time, per client")
    parser.add_argument("--burst", type=int, default=50, help="servers acquired at once (SDK, nodewright)")
    parser.add_argument("--cli-burst", type=int, default=10, help="concurrent CLI processes in its burst")
    options = parser.parse_args()

    config = SimConfig(
        ssh_nodes=False, create_duration=CREATE_SECONDS, start_duration=START_SECONDS, tick_interval=0.01
    )
    sim = SimServer(ssh_nodes=False, config=config)
    sim.start()
    workdir = Path(tempfile.mkdtemp(prefix="nw-provider-bench-"))
    ctx: AppContext | None = None
    try:
        control = SimControl(sim.base_url)
        projects = {
            name: control.register_token(token(letter))
            for name, letter in (("cli", "C"), ("sdk", "S"), ("nw", "N"))
        }
        for name, letter in (("cli", "C"), ("sdk", "S")):
            key = generate_host_key()
            hcloud.Client(token=token(letter), api_endpoint=sim.base_url + "/v1").ssh_keys.create(
                name=f"bench-{name}", public_key=key.public_openssh
            )
        url = f"sqlite:///{workdir / 'nodewright.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        settings = Settings(
            data_dir=workdir / "data",
            database_url=url,
            secret_keys=SecretStr(Fernet.generate_key().decode()),
            embedded_workers=0,
            provider_endpoints="http://127.0.0.1:",
        )
        ctx = AppContext.open(settings)
        row = connections.create_connection(
            ctx.database,
            ctx.box,
            actor="bench",
            kind="hetzner",
            name="bench",
            token=Secret(token("N")),
            api_endpoint=sim.base_url + "/v1",
        )
        # Warm-up: nodewright registers its client key once per project (the others did above).
        run_nodewright(ctx, row.id, ["nw-warmup"], 10_000)

        results: dict[str, dict[str, Any]] = {}
        for phase, count in (("single", options.single), ("burst", options.burst)):
            for client in ("cli", "sdk", "nw"):
                n = count if not (client == "cli" and phase == "burst") else options.cli_burst
                names = [f"{client}-{phase}-{i}" for i in range(n)]
                since = time.time()
                started = time.monotonic()
                if phase == "single":
                    for i, name in enumerate(names):
                        if client == "cli":
                            run_cli(sim, token("C"), [name], workdir)
                        elif client == "sdk":
                            run_sdk(sim, token("S"), [name])
                        else:
                            run_nodewright(ctx, row.id, [name], 1 + i)
                elif client == "cli":
                    run_cli(sim, token("C"), names, workdir)
                elif client == "sdk":
                    run_sdk(sim, token("S"), names)
                else:
                    run_nodewright(ctx, row.id, names, 1000)
                wall = time.monotonic() - started
                results[f"{client}-{phase}"] = {
                    **measure(sim, projects[client], names, since),
                    "wall": wall,
                    "n": n,
                }

        print(
            f"# provider bench {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
        )
        print(f"# simulator: create_server {CREATE_SECONDS} s, start_server {START_SECONDS} s, no SSH nodes")
        print(
            "| client | phase | servers | API calls / server | 429s | detection p50 | detection p95 | wall |"
        )
        print("|---|---|---|---|---|---|---|---|")
        labels = {
            "cli": "hcloud CLI 1.30 (`server create`)",
            "sdk": "hcloud SDK `wait_until_finished`",
            "nw": "nodewright",
        }
        for key, r in results.items():
            client, phase = key.split("-")
            print(
                f"| {labels[client]} | {phase} | {r['n']} | {r['calls_per_server']:.2f} | "
                f"{r['rate_limited']} | {r['delay_p50']:.3f} s | {r['delay_p95']:.3f} s | {r['wall']:.1f} s |"
            )
        single_cli = results["cli-single"]["calls_per_server"]
        single_nw = results["nw-single"]["calls_per_server"]
        print(f"# nodewright/CLI calls for one server: {single_nw / single_cli:.2f} (target <= 0.33)")
        sys.stdout.flush()
    finally:
        if ctx is not None:
            ctx.close()
        sim.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
