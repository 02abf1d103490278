"""Benchmark of the Hetzner Cloud API simulator (nodewright.sim).

Measures, on loopback, bounded and self-cleaning:
  1. simple GET requests per second from a few client threads;
  2. create+wait cycles per second through the real hcloud SDK (zero action durations, so the
     number is the simulator's own overhead, not the configured boot time);
  3. start time and memory (RSS and PSS) per SSH node, and 100 running SSH nodes at once.

Usage:  .venv/bin/python bench/sim_bench.py [--nodes 100] [--gets 4000] [--cycles 200] [--threads 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hcloud
import httpx
import requests
from hcloud.images import Image
from hcloud.server_types import ServerType
from hcloud.ssh_keys import SSHKey

from nodewright.sim.config import SimConfig
from nodewright.sim.server import SimServer

TOKEN = "B" * 64
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def kib(status: Path, field: str) -> int:
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (namespaced sshds are children of their unshare)."""
    result = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return result
    for child in children:
        result.extend(tree(int(child)))
    return result


def memory_kib(pids: list[int]) -> tuple[int, int]:
    rss = pss = 0
    for pid in pids:
        try:
            rss += kib(Path(f"/proc/{pid}/status"), "VmRSS")
            pss += kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
        except OSError:
            continue
    return rss, pss


def bench_gets(api_url: str, total: int, threads: int) -> dict[str, Any]:
    """Keep-alive ``http.client`` connections, one per thread: a light client, so the number is
    the simulator's, not the HTTP library's (requests tops out near 1000 requests/s here)."""
    url = urlsplit(api_url)
    session = requests.Session()
    session.headers.update(HEADERS)
    body = {"name": "probe-1", "server_type": "cx23", "image": "ubuntu-24.04"}
    server_id = session.post(api_url + "/servers", json=body).json()["server"]["id"]
    results: dict[str, Any] = {}
    for label, path in (
        ("GET /v1/servers/{id}", f"/servers/{server_id}"),
        ("GET /v1/locations", "/locations"),
    ):
        per_thread = total // threads

        def run(_: int, path: str = path, per_thread: int = per_thread) -> None:
            conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
            try:
                for _ in range(per_thread):
                    conn.request("GET", url.path + path, headers=HEADERS)
                    response = conn.getresponse()
                    response.read()
                    assert response.status == 200
            finally:
                conn.close()

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, range(threads)))
        elapsed = time.perf_counter() - started
        results[label] = {"requests": per_thread * threads, "seconds": round(elapsed, 2),
                          "rps": round(per_thread * threads / elapsed)}  # fmt: skip
    return results


