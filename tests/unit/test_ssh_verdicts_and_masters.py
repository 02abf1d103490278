"""What a hostile node cannot make the controller believe or keep (issue 16, second review).

1. The stage deadline finds a run's processes by a mark in their environment; ssh's ControlPersist
   master calls setproctitle(), which overwrites its argv and environ area, so it is found by the
   run's control directory in its title instead.
2. ``SshResult.failure`` takes ssh's verdict from ssh's own log only: a logged-in node's stderr
   (a ~/.bashrc or a check printing ssh's words, then exit 255) is the node's, not a host key
   mismatch (terminal, "do not trust it") or an authentication failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from nodewright.provisioning.deadline import RUN_MARK_ENV, end_marked, marked_processes
from nodewright.provisioning.ssh import HOST_KEY_MISMATCH, SSH_AUTH_FAILED, SshResult


def test_node_stderr_is_not_taken_for_a_host_key_mismatch() -> None:
    # ssh's own log says it logged in; the command (the node's) printed this and exited 255.
    result = SshResult(
        returncode=255,
        stdout="",
        stderr="@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\n",
        ssh_log='Authenticated to 203.0.113.7 ([203.0.113.7]:22) using "publickey".\n',
    )
    failure = result.failure()
    assert failure is None or failure.code != HOST_KEY_MISMATCH


def test_node_stderr_is_not_taken_for_an_auth_failure() -> None:
    result = SshResult(
        returncode=255,
        stdout="",
        stderr="Permission denied (publickey).\n",
        ssh_log='Authenticated to 203.0.113.7 ([203.0.113.7]:22) using "publickey".\n',
    )
    failure = result.failure()
    assert failure is None or failure.code != SSH_AUTH_FAILED


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists(), reason="needs root and sshd")
def test_deadline_mark_finds_the_controlpersist_master(tmp_path: Path) -> None:
    for name in ("hk", "ck"):
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(tmp_path / name)], check=True)
    shutil.copy(tmp_path / "ck.pub", tmp_path / "ak")
    port = _free_port()
    (tmp_path / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp_path}/hk\nAuthorizedKeysFile {tmp_path}/ak\n"
        "StrictModes no\nPermitRootLogin yes\nPasswordAuthentication no\nUsePAM no\n"
        f"PidFile {tmp_path}/sshd.pid\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    config, log = str(tmp_path / "sshd_config"), str(tmp_path / "log")
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", config, "-E", log])
    mark = "review2" + os.urandom(4).hex()
    control_dir = tmp_path / "ctl"
    control_dir.mkdir()
    control = control_dir / "cm"
    try:
        time.sleep(0.5)
        subprocess.run(
            ["ssh", "-F", "/dev/null", "-i", str(tmp_path / "ck"), "-o", "IdentitiesOnly=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ControlMaster=auto", "-o", "ControlPersist=30s", "-o", f"ControlPath={control}",
             "-p", str(port), "root@127.0.0.1", "true"],
            env={"PATH": os.defpath, RUN_MARK_ENV: mark}, check=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20,
        )  # fmt: skip
        masters = [
            int(pid) for pid in os.listdir("/proc") if pid.isdigit() and str(control).encode() in cmdline(pid)
        ]
        assert masters, "no ControlPersist master running"
        # The master was started with the mark in its environment, which it erases (setproctitle).
        found = marked_processes(mark, (str(control_dir),))
        assert set(masters) <= set(found), (masters, found)
        end_marked(mark, grace=2.0, paths=(str(control_dir),))
        assert not [
            p
            for p in masters
            if Path(f"/proc/{p}").exists()
            and b"Z" not in Path(f"/proc/{p}/stat").read_bytes().rsplit(b")", 1)[1][:3]
        ]
    finally:
        subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={control}", "-O", "exit", "x"],
                       capture_output=True, timeout=10, check=False)  # fmt: skip
        sshd.send_signal(signal.SIGTERM)
        sshd.wait(timeout=10)


def cmdline(pid: str) -> bytes:
    """A process's command line, empty when it has ended meanwhile."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
