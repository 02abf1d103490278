# ruff: noqa: T201  (PID 1 of a node: its output is the node's console log)
"""PID 1 of a simulated node (runs inside the node, standard library only).

It does what a server's init does for what provisioning touches, and no more:

- reaps every orphan, so no zombie piles up in the node;
- runs cloud-init's boot stages once per instance (``cloud-init boot``), with sshd already up
  as on an Ubuntu image, where ``cloud-init status --wait`` is how clients learn it finished;
- supervises sshd (restarted if it dies) and serves ``service ssh|sshd start|stop|restart|
  reload|status`` over a socket in /run (the ``service`` command talks to it);
- turns ``reboot``/``poweroff`` requests into its own exit status, which the host's supervisor
  turns into the server's state at the API: 10 = powered off, 11 = rebooted. Any other end of
  PID 1 (a crash, a kill) leaves the server ``off``, as a crashed VM would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

SOCKET = "/run/nodewright/init.sock"
SSHD = ["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config"]
POWEROFF, REBOOT = 10, 11
SSH_NAMES = {"ssh", "sshd"}


def log(message: str) -> None:
    print(f"init: {message}", flush=True)


class Init:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spawn = threading.Lock()  # held while a child whose status we need runs
        self.sshd: subprocess.Popen[bytes] | None = None
        self.sshd_wanted = True
        self.exit_code: int | None = None
        self.wake = threading.Event()

    def check_config(self) -> str | None:
        """``sshd -t``; the reaper waits meanwhile, so this process's status is not taken from it."""
        with self.spawn:
            check = subprocess.run([SSHD[0], "-t", "-f", SSHD[-1]], capture_output=True, text=True)
        return None if check.returncode == 0 else f"sshd configuration is invalid:\n{check.stderr}"

    # -- sshd -----------------------------------------------------------------------------------
    def start_sshd(self, check: bool = True) -> tuple[int, str]:
        """Start sshd; ``check`` runs ``sshd -t`` first (skipped at boot: sshd itself says why)."""
        with self.lock:
            self.sshd_wanted = True
            if self.sshd is not None and self.sshd.poll() is None:
                return 0, "sshd is already running\n"
            if check:
                problem = self.check_config()
                if problem:
                    return 1, problem
            with self.spawn:
                self.sshd = subprocess.Popen(SSHD)
            return 0, ""

    def stop_sshd(self) -> tuple[int, str]:
        with self.lock:
            self.sshd_wanted = False
            process, self.sshd = self.sshd, None
        if process is not None and process.poll() is None:
            process.terminate()  # open sessions are their own processes and live on
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        return 0, ""

    def ssh_service(self, action: str) -> tuple[int, str]:
        if action == "start":
            return self.start_sshd()
        if action == "stop":
            return self.stop_sshd()
        if action == "restart":
            problem = self.check_config()
            if problem:  # as the unit's ExecStartPre: a broken config keeps the old sshd running
                return 1, problem
            self.stop_sshd()
            return self.start_sshd()
        if action in {"reload", "force-reload"}:
            problem = self.check_config()
            if problem:
                return 1, problem
            with self.lock:
                process = self.sshd
            if process is None or process.poll() is not None:
                return self.start_sshd()
            process.send_signal(signal.SIGHUP)
            return 0, ""
        if action == "status":
            with self.lock:
                running = self.sshd is not None and self.sshd.poll() is None
                pid = self.sshd.pid if running and self.sshd is not None else None
            if running:
                return 0, f"sshd is running (pid {pid})\n"
            return 3, "sshd is not running\n"
        return 2, f"usage: service ssh {{start|stop|restart|reload|status}} (not {action})\n"

    # -- control socket ----------------------------------------------------------------------------
    def serve(self) -> None:
        os.makedirs(os.path.dirname(SOCKET), mode=0o700, exist_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(SOCKET)
            os.chmod(SOCKET, 0o600)
            server.listen(8)
            while True:
                conn, _ = server.accept()
                threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = json.loads(conn.makefile().readline())
                if request.get("power") in {"reboot", "poweroff"}:
                    conn.sendall(json.dumps({"rc": 0, "out": ""}).encode() + b"\n")
                    delay = float(request.get("delay", 0))
                    threading.Timer(delay, self.power, (request["power"],)).start()
                    return
                rc, out = self.ssh_service(str(request.get("action")))
            except (ValueError, OSError) as exc:
                rc, out = 1, f"{exc}\n"
            conn.sendall(json.dumps({"rc": rc, "out": out}).encode() + b"\n")

    def power(self, what: str) -> None:
        log(f"{what} requested")
        self.exit_code = REBOOT if what == "reboot" else POWEROFF
        self.wake.set()

    # -- main loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.power("poweroff"))
        signal.signal(signal.SIGINT, lambda *_: self.power("reboot"))  # ctrl-alt-del
        signal.signal(signal.SIGCHLD, lambda *_: self.wake.set())
        threading.Thread(target=self.serve, daemon=True).start()
        rc, out = self.start_sshd(check=False)
        if rc != 0:
            log(out.strip())
        if os.path.exists("/usr/bin/cloud-init"):
            subprocess.Popen(["/usr/bin/cloud-init", "boot"])
        while self.exit_code is None:
            self.reap()
            with self.lock:
                dead = self.sshd is not None and self.sshd.poll() is not None
                wanted = self.sshd_wanted
            if dead and wanted:
                log("sshd exited; starting it again")
                time.sleep(0.5)
                self.start_sshd()
            self.wake.wait(1.0)
            self.wake.clear()
        return self.exit_code

    def reap(self) -> None:
        reaped = []
        with self.spawn:
            while True:
                try:
                    pid, _status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                reaped.append(pid)
        with self.lock:
            if self.sshd is not None and self.sshd.pid in reaped:
                self.sshd.returncode = 0  # reaped here; Popen must not wait for it again


if __name__ == "__main__":
    sys.exit(Init().run())
