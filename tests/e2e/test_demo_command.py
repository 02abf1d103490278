"""`nodewright demo` as an operator runs it: URLs and first login printed, a working control plane and
simulator, and on SIGTERM an orderly stop that leaves no simulator process or node layer behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.live_server import free_port


def start_demo(data_dir: Path, port: int, sim_port: int) -> tuple[subprocess.Popen[str], str]:
    """``nodewright demo`` on its own data directory; returns it and its output up to startup."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env["NODEWRIGHT_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodewright.cli", "demo", "--port", str(port), "--sim-port", str(sim_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if "Application startup complete" in line:
            break
    return proc, "".join(lines)


def test_demo_starts_serves_and_stops_cleanly(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    proc, output = start_demo(tmp_path / "data", port, sim_port)
    try:
        assert proc.stdout is not None
        assert f"Hetzner Cloud simulator: http://127.0.0.1:{sim_port}/v1" in output, output
        # The simulator is connected as a provider: a first try goes straight to creating a node.
        assert "Provider connection 'simulator' created for the simulator." in output, output
        assert f"Create a node at http://127.0.0.1:{port}/nodes" in output, output
        assert f"nodewright demo is running at: http://127.0.0.1:{port}" in output, output
        password = re.search(r"sign in as 'admin' with password: (\S+)", output)
        assert password, output

        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()["status"] == "ready"
        token = "d" * 64
        locations = httpx.get(
            f"http://127.0.0.1:{sim_port}/v1/locations",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert locations.status_code == 200 and locations.json()["locations"]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        rest = proc.stdout.read()
        assert "Traceback" not in rest
        assert password.group(1) not in rest  # printed once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    leftovers = list(Path("/run").glob(f"nodewright-sim-{proc.pid}.*"))
    assert leftovers == [], f"simulator node layers left behind: {leftovers}"


def _connections(data_dir: Path) -> list[tuple[str, str | None, str]]:
    import sqlite3

    with sqlite3.connect(data_dir / "nodewright.db") as db:
        rows = db.execute("SELECT name, api_endpoint, status FROM provider_connections").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def test_a_restarted_demo_points_its_connection_at_the_new_simulator(tmp_path: Path) -> None:
    seen = []
    for expected in ("created for", "points at"):
        port, sim_port = free_port(), free_port()
        proc, output = start_demo(tmp_path / "data", port, sim_port)
        try:
            assert f"Provider connection 'simulator' {expected} the simulator." in output, output
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        seen.append(_connections(tmp_path / "data"))
        assert seen[-1] == [("simulator", f"http://127.0.0.1:{sim_port}/v1", "ok")]
