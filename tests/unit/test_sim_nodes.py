"""Host-side safety of the node supervisor that needs neither root nor sshd: what it writes into a
node's layer, which directories it removes, and how it recognises a killed simulator's leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from nodewright.sim.nodes import NodeSupervisor, _real_dir, _write, reap_stale_roots


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
