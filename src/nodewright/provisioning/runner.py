"""Run a profile's playbook against one pinned target with ansible-runner.

What the run is given, and what it is not:
- the client key in memory only: a private ssh-agent of ours holds it (``provisioning.agent``; not
  ansible-runner's ``ssh_key``, whose agent outlives the run by up to ten seconds), so no key file is
  ever written;
- an explicit environment (:mod:`nodewright.provisioning.environment`); nothing of the worker's own
  environment reaches ansible-playbook or its artifacts;
- strict host-key checking against the single pinned key, pipelining, a short ControlPersist master
  that is closed when the run ends;
- a private 0700 directory, removed whole afterwards (inventory, artifacts, control sockets);
- every event folded into the job log (redacted) and the recap; cancel polled on every pexpect loop;
- a wall-clock deadline of our own (``provisioning.deadline``): when ``timeout_seconds`` pass, every
  process of the run is ended, whatever ansible-runner's loop is busy with;
- each ssh that ansible-playbook runs has its output capped (``provisioning.ssh_output_cap``), so a
  node that floods costs ansible-playbook and the worker bounded memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner

from nodewright.provisioning.agent import ssh_agent
from nodewright.provisioning.deadline import ProcessDeadline
from nodewright.provisioning.environment import ANSIBLE_CFG, ansible_environment
from nodewright.provisioning.events import EventDigest, FailedTask, LogSink
from nodewright.provisioning.ssh import end_master, ssh_binary
from nodewright.provisioning.ssh_output_cap import write_launcher
from nodewright.provisioning.target import SshTarget
from nodewright.security.secret import Secret

WORKDIR_PREFIX = "nw-ansible-"
# ssh's control sockets need a short path (108 bytes with ssh's random suffix): their own directory
# in the system temp dir, whatever ``workdir_parent`` is.
CONTROL_DIR_PREFIX = "nw-cp-"


@dataclass(frozen=True)
class PlaybookRun:
    status: str  # successful | failed | timeout | canceled
    rc: int
    recap: dict[str, dict[str, int]]
    failed: FailedTask | None
    tasks: int
    seconds: float
    last_task: str = ""  # the task that was running when the run ended

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.failed is None


def inventory_for(target: SshTarget) -> dict[str, Any]:
    return {
        "all": {
            "hosts": {
                "node": {
                    "ansible_host": target.address,
                    "ansible_port": target.port,
                    "ansible_user": target.user,
                    "ansible_python_interpreter": "/usr/bin/python3",
                }
            }
        }
    }


def unsafe_yaml(value: Any) -> str:
    """``value`` as YAML with every string tagged ``!unsafe``: Ansible never templates it.

    Extra vars are templated when a task uses them, so ``{{ lookup('pipe', ...) }}`` inside one
    (an SSH key's free-text comment, a node or profile field) would run on this machine, the
    controller. JSON strings are valid YAML double-quoted scalars; flow style keeps it one line."""
    if isinstance(value, str):
        return "!unsafe " + json.dumps(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {unsafe_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(unsafe_yaml(v) for v in value) + "]"
    raise TypeError(f"extra var of type {type(value).__name__} is not supported")


def write_extravars(path: Path, extravars: Mapping[str, Any]) -> str:
    """Write ``extravars`` to ``path`` (0600) and return the ansible-playbook arguments that load it."""
    path.write_text(unsafe_yaml(dict(extravars)) + "\n")
    os.chmod(path, 0o600)
    return f"-e @{shlex.quote(str(path))}"


def explicit_env(runner_env: Mapping[str, str], ours: Mapping[str, str]) -> dict[str, str]:
    """ansible-runner's environment minus everything it copied from ``os.environ``, plus ours.

    ansible-runner adds its own callback settings on top of ``os.environ.copy()``; keep those (their
    values differ from the inherited ones) and drop every inherited variable.
    """
    inherited = os.environ
    kept = {k: v for k, v in runner_env.items() if k not in inherited or inherited[k] != v}
    kept.update(ours)
    return kept


def close_masters(control_dir: Path) -> None:
    """End the ControlPersist master connections this run left (they would outlive the job)."""
    if not control_dir.is_dir():
        return
    for sock in control_dir.iterdir():
        end_master(sock)


def run_playbook(
    *,
    target: SshTarget,
    client_key: Secret,
    playbook: Path,
    extravars: Mapping[str, Any],
    sink: LogSink,
    should_cancel: Callable[[], bool],
    timeout_seconds: float,
    workdir_parent: Path | None = None,
    tag: Mapping[str, str] | None = None,
) -> PlaybookRun:
    """``tag``: environment entries marking every process of the run as the job's (see ssh_agent)."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=workdir_parent))
    control_dir = Path(tempfile.mkdtemp(prefix=CONTROL_DIR_PREFIX))
    digest = EventDigest(sink)
    try:
        os.chmod(workdir, 0o700)
        os.chmod(control_dir, 0o700)
        (workdir / "tmp").mkdir(mode=0o700)
        (workdir / "ansible.cfg").write_text(ANSIBLE_CFG)
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text(target.known_hosts_line())
        with ssh_agent(client_key, directory=control_dir, tag=tag) as agent_socket:
            env = ansible_environment(workdir, control_dir, known_hosts, target.host_public_key.split()[0])
            env["SSH_AUTH_SOCK"] = str(agent_socket)
            env["ANSIBLE_SSH_EXECUTABLE"] = str(write_launcher(workdir / "ssh", ssh_binary()))
            # File transfers through the same capped ssh: sftp and scp would run uncapped beside it.
            env["ANSIBLE_SSH_TRANSFER_METHOD"] = "piped"
            env.update(tag or {})
            # The control directory names the run's ControlPersist master, whose mark ssh erased.
            with ProcessDeadline(started + timeout_seconds, paths=(str(control_dir),)) as deadline:
                env.update(deadline.env)
                run = _run(
                    workdir, control_dir, env, target, playbook, extravars, digest, should_cancel,
                    timeout_seconds, started,
                )  # fmt: skip
            if deadline.passed and run.status != "canceled":
                return dataclasses.replace(run, status="timeout")
            return run
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(control_dir, ignore_errors=True)


def _run(
    workdir: Path,
    control_dir: Path,
    env: dict[str, str],
    target: SshTarget,
    playbook: Path,
    extravars: Mapping[str, Any],
    digest: EventDigest,
    should_cancel: Callable[[], bool],
    timeout_seconds: float,
    started: float,
) -> PlaybookRun:
    runner = ansible_runner.interface.init_runner(
        private_data_dir=str(workdir),
        playbook=str(playbook.resolve()),
        inventory=inventory_for(target),
        # Not ansible-runner's ``extravars`` (plain JSON: its strings would be templates).
        cmdline=write_extravars(workdir / "extravars.yml", extravars),
        envvars=env,
        suppress_env_files=True,
        quiet=True,
        ident="run",
        settings={
            "job_timeout": int(timeout_seconds),
            "pexpect_timeout": 0.5,
            "suppress_ansible_output": True,
            "suppress_output_file": True,
        },
        event_handler=digest,
        cancel_callback=should_cancel,
    )
    runner.config.env = explicit_env(runner.config.env, env)
    try:
        runner.run()
    finally:
        close_masters(control_dir)
    return PlaybookRun(
        status=str(runner.status),
        rc=int(runner.rc if runner.rc is not None else -1),
        recap=digest.recap,
        failed=digest.failed,
        tasks=digest.tasks,
        seconds=time.monotonic() - started,
        last_task=digest.last_task,
    )
