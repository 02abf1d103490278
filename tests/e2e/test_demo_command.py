"""`nodewright demo` as an operator runs it, one first start and one restart on the same data
directory: the first creates demo-1 through the API, shows its stages, then prints the dashboard, the
first login and an ssh command that logs in to the node; SIGTERM stops both servers in order with
status 0 and leaves no process behind; the restart makes no other node, shows demo-1 as lost (its
server went with the previous simulator) and points its connection at the new simulator.

A taken port is in tests/integration/test_demo_ports.py, the once-per-data-directory rules in
tests/integration/test_demo_first_node.py: they need no servers."""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.live_server import free_port
from tests.support.system import missing, require_binary, require_root

FIRST_START_SECONDS = 300.0  # a node is acquired, provisioned and verified: generous for a busy machine


class Demo:
    """A ``nodewright demo`` process whose output is read as it comes (by a thread), so that a test
    waits for a line with a deadline instead of blocking on the pipe."""

    def __init__(self, home: Path, data_dir: Path, port: int, sim_port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NODEWRIGHT_", "SSH_AUTH_SOCK"))}
        # The operator's home (no SSH key in it) and CLI contexts file are the test's own.
        env.update(HOME=str(home), NODEWRIGHT_DATA_DIR=str(data_dir),
                   NODEWRIGHT_CLI_CONFIG=str(home / "contexts.json"))  # fmt: skip
        self.env = env
        command = ["demo", "--port", str(port), "--sim-port", str(sim_port)]
        self.proc = subprocess.Popen([sys.executable, "-m", "nodewright.cli", *command], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)  # fmt: skip
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float, *, unless: str = "Traceback") -> str:
        """The output up to the line holding ``text``; fails on ``unless``, an exit or the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout:g} s:\n{self.output}") from None
            if line is None:
                raise AssertionError(f"demo exited ({self.proc.wait()}) before {text!r}:\n{self.output}")
            self.lines.append(line)
            assert unless not in line, self.output
            if text in line:
                return self.output

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit status and what was printed after it."""
        seen = len(self.lines)
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout=60)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return status, "".join(self.lines[seen:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (the simulator's nodes, their sshd, anything a job started), with
    its start time, so that a pid reused later is not taken for one left behind."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = (int(fields[1]), fields[19])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, started) in parents.items():
            if ppid == parent and child not in found:
                found[child] = started
                frontier.append(child)
    return found


def still_running(processes: dict[int, str]) -> list[str]:
    left = []
    for pid, started in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[19] == started and fields[0] != "Z":
            left.append(f"{pid} {command}")
    return left


def nodewright(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodewright.cli", *args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, check=False)  # fmt: skip


def stopped_cleanly(demo: Demo) -> str:
    """SIGTERM: status 0, both servers say they stopped (nodewright first), nothing left running."""
    children = descendants(demo.proc.pid)
    status, rest = demo.stop()
    assert status == 0, demo.output
    assert rest.index("nodewright stopped.") < rest.index("Hetzner Cloud simulator stopped."), rest
    assert "Traceback" not in rest, rest
    assert still_running(children) == [], f"left running after the demo stopped: {still_running(children)}"
    leftovers = list(Path("/run").glob(f"nodewright-sim-{demo.proc.pid}.*"))
    assert leftovers == [], f"simulator node layers left behind: {leftovers}"
    return rest


def nodes_and_connections(data_dir: Path) -> tuple[list[tuple[str, str, str | None]], list[tuple[str, str]]]:
    with sqlite3.connect(data_dir / "nodewright.db") as db:
        nodes = db.execute("SELECT name, status, error_code FROM nodes ORDER BY id").fetchall()
        links = db.execute("SELECT name, api_endpoint FROM provider_connections").fetchall()
    return [(n[0], n[1], n[2]) for n in nodes], [(c[0], c[1]) for c in links]


def test_demo_makes_its_node_once_and_stops_cleanly(tmp_path: Path) -> None:
    require_root()
    require_binary("sshd", "/usr/sbin/sshd")
    require_binary("ssh")
    home, data_dir = tmp_path / "home", tmp_path / "data"
    home.mkdir()

    port, sim_port = free_port(), free_port()
    first = Demo(home, data_dir, port, sim_port)
    try:
        started = first.wait_for("Hetzner Cloud simulator:", 60)
        if "SSH nodes: off" in started:
            missing(f"simulated SSH nodes unavailable: {started.strip().splitlines()[-1]}")
        output = first.wait_for("Log in to it:", FIRST_START_SECONDS, unless="did not become ready")
        assert f"Hetzner Cloud simulator: http://127.0.0.1:{sim_port}/v1" in output
        assert "Provider connection 'simulator' created for the simulator." in output
        assert (
            f"No SSH key in ~/.ssh, so one was made for you (ed25519): {data_dir / 'demo_ed25519'}" in output
        )
        assert (data_dir / "demo_ed25519").stat().st_mode & 0o777 == 0o600
        # Its stages as they happened, then where to go: in that order.
        stages = ["Creating node demo-1 through the API", "acquiring server…", "provisioning…",
                  "verifying…", "demo-1 is ready in", f"nodewright demo is running at: http://127.0.0.1:{port}",
                  "First start: sign in as 'admin' with password: ",
                  "Log in to it: nodewright nodes ssh demo-1"]  # fmt: skip
        positions = [output.find(stage) for stage in stages]
        assert -1 not in positions and positions == sorted(positions), output
        password = re.search(r"sign in as 'admin' with password: (\S+)", output)
        assert password is not None
        assert "nwt_" not in output  # the demo's API token is saved, never shown

        # The command it printed logs in to the node (the demo's key, host key pinned, no prompt).
        printed = output.rsplit("Log in to it: nodewright ", 1)[1].split("\n", 1)[0].split()
        login = nodewright([*printed, "-o", "BatchMode=yes", "--", "hostname"], first.env)
        assert (login.returncode, login.stdout.strip()) == (0, "demo-1"), login.stderr

        rest = stopped_cleanly(first)
        assert password.group(1) not in rest  # shown once
    finally:
        first.kill()

    nodes, links = nodes_and_connections(data_dir)
    assert [n[:2] for n in nodes] == [("demo-1", "ready")]

    port, sim_port = free_port(), free_port()
    second = Demo(home, data_dir, port, sim_port)
    try:
        output = second.wait_for("makes another.", 120)
        assert "Provider connection 'simulator' points at the simulator." in output
        assert "Creating node" not in output and "First start" not in output
        assert "Reconciled with the new simulator: 1 node(s) of the previous run are lost" in output
        assert "demo-1 (made on the first start) is lost." in output
        nodes, links = nodes_and_connections(data_dir)
        # No second node; the first is no ghost `ready` with the addresses of a simulator that is gone.
        assert nodes == [("demo-1", "lost", "server_gone")]
        assert links == [("simulator", f"http://127.0.0.1:{sim_port}/v1")]
        refused = nodewright(["nodes", "ssh", "demo-1", "--", "true"], second.env)
        assert refused.returncode == 4 and "is lost" in refused.stderr, refused.stderr
        stopped_cleanly(second)
    finally:
        second.kill()
