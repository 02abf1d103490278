"""The explicit environment of every ansible-playbook run: nothing inherited, no secret in it.

ansible-runner seeds its child's environment with ``os.environ`` and writes the result into its
artifacts; :func:`ansible_environment` is what the run gets instead (see ``runner.explicit_env``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nodewright.output_limits import EVENT_RESULT_CAP

# Ansible's own defaults re-enable host-key prompts or write into the home directory; these pin them.
_FIXED = {
    "ANSIBLE_HOST_KEY_CHECKING": "True",
    "ANSIBLE_PIPELINING": "True",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_NOCOLOR": "True",
    "ANSIBLE_FORCE_COLOR": "False",
    "ANSIBLE_GATHERING": "explicit",
    "ANSIBLE_DEPRECATION_WARNINGS": "False",
    "ANSIBLE_SYSTEM_WARNINGS": "False",
    "ANSIBLE_LOCALHOST_WARNING": "False",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
    "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
    "ANSIBLE_TIMEOUT": "10",
    "ANSIBLE_VERBOSITY": "0",
    "ANSIBLE_GALAXY_SERVER": "",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    # ansible-runner's display callback drops a task result larger than this from its event, in
    # ansible-playbook, before the event travels to us (output_limits).
    "MAX_EVENT_RES": str(EVENT_RESULT_CAP),
}


# What only the configuration file can set (no environment variable exists for it). Ansible's
# processes poll each other every millisecond by default, which burns CPU for as long as a run lasts;
# with many runs at once that spinning takes CPU from the runs themselves.
ANSIBLE_CFG = "[defaults]\ninternal_poll_interval = 0.02\n"


def ssh_args(known_hosts: Path, host_key_type: str) -> str:
    """Strict checking against the one pinned key; a short-lived master connection per run."""
    return " ".join(
        [
            "-F /dev/null",
            "-o StrictHostKeyChecking=yes",
            f"-o UserKnownHostsFile={known_hosts}",
            "-o GlobalKnownHostsFile=/dev/null",
            "-o CheckHostIP=no",
            f"-o HostKeyAlgorithms={host_key_type}",
            "-o PasswordAuthentication=no",
            "-o KbdInteractiveAuthentication=no",
            "-o IdentityFile=none",
            "-o ControlMaster=auto",
            "-o ControlPersist=30s",
            "-o ServerAliveInterval=5",
            "-o ServerAliveCountMax=3",
        ]
    )


def ansible_environment(
    workdir: Path, control_dir: Path, known_hosts: Path, host_key_type: str
) -> dict[str, str]:
    """Everything ansible-playbook may see. ``workdir`` and ``control_dir`` are the run's private
    0700 directories (the second short enough for ssh's control sockets)."""
    bindir = str(Path(sys.executable).parent)  # ansible-playbook lives beside our interpreter
    env = dict(_FIXED)
    env.update(
        {
            "PATH": os.pathsep.join([bindir, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(workdir),
            "TMPDIR": str(workdir / "tmp"),
            "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"),
            "ANSIBLE_HOME": str(workdir / "ansible-home"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
            "ANSIBLE_SSH_ARGS": ssh_args(known_hosts, host_key_type),
            "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"),
        }
    )
    return env
