"""Host-side safety of the node supervisor that needs neither root nor sshd: what it writes into a
node's layer, which directories it removes, and how it recognises a killed simulator's leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from nodewright.sim.nodes import NodeSpec, NodeSupervisor, _real_dir, _write, reap_stale_roots
from nodewright.sim.nodes.console import CUT_LINE, Consoles
from nodewright.sim.nodes.console import tail as console_tail
from nodewright.sim.nodes.entry import ID_COUNT
from nodewright.sim.nodes.idranges import IdRanges


def test_layer_writes_replace_planted_links_instead_of_following_them(tmp_path: Path) -> None:
    upper, outside = tmp_path / "upper", tmp_path / "outside"
    upper.mkdir()
    outside.mkdir()
    (outside / "passwd").write_text("host\n")
    (upper / "root").symlink_to(outside)
    (upper / "etc").mkdir()
    (upper / "etc" / "hostname").symlink_to(outside / "passwd")
    outside_mode = outside.stat().st_mode

    ssh_dir = _real_dir(upper, "root/.ssh", 0o700)
    _write(ssh_dir / "authorized_keys", "ssh-ed25519 AAAA k\n", 0o600)
    _write(upper / "etc" / "hostname", "node\n", 0o644)

    assert not (upper / "root").is_symlink() and (upper / "root").is_dir()
    assert sorted(p.name for p in outside.iterdir()) == ["passwd"]
    assert (outside / "passwd").read_text() == "host\n"
    assert outside.stat().st_mode == outside_mode
    assert (upper / "root" / ".ssh").stat().st_mode & 0o777 == 0o700
    assert (upper / "etc" / "hostname").read_text() == "node\n"


def test_a_configured_node_root_is_a_parent_the_supervisor_does_not_remove(tmp_path: Path) -> None:
    parent = tmp_path / "nodes"
    parent.mkdir()
    (parent / "keep").write_text("someone else's\n")
    supervisor = NodeSupervisor(root=parent, workers=1)
    try:
        assert supervisor.root.parent == parent
    finally:
        supervisor.shutdown()
    assert not supervisor.root.exists()
    assert (parent / "keep").read_text() == "someone else's\n"


def test_only_the_leftovers_of_dead_simulators_are_reaped(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f"nodewright-sim-{finished.stdout.strip()}.1-abc"
    ticks = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    alive = tmp_path / f"nodewright-sim-{os.getpid()}.{ticks}-def"
    reused = tmp_path / f"nodewright-sim-{os.getpid()}.{int(ticks) + 1}-ghi"  # same pid, other process
    unrelated = tmp_path / "nodewright-sim-legacy"
    for directory in (dead, alive, reused, unrelated):
        (directory / "node-1" / "upper").mkdir(parents=True)

    removed = reap_stale_roots([tmp_path])

    assert sorted(removed) == sorted([dead, reused])
    assert alive.exists() and unrelated.exists()
    assert not dead.exists() and not reused.exists()


def test_reaping_kills_node_launchers_that_outlived_their_simulator(tmp_path: Path) -> None:
    """Nodes started without a parent-death signal (older versions) would still run: the reaper
    recognises their launcher by the start configuration (its last argument) under the dead
    simulator's directory."""
    stale = tmp_path / "nodewright-sim-999999999.1-old"
    config = stale / "node-7" / "start.json"
    config.parent.mkdir(parents=True)
    config.write_text("{}")
    started = tmp_path / "started"
    loop = f"touch {started}; while :; do sleep 0.1; done"
    launcher = subprocess.Popen(["/bin/sh", "-c", loop, "launcher", str(config)])
    try:
        deadline = time.monotonic() + 30  # bounds a broken test only; asserts nothing about speed
        while not started.exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started.exists()  # the process runs: it is what a launcher looks like
        assert reap_stale_roots([tmp_path]) == [stale]
        assert launcher.wait(timeout=30) == -9
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_id_ranges_are_never_shared_between_simulators(tmp_path: Path) -> None:
    """Two simulators (two allocators on one lock directory) asked for the same server id get
    different ranges; a range /etc/subuid gives a user is skipped; a released range is free again,
    and so is every range of an allocator that went away (its locks die with it)."""
    first = IdRanges(tmp_path, excluded=[])
    second = IdRanges(tmp_path, excluded=[(5 * ID_COUNT, 6 * ID_COUNT)])
    try:
        a = first.take(hint=3)
        b = second.take(hint=3)
        assert a == 5 * ID_COUNT and b != a
        assert b == 6 * ID_COUNT  # 5 is held by the first; and excluded for the second anyway
        assert first.take(hint=3) == 7 * ID_COUNT  # never the one it holds
        assert min(a, b) >= 2 * ID_COUNT  # never the host's own ids
        first.release(a)
        assert second.take(hint=2) == 4 * ID_COUNT
        first.close()
        third = IdRanges(tmp_path, excluded=[])
        assert third.take(hint=3) == 5 * ID_COUNT
        third.close()
    finally:
        first.close()
        second.close()


def test_a_node_without_a_network_of_its_own_is_not_booted(tmp_path: Path) -> None:
    """In the host's network namespace a node would reach every service on the host's loopback."""
    supervisor = NodeSupervisor(root=tmp_path, workers=1)
    try:
        supervisor.boot(NodeSpec(server_id=1, address="198.18.0.2", hostname="n1", authorized_keys=[]))
        deadline = time.monotonic() + 30  # bounds a broken test only
        while supervisor.state(1) == "booting" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert supervisor.state(1) == "failed"
        assert "network of their own" in str(supervisor.info(1)["error"])
    finally:
        supervisor.shutdown()


def test_a_node_console_is_bounded_and_keeps_its_end(tmp_path: Path) -> None:
    """A node's init writes into a pipe; what lands on the host's disk stays under the cap and
    keeps the newest output (a boot failure's reason is at the end)."""
    consoles = Consoles(cap=64 * 1024)
    read, write = os.pipe()
    path = tmp_path / "console.log"
    consoles.attach(read, path)
    try:
        for _ in range(200):
            os.write(write, b"x" * 4096)
        os.write(write, b"\nthe last words\n")
        os.close(write)
        deadline = time.monotonic() + 30  # bounds a broken test only
        while b"the last words" not in path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        data = path.read_bytes()
        assert data.endswith(b"the last words\n")
        assert len(data) <= 64 * 1024 + 4096
        assert data.startswith(CUT_LINE)
        assert console_tail(path, 100).endswith("the last words\n")
    finally:
        consoles.close()
