"""Watching's controller cost: CPU seconds per node-check, provider calls per interval.

Three modes, each against the simulator over SQLite:

- default (no SSH): the real sweep and check jobs (engine claim, fenced transactions, history,
  roll-up) for N nodes and R rounds in this process (one worker thread). The simulator's nodes have
  no SSH target, so a check's SSH session is NOT in these numbers.
      PYTHONPATH=src:bench python bench/watch_bench.py --nodes 300 --rounds 3
- ``--ssh``: N nodes provisioned for real (acquire, connect, Ansible, verify) on the simulator's SSH
  nodes, then R rounds of real checks (ssh-agent, ssh with the pinned host key, the readiness and
  watch checks) run one after the other by one worker thread. The bench process moves itself into a
  cpuacct cgroup of its own after starting the simulator in a process of its own, so that the
  controller's CPU (this process + every ssh/ssh-agent it starts, including ControlPersist masters
  that ssh puts in the background and that getrusage(RUSAGE_CHILDREN) never sees) is counted apart
  from the simulator's and the nodes' sshd. Needs root.
      PYTHONPATH=src:bench python bench/watch_bench.py --ssh --nodes 8 --rounds 5
- ``--engine-minutes M``: N nodes whose servers exist at the simulator, watched by the real engine
  (a WorkerPool: its maintenance enqueues ``watching.tick``, which enqueues the sweeps) at the
  interval ``--interval`` for M minutes of wall time; the simulator's request log counts the
  provider calls. The nodes have no SSH target (no SSH nodes), so their checks fail at once
  (they degrade): that changes nothing in what the watcher asks of the provider.
      PYTHONPATH=src:bench python bench/watch_bench.py --nodes 100 --engine-minutes 10 --interval 5

Reported: controller CPU seconds per node-check (process vs children), the largest fleet one worker
core watches at a 60 s interval (60 / CPU per check), wall time per check, list calls per interval.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import functools
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import hcloud
import httpx
from cryptography.fernet import Fernet
from hcloud.images import Image
from hcloud.server_types import ServerType
from pydantic import SecretStr
from sqlalchemy import create_engine, func, select, update

from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db import migrate
from nodewright.db.models import Job, Node, NodeCheck, NodeHealth, WatchSweep
from nodewright.db.types import utcnow
from nodewright.jobs.claim import claim_next
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.registry import load_handler_modules, registry
from nodewright.jobs.runner import run_claimed
from nodewright.jobs.worker import WorkerPool
from nodewright.nodes.service import NodeCreate, create_node
from nodewright.nodes.states import PROVISION_KIND
from nodewright.providers import connections
from nodewright.providers.acquisition import installation_id
from nodewright.providers.base import LABEL_INSTALLATION, LABEL_NODE
from nodewright.security.secret import Secret
from nodewright.sim.config import SimConfig
from nodewright.sim.server import SimServer
from nodewright.watching.sweep import CHECK_KIND, SWEEP_KIND

TOKEN = "b" * 64
CGROUP_ROOT = Path("/sys/fs/cgroup/cpuacct")


def rusage(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def cpu() -> float:
    return rusage(resource.RUSAGE_SELF) + rusage(resource.RUSAGE_CHILDREN)


class Cgroup:
    """A cpuacct cgroup (v1) holding this process and, by inheritance, every process it starts."""

    def __init__(self) -> None:
        self.path = CGROUP_ROOT / f"nw-watch-bench-{os.getpid()}"
        self.path.mkdir()
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def close(self) -> None:
        (CGROUP_ROOT / "cgroup.procs").write_text(str(os.getpid()))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.2)  # a ControlPersist master may outlive us a moment


def drain(ctx: AppContext, kinds: list[str] | None = None) -> int:
    count = 0
    while (claimed := claim_next(ctx.database, "bench", kinds or registry.kinds(), 30.0)) is not None:
        kind = registry.get(claimed.kind)
        assert kind is not None
        run_claimed(ctx.database, claimed, kind, cancel_flag=threading.Event())
        count += 1
    return count


def drain_measured(ctx: AppContext, cgroup: Cgroup, spent: dict[str, list[float]]) -> int:
    """``drain``, adding each job's CPU to ``spent[kind]``: [jobs, this thread's CPU (the job runs
    here: RUSAGE_THREAD), the cgroup's (the thread's + its processes'), wall]."""
    count = 0
    while (claimed := claim_next(ctx.database, "bench", registry.kinds(), 30.0)) is not None:
        kind = registry.get(claimed.kind)
        assert kind is not None
        me, group, wall = rusage(resource.RUSAGE_THREAD), cgroup.seconds(), time.monotonic()
        run_claimed(ctx.database, claimed, kind, cancel_flag=threading.Event())
        entry = spent.setdefault(claimed.kind, [0, 0.0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += rusage(resource.RUSAGE_THREAD) - me
        entry[2] += cgroup.seconds() - group
        entry[3] += time.monotonic() - wall
        count += 1
    return count


def open_context(tmp: Path, **overrides: Any) -> AppContext:
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
        **overrides,
    )
    return AppContext.open(settings)


def connect(ctx: AppContext, base_url: str) -> int:
    httpx.post(base_url + "/_sim/tokens", json={"token": TOKEN, "mode": "read_write"}).raise_for_status()
    row = connections.create_connection(
        ctx.database, ctx.box, actor="bench", kind="hetzner", name="sim", token=Secret(TOKEN),
        api_endpoint=base_url + "/v1",
    )  # fmt: skip
    return row.id


def servers_without_ssh(ctx: AppContext, api_url: str, provider_id: int, count: int) -> list[int]:
    """``count`` ready nodes, each holding one server at the simulator (no SSH target)."""
    cloud = hcloud.Client(token=TOKEN, api_endpoint=api_url, poll_interval=0.01)
    owner = installation_id(ctx.database)
    with ctx.database.session(write=True) as session:
        nodes = [
            Node(
                name=f"b{i}",
                contract="provider/v1",
                provider_id=provider_id,
                location="fsn1",
                server_type="cx23",
                image="ubuntu-24.04",
                labels={},
                profile="baseline",
                ssh_authorized_keys=[],
                status="ready",
                evidence={},
                created_by="bench",
                ready_at=utcnow() - dt.timedelta(days=1),
            )
            for i in range(count)
        ]
        session.add_all(nodes)
        session.flush()
        ids = [n.id for n in nodes]
    for node_id in ids:
        created = cloud.servers.create(
            f"b{node_id}", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
            labels={LABEL_INSTALLATION: owner, LABEL_NODE: str(node_id)},
        )  # fmt: skip
        with ctx.database.session(write=True) as session:
            session.execute(update(Node).where(Node.id == node_id).values(server_id=created.server.id))
    return ids


def provisioned_nodes(ctx: AppContext, provider_id: int, count: int, threads: int) -> list[int]:
    """``count`` nodes provisioned for real (node_provision jobs run by ``threads`` threads)."""
    ids = []
    for i in range(count):
        request = NodeCreate(provider_id=provider_id, name=f"watched-{i}", location="fsn1",
                             server_type="cx23", image="ubuntu-24.04")  # fmt: skip
        ids.append(create_node(ctx, request, actor="bench").node.id)
    workers = [threading.Thread(target=drain, args=(ctx, [PROVISION_KIND])) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with ctx.database.session() as session:
        rows = list(session.scalars(select(Node).where(Node.id.in_(ids))))
        failed = [(n.name, n.status, n.error_code, n.error_message) for n in rows if n.status != "ready"]
    if failed:
        raise SystemExit(f"{len(failed)} node(s) not ready: {failed[0]}")
    return ids


def all_due(ctx: AppContext, provider_id: int) -> None:
    with ctx.database.session(write=True) as session:
        session.execute(update(NodeHealth).values(next_check_at=utcnow() - dt.timedelta(seconds=1)))
        session.execute(update(WatchSweep).values(listed_at=utcnow() - dt.timedelta(hours=1)))
        enqueue(session, SWEEP_KIND, {"provider_id": provider_id}, max_attempts=1)


def list_calls(base_url: str) -> int:
    log = httpx.get(base_url + "/_sim/requests").json()["requests"]
    return sum(1 for e in log if e["method"] == "GET" and e["path"] == "/v1/servers")


def no_ssh(args: argparse.Namespace) -> None:
    sim = SimServer(ssh_nodes=False, config=SimConfig(
        ssh_nodes=False, create_duration=0.0, start_duration=0.0, rate_limit_capacity=1_000_000))  # fmt: skip
    sim.start()
    ctx = open_context(Path(tempfile.mkdtemp(prefix="watch-bench-")))
    try:
        provider_id = connect(ctx, sim.base_url)
        servers_without_ssh(ctx, sim.api_url, provider_id, args.nodes)
        httpx.delete(sim.base_url + "/_sim/requests").raise_for_status()
        checks = 0
        started_cpu, started = cpu(), time.monotonic()
        for _ in range(args.rounds):
            all_due(ctx, provider_id)
            checks += drain(ctx) - 1
        spent_cpu, wall = cpu() - started_cpu, time.monotonic() - started
        lists = list_calls(sim.base_url)
        per_check = spent_cpu / max(1, checks)
        print(f"nodes={args.nodes} rounds={args.rounds} node-checks={checks} (first round schedules only)")
        print(f"controller CPU: {spent_cpu:.2f} s, wall {wall:.2f} s")
        print(f"{per_check * 1000:.2f} ms CPU per node-check")
        print(f"largest fleet per worker core at a 60 s interval: {int(60 / per_check)} nodes")
        print(f"GET /v1/servers at the simulator: {lists} in {args.rounds} rounds "
              f"({lists / args.rounds:g} per round; pages of 50)")  # fmt: skip
    finally:
        ctx.close()
        sim.stop()


def start_sim_process(ssh_nodes: bool) -> tuple[subprocess.Popen[bytes], str]:
    """The simulator (and its nodes' sshd) in a process of its own, outside the bench's cgroup."""
    port = 18980 + os.getpid() % 1000
    flag = "--ssh-nodes" if ssh_nodes else "--no-ssh-nodes"
    sim = subprocess.Popen(
        [sys.executable, "-m", "nodewright.sim", "--port", str(port), flag, "--create-duration", "0.2",
         "--start-duration", "0.2", "--rate-limit", "1000000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status = httpx.get(base_url + "/_sim/status", timeout=1)
            status.raise_for_status()
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        if ssh_nodes and not status.json()["ssh_nodes"]:
            sim.terminate()
            raise SystemExit(f"no SSH nodes: {status.json()['ssh_nodes_reason']}")
        return sim, base_url
    sim.kill()
    raise SystemExit("the simulator did not start")


def with_ssh(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise SystemExit("needs root (the simulator's SSH nodes, a cpuacct cgroup)")
    sim, base_url = start_sim_process(ssh_nodes=True)
    cgroup = Cgroup()  # after the simulator started: its processes stay outside
    ctx = open_context(Path(tempfile.mkdtemp(prefix="watch-bench-", dir="/tmp")),
                       watch_timeout_seconds=args.timeout)  # fmt: skip
    try:
        provider_id = connect(ctx, base_url)
        began = time.monotonic()
        ids = provisioned_nodes(ctx, provider_id, args.nodes, threads=args.provision_threads)
        print(f"provisioned {len(ids)} nodes in {time.monotonic() - began:.1f} s")
        all_due(ctx, provider_id)
        drain(ctx)  # the first sweep schedules (spread over the interval); no check yet
        time.sleep(2)  # masters and agents of provisioning end
        checks = 0
        self0, kids0 = rusage(resource.RUSAGE_SELF), rusage(resource.RUSAGE_CHILDREN)
        group0 = cgroup.seconds()
        started = time.monotonic()
        spent: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            all_due(ctx, provider_id)
            checks += drain_measured(ctx, cgroup, spent) - 1
        wall = time.monotonic() - started
        time.sleep(0.5)
        me, kids = rusage(resource.RUSAGE_SELF) - self0, rusage(resource.RUSAGE_CHILDREN) - kids0
        group = cgroup.seconds() - group0
        with ctx.database.session() as session:
            ok = session.scalar(select(func.count()).select_from(NodeCheck).where(NodeCheck.ok.is_(True)))
            failing = session.scalars(select(NodeCheck).where(NodeCheck.ok.is_(False)))
            failures = [[r for r in c.results if not r["ok"]] for c in failing]
            seconds = list(session.scalars(select(NodeCheck.seconds)))
        per_check = group / max(1, checks)
        print(f"nodes={args.nodes} rounds={args.rounds} node-checks={checks} passing={ok}")
        if failures:
            print(f"  failing checks: {len(failures)}, first: {failures[0]}")
        print(f"controller CPU (cgroup: process + all its descendants): {group:.2f} s, wall {wall:.2f} s")
        print(f"  nodewright process (RUSAGE_SELF): {me:.2f} s = {me / checks * 1000:.1f} ms/check")
        print(f"  ssh, ssh-agent, ssh-add, masters (cgroup - self): {group - me:.2f} s = "
              f"{(group - me) / checks * 1000:.1f} ms/check (RUSAGE_CHILDREN sees {kids:.2f} s)")  # fmt: skip
        print(f"{per_check * 1000:.1f} ms CPU per node-check; wall {wall / checks * 1000:.0f} ms per check "
              f"(check's own seconds p50 {sorted(seconds)[len(seconds) // 2] * 1000:.0f} ms)")  # fmt: skip
        print(f"largest fleet per worker core at a 60 s interval: {int(60 / per_check)} nodes by CPU; "
              f"{int(60 / (wall / checks))} nodes per worker thread by wall time")  # fmt: skip
        for kind, (jobs, thread_cpu, group_cpu, job_wall) in sorted(spent.items()):
            print(f"  {kind}: {int(jobs)} jobs, {group_cpu / jobs * 1000:.1f} ms CPU each "
                  f"({thread_cpu / jobs * 1000:.1f} ms in the job's thread, "
                  f"{(group_cpu - thread_cpu) / jobs * 1000:.1f} ms in its processes), "
                  f"{job_wall / jobs * 1000:.0f} ms wall")  # fmt: skip
        jobs, _thread_cpu, group_cpu, _wall = spent[CHECK_KIND]
        print(
            f"check jobs alone (the sweep's listing is per connection and interval, not per node): "
            f"{group_cpu / jobs * 1000:.1f} ms CPU -> {int(60 / (group_cpu / jobs))} nodes per worker core"
        )
        if args.breakdown:
            breakdown(ctx, cgroup, ids[0])
    finally:
        ctx.close()
        sim.terminate()
        sim.wait(60)
        cgroup.close()


def breakdown(ctx: AppContext, cgroup: Cgroup, node_id: int, repeat: int = 10) -> None:
    """Where a check's CPU goes: each piece of the SSH session alone, ``repeat`` times."""
    from nodewright.nodes.handlers import _target
    from nodewright.providers.acquisition import load_client_private_key
    from nodewright.provisioning.agent import ssh_agent
    from nodewright.provisioning.check_batch import run_batched
    from nodewright.provisioning.profiles import get_profile
    from nodewright.provisioning.ssh import PinnedSsh

    with ctx.database.session() as session:
        node = session.get(Node, node_id)
        assert node is not None
        target, provider_id = _target(node), node.provider_id

    def measure(label: str, piece: Any) -> None:
        me0, group0, wall0 = rusage(resource.RUSAGE_SELF), cgroup.seconds(), time.monotonic()
        for _ in range(repeat):
            piece()
        me, group = rusage(resource.RUSAGE_SELF) - me0, cgroup.seconds() - group0
        wall = time.monotonic() - wall0
        print(f"  {label}: {group / repeat * 1000:.1f} ms CPU ({me / repeat * 1000:.1f} ms in-process), "
              f"{wall / repeat * 1000:.0f} ms wall")  # fmt: skip

    print(f"breakdown (mean of {repeat}):")
    key = load_client_private_key(ctx.database, ctx.box, provider_id)
    measure(
        "load + decrypt the client key", lambda: load_client_private_key(ctx.database, ctx.box, provider_id)
    )

    def agent_only() -> None:
        with ssh_agent(key, directory=Path("/tmp")):
            pass

    measure("ssh-agent + handing it the key (ed25519: over its socket, no ssh-add)", agent_only)
    with (
        tempfile.TemporaryDirectory(prefix="nw-bd-", dir="/tmp") as tmp,
        ssh_agent(key, directory=Path(tmp)) as sock,
    ):
        plain = PinnedSsh(target, sock, Path(tmp))
        measure("ssh 'true', own connection (handshake)", lambda: plain.run("true"))
        for kex in ("curve25519-sha256", "sntrup761x25519-sha512@openssh.com"):
            other = PinnedSsh(target, sock, Path(tmp), kex_algorithms=kex)
            measure(f"ssh 'true', own connection, KexAlgorithms={kex}", functools.partial(other.run, "true"))
        batch = PinnedSsh(target, sock, Path(tmp), kex_algorithms="^curve25519-sha256")
        with ctx.database.session() as session:
            profile = get_profile(session.get(Node, node_id).profile, ctx.settings.resolved_profiles_dir)  # type: ignore[union-attr]

        def batched() -> None:
            results = run_batched(batch, node_id=node_id, profile=profile, deadline=time.monotonic() + 20)
            assert all(r.ok for r in results), results

        measure("all readiness checks in one command (check_batch), curve25519", batched)
        shared = PinnedSsh(target, sock, Path(tmp), multiplex=True)
        shared.run("true")
        measure("ssh 'true' through an open master", lambda: shared.run("true"))
        shared.close()

        def master_cycle() -> None:
            shared.run("true")
            shared.close()

        measure("master: open ('true') + ssh -O exit", master_cycle)


def with_engine(args: argparse.Namespace) -> None:
    sim, base_url = start_sim_process(ssh_nodes=False)
    ctx = open_context(Path(tempfile.mkdtemp(prefix="watch-bench-")), watch_interval_seconds=args.interval,
                       watch_grace_seconds=0.0, watch_timeout_seconds=5.0)  # fmt: skip
    pool: WorkerPool | None = None
    try:
        provider_id = connect(ctx, base_url)
        servers_without_ssh(ctx, base_url + "/v1", provider_id, args.nodes)
        httpx.delete(base_url + "/_sim/requests").raise_for_status()
        cpu0 = cpu()
        pool = WorkerPool(ctx.database, ctx.settings, concurrency=2)
        started = time.monotonic()
        pool.start()
        time.sleep(args.engine_minutes * 60)
        pool.stop()
        elapsed = time.monotonic() - started
        pool = None
        spent = cpu() - cpu0
        log = httpx.get(base_url + "/_sim/requests", params={"limit": 100_000}).json()["requests"]
        with ctx.database.session() as session:
            kinds = dict(session.execute(select(Job.kind, func.count()).group_by(Job.kind)).all())
            sweeps = [j.result for j in session.scalars(select(Job).where(Job.kind == SWEEP_KIND))]
            checks = session.scalar(select(func.count()).select_from(NodeCheck)) or 0
        listed = sum(1 for r in sweeps if r and r.get("listed"))
        calls = collections.Counter(
            (e["method"], re.sub(r"/\d+", "/{id}", e["path"])) for e in log if e["path"].startswith("/v1")
        )
        pages = math.ceil(args.nodes / 50)
        intervals = elapsed / args.interval
        with ctx.database.session() as session:
            reconciles = (
                session.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.kind == "nodes.reconcile", Job.state == "succeeded")
                )
                or 0
            )
        lists = calls[("GET", "/v1/servers")]
        watch_lists = lists - reconciles * pages
        print(f"nodes={args.nodes} interval={args.interval:g} s wall={elapsed:.0f} s "
              f"({intervals:.1f} intervals); controller CPU {spent:.1f} s")  # fmt: skip
        print(f"jobs by kind: {kinds}; node-checks recorded: {checks}")
        print(f"sweeps that listed: {listed} (of {len(sweeps)} sweeps); pages per listing: {pages}")
        print(f"GET /v1/servers at the simulator: {lists}, of which reconcile ({reconciles} run(s)) "
              f"{reconciles * pages}, watching {watch_lists} = {watch_lists / pages:g} listings of "
              f"{pages} pages = {watch_lists / pages / intervals:.3f} listings per interval")  # fmt: skip
        print(f"all provider calls: {dict(calls)}")
    finally:
        if pool is not None:
            pool.stop()
        ctx.close()
        sim.terminate()
        sim.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ssh", action="store_true", help="real checks against the simulator's SSH nodes")
    parser.add_argument("--timeout", type=float, default=20.0, help="--ssh: the policy's timeout per check")
    parser.add_argument("--provision-threads", type=int, default=2)
    parser.add_argument("--breakdown", action="store_true", help="--ssh: the cost of each SSH piece")
    parser.add_argument("--engine-minutes", type=float, default=0.0, help="watch with the real engine")
    parser.add_argument("--interval", type=float, default=5.0, help="--engine-minutes: watch interval")
    args = parser.parse_args()
    load_handler_modules()
    if args.ssh:
        args.nodes = args.nodes or 8
        with_ssh(args)
    elif args.engine_minutes > 0:
        args.nodes = args.nodes or 100
        with_engine(args)
    else:
        args.nodes = args.nodes or 500
        no_ssh(args)


if __name__ == "__main__":
    sys.exit(main())
