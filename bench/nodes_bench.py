"""Benchmark: time to ready for nodes on the simulator, by stage, against the floor.

For 1 node and for N concurrent nodes (default 20), through the real API, the embedded workers,
the simulator's real SSH nodes and real ansible-playbook, it reports per node:
  - time to ready (node created -> ready_at), and each stage's own seconds;
  - the floor: the simulated action time (create + start, as configured) plus one bare
    ``ansible-playbook`` run of the same profile against a fresh node of the same simulator;
  - nodewright's own overhead = time to ready - floor (target: p50 under 1 s per node).
It also runs the same playbook with stock Ansible settings and with nodewright's (pipelining, a
ControlPersist master, no fact gathering by default), on the same kind of node.

The floor of the concurrent batch is measured the same way: N bare ``ansible-playbook`` runs at once
on N fresh nodes (the same CPU contention nodewright's batch meets), median of the N.

Needs root (SSH nodes), sshd, ssh-agent. Usage:
  .venv/bin/python bench/nodes_bench.py [--concurrent 20] [--bare-runs 3] [--postgres-url URL]
(--postgres-url: run on a fresh PostgreSQL database created next to URL and dropped afterwards,
instead of SQLite)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hcloud
import yaml
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from hcloud.images import Image
from hcloud.server_types import ServerType
from pydantic import SecretStr

from jobs_bench import PgDatabases
from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db import migrate
from nodewright.db.database import Database
from nodewright.db.models import User
from nodewright.provisioning.profiles import get_profile
from nodewright.security import api_tokens
from nodewright.security.passwords import hash_password
from nodewright.sim.config import SimConfig
from nodewright.sim.server import SimServer

TOKEN = "N" * 64


def keypair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def migrate_database(url: str) -> None:
    database = Database(url)
    try:
        migrate.upgrade(database.engine)
    finally:
        database.dispose()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bare_playbook(sim: SimServer, workdir: Path, *, stock: bool) -> float:
    """One plain ``ansible-playbook`` run of the baseline profile on a fresh node (key in a file)."""
    client = hcloud.Client(token=TOKEN, api_endpoint=sim.api_url, poll_interval=0.05)
    private, public = keypair()
    host_private, host_public = keypair()
    key_file = workdir / f"id-{time.monotonic_ns()}"
    key_file.write_text(private)
    key_file.chmod(0o600)
    ssh_key = client.ssh_keys.create(name=key_file.name, public_key=public)
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {"ssh_keys": {"ed25519_private": host_private, "ed25519_public": host_public}}
    )
    created = client.servers.create(
        f"bare-{time.monotonic_ns()}"[:60],
        server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"),
        ssh_keys=[ssh_key],
        user_data=user_data,
    )
    created.action.wait_until_finished()
    for action in created.next_actions:
        action.wait_until_finished()
    assert created.server.id is not None
    server = client.servers.get_by_id(created.server.id)
    assert server.public_net is not None and server.public_net.ipv4 is not None
    address, port = server.public_net.ipv4.ip, sim.config.ssh_port
    known = workdir / f"known-{key_file.name}"
    known.write_text(f"{address if port == 22 else f'[{address}]:{port}'} {host_public}\n")
    inventory = workdir / f"inv-{key_file.name}.yml"
    host = {
        "ansible_host": address,
        "ansible_port": port,
        "ansible_user": "root",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": str(key_file),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes",
    }
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"node": host}}}))
    profile = get_profile("baseline", None)
    extravars = ('{"nw_node_id": 1, "nw_node_name": "bare", "nw_profile": "baseline", '
                 '"nw_profile_version": "bench", "nw_admin_keys": []}')  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    if not stock:
        env.update(ANSIBLE_PIPELINING="True", ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=30s",
                   ANSIBLE_GATHERING="explicit")  # fmt: skip
    started = time.monotonic()
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                          "-e", extravars, str(profile.playbook)], env=env, capture_output=True, text=True,
                         check=False)  # fmt: skip
    seconds = time.monotonic() - started
    if run.returncode != 0:
        raise SystemExit(f"bare ansible-playbook failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    server.delete().wait_until_finished()
    return seconds


def run_batch(
    client: TestClient, headers: dict[str, str], provider_id: int, count: int, tag: str
) -> list[dict[str, Any]]:
    ids = []
    for i in range(count):
        body = {"provider_id": provider_id, "name": f"{tag}-{i}", "location": "fsn1", "server_type": "cx23",
                "image": "ubuntu-24.04"}  # fmt: skip
        answer = client.post("/api/nodes", json=body, headers=headers)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["node"]["id"])
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        nodes = [client.get(f"/api/nodes/{i}", headers=headers).json() for i in ids]
        if all(n["status"] in ("ready", "failed") for n in nodes):
            break
        time.sleep(0.5)
    failed = [n for n in nodes if n["status"] != "ready"]
    if failed:
        raise SystemExit(f"{len(failed)} node(s) failed: {failed[0]['error']}")
    results = []
    for n in nodes:
        evidence = client.get(f"/api/nodes/{n['id']}/evidence", headers=headers).json()["evidence"]
        created = time.mktime(time.strptime(n["created_at"][:19], "%Y-%m-%dT%H:%M:%S"))
        ready = time.mktime(time.strptime(n["ready_at"][:19], "%Y-%m-%dT%H:%M:%S"))
        ready += float("0." + n["ready_at"][20:26]) if len(n["ready_at"]) > 20 else 0
        created += float("0." + n["created_at"][20:26]) if len(n["created_at"]) > 20 else 0
        stages = {k: v["seconds"] for k, v in evidence["stages"].items()}
        results.append({"ready": ready - created, "stages": stages,
                        "calls": evidence["acquisition"]["call_count"]})  # fmt: skip
    for n in nodes:
        client.delete(f"/api/nodes/{n['id']}", headers=headers)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrent", type=int, default=20, help="nodes at once (0: skip the batch)")
    parser.add_argument("--single", type=int, default=1, help="single nodes, one after the other")
    parser.add_argument("--bare-runs", type=int, default=3)
    parser.add_argument("--postgres-url", help="PostgreSQL server to create a scratch database on")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the simulator's SSH nodes)")
    config = SimConfig(ssh_nodes=True, create_duration=1.0, start_duration=1.0, delete_duration=0.2)
    sim = SimServer(ssh_nodes=True, config=config)
    sim.start()
    workdir = Path(tempfile.mkdtemp(prefix="nodes-bench-"))
    pg = PgDatabases(args.postgres_url) if args.postgres_url else None
    try:
        if not sim.ssh_nodes:
            raise SystemExit(f"no SSH nodes: {sim.ssh_nodes_reason}")
        bare_stock = [bare_playbook(sim, workdir, stock=True) for _ in range(args.bare_runs)]
        bare_ours = [bare_playbook(sim, workdir, stock=False) for _ in range(args.bare_runs)]
        bare_burst: list[float] = []
        if args.concurrent > 0:
            with concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrent) as pool:
                bare_burst = list(
                    pool.map(lambda _: bare_playbook(sim, workdir, stock=True), range(args.concurrent))
                )
        action_floor = config.create_duration + config.start_duration
        floor = action_floor + statistics.median(bare_stock)
        burst_floor = action_floor + statistics.median(bare_burst) if bare_burst else 0.0
        database_url = pg.create("nodes") if pg else None
        settings = Settings(
            database_url=database_url,
            data_dir=workdir / "data",
            secret_keys=SecretStr(Fernet.generate_key().decode()),
            embedded_workers=max(2, args.concurrent),
            job_poll_interval=0.2,
            provider_endpoints="http://127.0.0.1:",
        )  # type: ignore[call-arg]
        migrate_database(settings.resolved_database_url)
        with TestClient(create_app(settings)) as client:
            ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
            with ctx.database.session(write=True) as session:
                user = User(username="bench", password_hash=hash_password("bench password 1"), role="admin")
                session.add(user)
                session.flush()
                _, token = api_tokens.create_token(session, user, "bench", actor="bench")
            headers = {"Authorization": f"Bearer {token}"}
            connect = {
                "kind": "hetzner",
                "name": "sim",
                "token": TOKEN,
                "api_endpoint": sim.api_url,
                "ssh_port": sim.config.ssh_port,
            }
            provider = client.post("/api/providers", json=connect, headers=headers)
            assert provider.status_code == 201, provider.text
            provider_id = provider.json()["id"]
            single = [
                r for i in range(args.single) for r in run_batch(client, headers, provider_id, 1, f"one{i}")
            ]
            burst = (
                run_batch(client, headers, provider_id, args.concurrent, "burst") if args.concurrent else []
            )
        print(f"floor: simulated actions {action_floor:.2f} s + bare ansible-playbook (stock) "
              f"median {statistics.median(bare_stock):.2f} s = {floor:.2f} s")  # fmt: skip
        print(f"bare ansible-playbook, stock settings: {', '.join(f'{s:.2f}' for s in bare_stock)} s")
        print(f"bare ansible-playbook, nodewright's settings: {', '.join(f'{s:.2f}' for s in bare_ours)} s")
        if bare_burst:
            print(f"concurrent floor: simulated actions {action_floor:.2f} s + {args.concurrent} bare "
                  f"ansible-playbook (stock) at once, median {statistics.median(bare_burst):.2f} s "
                  f"= {burst_floor:.2f} s")  # fmt: skip
        print(f"database: {'postgresql' if pg else 'sqlite'}")
        for label, batch, batch_floor in (
            (f"1 node ({args.single} runs)", single, floor),
            (f"{args.concurrent} concurrent", burst, burst_floor),
        ):
            if not batch:
                continue
            ready = [r["ready"] for r in batch]
            over = [r["ready"] - batch_floor for r in batch]
            print(f"{label}: time to ready p50 {pct(ready, 50):.2f} s, p95 {pct(ready, 95):.2f} s; "
                  f"overhead over the floor p50 {pct(over, 50):.2f} s")  # fmt: skip
            for stage in ("acquire", "connect", "provision", "verify"):
                values = [r["stages"].get(stage, 0.0) for r in batch]
                print(f"  {stage:<9} p50 {pct(values, 50):.2f} s  p95 {pct(values, 95):.2f} s")
            print(f"  provider calls per node p50 {pct([r['calls'] for r in batch], 50):.0f}")
    finally:
        sim.stop()
        if pg:
            pg.drop_all()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
