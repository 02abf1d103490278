"""`nodewright demo` on a taken port (its own or the simulator's): one line naming the option to
change, a non-zero exit, no traceback, and nothing started or created (both ports are tried first)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_server import free_port


@pytest.mark.parametrize(("which", "flag"), [("api", "--port"), ("sim", "--sim-port")])
def test_a_taken_port_is_one_line_naming_its_option(tmp_path: Path, which: str, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        port, sim_port = (busy, free_port()) if which == "api" else (free_port(), busy)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
        env["NODEWRIGHT_DATA_DIR"] = str(tmp_path / "data")
        command = ["demo", "--port", str(port), "--sim-port", str(sim_port)]
        run = subprocess.run([sys.executable, "-m", "nodewright.cli", *command], env=env,
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 2
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith(f"error: port {busy} is in use; choose another with {flag} (make demo "), line
    assert not (tmp_path / "data").exists()
