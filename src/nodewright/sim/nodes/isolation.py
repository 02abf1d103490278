"""The namespaces a node runs in, and the script that enters them (see :func:`node_script`)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from nodewright.sim.nodes.layers import default_root

# What a node's root keeps: Docker's default set without mknod (no device cgroup here) and without
# net_raw (a raw socket could forge traffic on the simulator's bridge).
NODE_CAPABILITIES = (
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "net_bind_service", "sys_chroot", "audit_write", "setfcap",
)  # fmt: skip
_READ_ONLY_PROC = ("sys", "sysrq-trigger", "irq", "bus", "fs")
_MASKED_PROC_FILES = ("kcore", "keys", "timer_list", "sched_debug")
_MASKED_PROC_DIRS = ("acpi", "scsi")
_DEVICES = (
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
)  # fmt: skip


def node_script(directory: Path, hostname: str, command: list[str]) -> str:
    """The shell script a node's namespaces run: mount the node's world, then leave the host's.

    Root inside a node must not be able to change the host. Without a user namespace that takes
    several layers: a copy-on-write overlay of ``/``; ``pivot_root`` with the old root detached
    (a ``chroot`` is escapable by root, and the host's filesystems would be one ``chroot(".")``
    away); a fresh ``/proc`` with the host-wide knobs read-only (``/proc/sys``, ``sysrq-trigger``);
    a read-only fresh ``/sys`` (no cgroup files); a ``/dev`` with only the harmless devices and a
    private devpts (no disks, no host terminals); private IPC; and a capability bounding set
    without ``sys_admin``, ``net_admin``, ``sys_module``, ``sys_boot``, ``mknod``... so nothing
    of this can be undone from inside.
    """
    merged = directory / "merged"
    quoted = " ".join(shlex.quote(part) for part in command)
    caps = ",".join(f"+{cap}" for cap in NODE_CAPABILITIES)
    lines = [
        "set -e",
        f"M={shlex.quote(str(merged))}",
        f"mount -t overlay overlay -o lowerdir=/,upperdir={directory / 'upper'},workdir={directory / 'work'}"
        ' "$M"',
        'mount -t proc -o nosuid,nodev,noexec proc "$M/proc"',
        f"for p in {' '.join(_READ_ONLY_PROC)}; do",
        '  if [ -e "$M/proc/$p" ]; then',
        '    mount --bind "$M/proc/$p" "$M/proc/$p"; mount -o remount,bind,ro "$M/proc/$p"',
        "  fi",
        "done",
        f"for p in {' '.join(_MASKED_PROC_FILES)}; do",
        '  if [ -e "$M/proc/$p" ]; then mount --bind /dev/null "$M/proc/$p"; fi',
        "done",
        f"for p in {' '.join(_MASKED_PROC_DIRS)}; do",
        '  if [ -d "$M/proc/$p" ]; then mount -t tmpfs -o ro,size=4k tmpfs "$M/proc/$p"; fi',
        "done",
        # A boot id of its own per boot, as a rebooted server has (Ansible's reboot module waits
        # for it to change).
        f"cat /proc/sys/kernel/random/uuid > {shlex.quote(str(directory / 'boot_id'))}",
        f'mount --bind {shlex.quote(str(directory / "boot_id"))} "$M/proc/sys/kernel/random/boot_id"',
        'mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"',
        'mount -t tmpfs -o mode=0755,nosuid,size=64k tmpfs "$M/dev"',
        *(f'mknod -m 666 "$M/dev/{name}" c {major} {minor}' for name, major, minor in _DEVICES),
        'mkdir -m 0755 "$M/dev/pts" && mkdir -m 1777 "$M/dev/shm"',
        'mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$M/dev/pts"',
        'ln -s pts/ptmx "$M/dev/ptmx" && ln -s /proc/self/fd "$M/dev/fd"',
        'ln -s /proc/self/fd/0 "$M/dev/stdin" && ln -s /proc/self/fd/1 "$M/dev/stdout"',
        'ln -s /proc/self/fd/2 "$M/dev/stderr"',
        'mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$M/dev/shm"',
        # A fresh /run, as after boot; it also hides every node's layers from the node.
        'mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$M/run"',
        'mkdir -p "$M/run/sshd"',
        f"hostname {shlex.quote(hostname)}",
        'cd "$M"',
        "pivot_root . .",
        "umount -l .",
        "cd /",
        f"exec setpriv --inh-caps=-all --bounding-set=-all,{caps} -- {quoted}",
    ]
    return "\n".join(lines) + "\n"


def launcher(script: Path, netns: str | None = None) -> list[str]:
    """``setpriv --pdeathsig KILL`` ties the node to the thread that started it, so that a
    simulator killed with SIGKILL takes its nodes along (``--kill-child`` does the rest).
    ``nsenter --net`` first puts it into its own network namespace."""
    enter = ["nsenter", f"--net={netns}"] if netns else []
    return [
        *enter,
        "setpriv", "--pdeathsig", "KILL",
        "unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts", "--ipc", "--propagation", "private",
        "/bin/sh", str(script),
    ]  # fmt: skip


def probe_isolation(sshd_path: str) -> str | None:
    """Return why simulated nodes cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "simulated SSH nodes need root (mount/UTS/pid namespaces and overlay mounts)"
    if not os.access(sshd_path, os.X_OK):
        return f"sshd not found at {sshd_path} (install openssh-server)"
    for tool in ("unshare", "setpriv", "pivot_root"):
        if shutil.which(tool) is None:
            return f"{tool}(8) not found (install util-linux)"
    probe = default_root()
    try:
        for sub in ("upper", "work", "merged"):
            (probe / sub).mkdir()
        script = probe / "start.sh"  # the same steps a node takes, ending in true instead of sshd
        script.write_text(node_script(probe, "nodewright-probe", ["/bin/true"]))
        result = subprocess.run(launcher(script), capture_output=True, timeout=10, check=False)
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip()
            return f"cannot create isolated nodes (namespaces/overlayfs unavailable): {detail}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot create isolated nodes: {exc}"
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return None