def bench_gets_subprocess(total: int, threads: int) -> dict[str, Any]:
    """The simulator in its own process (``python -m nodewright.sim``), as ``nodewright sim`` runs
    it: client threads and server no longer share one interpreter lock."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nodewright.sim", "--port", "0", "--no-ssh-nodes", "--rate-limit", str(10**9)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        api_url = process.stdout.readline().strip()
        return bench_gets(api_url, total, threads)
    finally:
        process.terminate()
        process.wait(timeout=30)


def bench_cycles(sim: SimServer, cycles: int, threads: int) -> dict[str, Any]:
    def run(index: int) -> int:
        client = hcloud.Client(token=TOKEN, api_endpoint=sim.api_url, poll_interval=0.005)
        done = 0
        for n in range(cycles // threads):
            result = client.servers.create(
                f"cycle-{index}-{n}", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04")
            )
            result.action.wait_until_finished()
            for action in result.next_actions:
                action.wait_until_finished()
            client.servers.delete(result.server).wait_until_finished()
            done += 1
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        done = sum(pool.map(run, range(threads)))
    elapsed = time.perf_counter() - started
    return {"cycles": done, "seconds": round(elapsed, 2), "cycles_per_second": round(done / elapsed, 1)}


def bench_nodes(count: int, threads: int) -> dict[str, Any]:
    config = SimConfig(create_duration=0, start_duration=0, stop_duration=0, delete_duration=0,
                       rate_limit_capacity=10**9, ssh_nodes=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, SimServer(ssh_nodes=True, config=config) as sim:
        if not sim.ssh_nodes:
            return {"skipped": sim.ssh_nodes_reason}
        key = Path(tmp) / "id"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        client = hcloud.Client(
            token=TOKEN, api_endpoint=sim.api_url, poll_interval=0.01, poll_max_retries=10**5
        )
        ssh_key = client.ssh_keys.create(name="bench", public_key=(Path(tmp) / "id.pub").read_text())
        sim_rss_before = kib(Path("/proc/self/status"), "VmRSS")

        def make(index: int) -> int:
            result = client.servers.create(
                f"node-{index}", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
                ssh_keys=[SSHKey(id=ssh_key.id)],
            )  # fmt: skip
            result.action.wait_until_finished()
            for action in result.next_actions:
                action.wait_until_finished()
            assert result.server.id is not None
            return result.server.id

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            ids = list(pool.map(make, range(count)))
        all_running = time.perf_counter() - started
        entries = httpx.get(sim.base_url + "/_sim/servers").json()["servers"]
        running = [e for e in entries if e["status"] == "running" and e["ssh"]["node"]["state"] == "ready"]
        boots = [e["ssh"]["node"]["boot_seconds"] for e in running]
        pids = [p for e in running for p in tree(e["ssh"]["node"]["pid"])]
        rss, pss = memory_kib(pids)
        sample = running[:: max(1, len(running) // 5)]
        ssh_ok = 0
        for entry in sample:
            out = subprocess.run(
                ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                 f"root@{entry['ssh']['host']}", "hostname"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            ssh_ok += out.stdout.strip() == entry["name"]
        sim_rss_after = kib(Path("/proc/self/status"), "VmRSS")
        started = time.perf_counter()
        actions = [client.servers.delete(client.servers.get_by_id(i)) for i in ids]
        for action in actions:
            action.wait_until_finished()
        delete_seconds = time.perf_counter() - started
        node_root = httpx.get(sim.base_url + "/_sim/status").json()["node_root"]
        leftover = [p for p in pids if Path(f"/proc/{p}").exists()]
    return {
        "nodes_requested": count,
        "nodes_running_with_sshd": len(running),
        "seconds_until_all_running": round(all_running, 2),
        "node_start_seconds_median": round(statistics.median(boots), 3) if boots else None,
        "node_start_seconds_p95": round(sorted(boots)[int(len(boots) * 0.95) - 1], 3) if boots else None,
        "processes_per_node": round(len(pids) / max(1, len(running)), 1),
        "rss_kib_per_node": round(rss / max(1, len(running))),
        "pss_kib_per_node": round(pss / max(1, len(running))),
        "simulator_process_rss_growth_kib": sim_rss_after - sim_rss_before,
        "ssh_logins_ok": f"{ssh_ok}/{len(sample)}",
        "seconds_to_delete_all": round(delete_seconds, 2),
        "processes_left_after_delete": len(leftover),
        "node_root_removed_after_stop": not os.path.exists(node_root),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gets", type=int, default=4000)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}",
    }
    config = SimConfig(create_duration=0, start_duration=0, stop_duration=0, delete_duration=0,
                       rate_limit_capacity=10**9, ssh_nodes=False)  # fmt: skip
    with SimServer(ssh_nodes=False, config=config) as sim:
        started = time.perf_counter()
        report["gets_in_process"] = bench_gets(sim.api_url, args.gets, args.threads)
        report["create_wait_delete_cycles"] = bench_cycles(sim, args.cycles, args.threads)
        report["api_seconds"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    with SimServer(ssh_nodes=False, config=config):
        report["simulator_start_seconds"] = round(time.perf_counter() - started, 3)
    report["gets_separate_process"] = bench_gets_subprocess(args.gets, args.threads)
    if args.nodes:
        report["ssh_nodes"] = bench_nodes(args.nodes, args.threads)
    print(json.dumps(report, indent=2))
    if threading.active_count() > 1:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
