"""Benchmark: what a flooding node costs the worker and ansible-playbook (issue 16, part 2).

One simulated SSH node whose root ~/.bashrc prints 300 MiB and exits before every command (the
issue's node). In this process (standing in for the worker): one ``run_playbook`` of a one-task
playbook with a 40 s profile deadline, then the verify checks (``run_checks``). It reports the wall
time of each, this process's peak RSS growth (ru_maxrss) and the peak RSS (VmHWM) of the largest
``ansible-playbook`` process, sampled from /proc every 50 ms.

Runs against any checkout that has ``run_playbook`` and ``run_checks`` (the "before" numbers come from
61d29ca in a temporary git worktree). Needs root (SSH nodes), sshd, ssh-agent. Usage:
  PYTHONPATH=src .venv/bin/python bench/node_flood_bench.py [--mib 300] [--deadline 40]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import hcloud
import httpx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hcloud.images import Image
from hcloud.server_types import ServerType

from nodewright.provisioning.agent import ssh_agent
from nodewright.provisioning.checks import run_checks
from nodewright.provisioning.profiles import get_profile
from nodewright.provisioning.runner import run_playbook
from nodewright.provisioning.ssh import PinnedSsh
from nodewright.provisioning.target import SshTarget
from nodewright.security.secret import Secret


def keypair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def make_node(api_url: str) -> tuple[SshTarget, Secret]:
    client = hcloud.Client(token="B" * 64, api_endpoint=api_url, poll_interval=0.02)
    client_private, client_public = keypair()
    host_private, host_public = keypair()
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {"hostname": "flood-1", "ssh_keys": {"ed25519_private": host_private, "ed25519_public": host_public}}
    )
    key = client.ssh_keys.create(name="bench", public_key=client_public)
    created = client.servers.create(
        "flood-1",
        server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"),
        ssh_keys=[key],
        user_data=user_data,
    )
    created.action.wait_until_finished()
    for action in created.next_actions:
        action.wait_until_finished()
    assert created.server.id is not None
    server = client.servers.get_by_id(created.server.id)
    assert server.public_net is not None and server.public_net.ipv4 is not None
    target = SshTarget(server.public_net.ipv4.ip, 22, "root", host_public)
    return target, Secret(client_private)


class PeakSampler:
    """The largest VmHWM of any process named ansible-playbook while it runs."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = Path(entry.path, "cmdline").read_bytes()
                    if b"ansible-playbook" not in cmdline:
                        continue
                    for line in Path(entry.path, "status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                except OSError:
                    continue

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=300)
    parser.add_argument("--deadline", type=float, default=40.0)
    args = parser.parse_args()
    # The simulator in a process of its own: its nodes' traffic must not count as the worker's memory.
    port = 18480 + os.getpid() % 1000
    sim = subprocess.Popen([sys.executable, "-m", "nodewright.sim", "--port", str(port), "--ssh-nodes"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    api_url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(200):
            try:
                httpx.get(api_url.removesuffix("/v1") + "/_sim/status", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        target, key = make_node(api_url)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            with ssh_agent(key, directory=work) as socket:
                flood = f"head -c {args.mib << 20} /dev/zero | tr '\\\\0' x; exit 0"
                done = PinnedSsh(target, socket, work).run(f'sed -i "1i {flood}" /root/.bashrc')
                assert done.returncode == 0, done.stderr
            playbook = work / "pb.yml"
            task = {"name": "t", "ansible.builtin.command": "true"}
            playbook.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [task]}]))
            before = maxrss_mib()
            started = time.monotonic()
            with PeakSampler() as sampler:
                run = run_playbook(target=target, client_key=key, playbook=playbook, extravars={},
                                   sink=lambda *_a: None, should_cancel=lambda: False,
                                   timeout_seconds=args.deadline)  # fmt: skip
            seconds = time.monotonic() - started
            failed = run.failed.message[:120] if run.failed else None
            print(f"provision: status={run.status} failed={failed!r}")
            print(
                f"provision: {seconds:.1f} s, worker peak RSS +{maxrss_mib() - before:.0f} MiB "
                f"(peak {maxrss_mib():.0f} MiB), ansible-playbook peak {sampler.peak_kib / 1024:.0f} MiB"
            )
            before = maxrss_mib()
            started = time.monotonic()
            with ssh_agent(key, directory=work) as socket:
                ssh = PinnedSsh(target, socket, work)
                results = run_checks(ssh, node_id=1, profile=get_profile("baseline", None))
            seconds = time.monotonic() - started
            print(f"verify: {[(r.name, r.ok, r.detail[:60]) for r in results]}")
            print(
                f"verify: {seconds:.1f} s, worker peak RSS +{maxrss_mib() - before:.0f} MiB "
                f"(peak {maxrss_mib():.0f} MiB)"
            )
    finally:
        sim.terminate()
        sim.wait(30)


if __name__ == "__main__":
    main()
