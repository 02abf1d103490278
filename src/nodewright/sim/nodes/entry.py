"""The program that turns a fresh pid and mount namespace into a simulated node, then becomes its init.

It runs as the host's root, as PID 1 of the node's pid namespace, with the host's own Python
(``-I -S``: standard library only, nothing of the node's disk), before anything of the node runs:

1. it makes the node's user namespace: root inside is an unprivileged id range outside
   (``uid_base`` .. ``uid_base + 65535``), so no file of the host is the node's unless it is
   mapped to it on purpose;
2. it mounts the node's disk: an overlay whose only lower layer is the image base (an allowlist:
   the system folders an image needs, ``/etc`` without the host's secrets, an empty ``/var``,
   ``/opt``, ``/srv``, homes...), and over ``/usr`` a second overlay on the host's ``/usr``, both
   lower layers read-only and id-mapped into the node's range, so that root-owned files are
   root's inside (``sudo`` stays setuid root) while the host's copies cannot be changed;
3. it gives the node a fresh ``/proc`` (host-wide knobs read-only, kernel internals masked), a
   read-only ``/sys``, a ``/dev`` with harmless devices only and a fresh ``/run``;
4. it pivots into that root and detaches the host's, so no path leads back;
5. it enters the node's user namespace, with mount, UTS and IPC namespaces of the node's own (the
   host's mounts are locked beneath them), mounts the node's devpts, sets the hostname, drops the
   capabilities a tenant does not need from the bounding set, and executes the node's init.

Only after the last step does anything of the node's own disk run, and by then it is root of the
node and nothing more. The steps are in one file so that the order, which is the security
argument, reads top to bottom.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import struct
import sys
import uuid
from typing import NoReturn

ID_COUNT = 65536
# The whole environment of the node's init: nothing of the simulator's own reaches a node.
ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
# Sizes of the node's memory-backed file systems (a node must not fill the host's memory).
RUN_SIZE, SHM_SIZE = "256m", "512m"
# Kept in the bounding set: what root on a server needs for packages, users, services and sshd
# (Docker's default set without mknod, net_raw and audit_write). Inside a user namespace each of
# them acts only on what the node's own id range owns.
KEPT_CAPABILITIES = (
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "net_bind_service", "sys_chroot", "setfcap",
)  # fmt: skip
CAPABILITY_NUMBERS = {
    "chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4, "kill": 5,
    "setgid": 6, "setuid": 7, "setpcap": 8, "linux_immutable": 9, "net_bind_service": 10,
    "net_broadcast": 11, "net_admin": 12, "net_raw": 13, "ipc_lock": 14, "ipc_owner": 15,
    "sys_module": 16, "sys_rawio": 17, "sys_chroot": 18, "sys_ptrace": 19, "sys_pacct": 20,
    "sys_admin": 21, "sys_boot": 22, "sys_nice": 23, "sys_resource": 24, "sys_time": 25,
    "sys_tty_config": 26, "mknod": 27, "lease": 28, "audit_write": 29, "audit_control": 30,
    "setfcap": 31, "mac_override": 32, "mac_admin": 33, "syslog": 34, "wake_alarm": 35,
    "block_suspend": 36, "audit_read": 37, "perfmon": 38, "bpf": 39, "checkpoint_restore": 40,
}  # fmt: skip
READ_ONLY_PROC = ("sys", "sysrq-trigger", "irq", "bus", "fs")
MASKED_PROC_FILES = ("kcore", "keys", "timer_list", "sched_debug")
MASKED_PROC_DIRS = ("acpi", "scsi")
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))

# Linux ABI constants (the same on every architecture unless noted).
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18,
)  # fmt: skip
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x04000000, 0x08000000, 0x10000000
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # generic numbers since Linux 5.2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
SYS_SETNS = {"x86_64": 308, "aarch64": 268}
SYS_CAPGET, SYS_CAPSET = {"x86_64": (125, 126), "aarch64": (90, 91)}.get(platform.machine(), (125, 126))
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_IDMAP = 0x1, 0x2, 0x4, 0x100000
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
PR_SET_PDEATHSIG, SIGKILL = 1, 9  # the signal module cannot be imported once the host is left
CAP_LAST = 40

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(), target.encode(), fstype.encode() if fstype else None, ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )  # fmt: skip


def bind_read_only(source: str, target: str) -> None:
    mount(source, target, None, MS_BIND)
    mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _syscall(number: int, *args: object) -> int:
    return int(_libc.syscall(ctypes.c_long(number), *args))


def user_namespace(uid_base: int) -> int:
    """An open file descriptor of a new user namespace mapping 0..65535 to the node's range.

    A short-lived child makes it (a process cannot map more than its own id in a namespace it is
    in); the host's root writes its maps. The descriptor keeps the namespace alive for the
    id-mapped mounts and for :func:`enter`.
    """
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's side
        os.close(ready_read)
        os.close(done_write)
        code = 0 if _libc.unshare(CLONE_NEWUSER) == 0 else 1
        # /proc is still the host's here: its "self" names this process by its pid out there.
        os.write(ready_write, os.readlink("/proc/self").encode() + b"\n")
        os.read(done_read, 1)
        os._exit(code)
    os.close(ready_write)
    os.close(done_read)
    try:
        host_pid = int(os.read(ready_read, 32).strip() or b"0")
        mapping = f"0 {uid_base} {ID_COUNT}\n"
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{host_pid}/{name}", "w") as handle:
                handle.write(mapping)
        return os.open(f"/proc/{host_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.write(done_write, b"x")
        os.close(done_write)
        os.close(ready_read)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise OSError(f"could not create the node's user namespace (status {status})")


def id_mapped(source: str, target: str, userns: int) -> None:
    """Mount a read-only view of ``source`` at ``target`` whose ids are seen through ``userns``'s map:
    what the host's root owns there, the node's root owns (and cannot change: read-only)."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE
    tree = _check(_syscall(SYS_OPEN_TREE, AT_FDCWD, source.encode(), flags), f"open_tree {source}")
    try:
        attr = struct.pack("QQQQ", MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV, 0, 0, userns)
        buffer = ctypes.create_string_buffer(attr, len(attr))
        _check(
            _syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH | AT_RECURSIVE, buffer, len(attr)),
            f"id-mapping {source}",
        )
        _check(
            _syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH),
            f"mounting {source} at {target}",
        )
    finally:
        os.close(tree)


def overlay(lower: str, upper: str, work: str, target: str) -> None:
    mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")


def mount_disk(directory: str, image: str, userns: int, usr: str) -> str:
    """The node's root (image base + its own upper layer) with ``/usr`` (the host's + its own)."""
    merged = os.path.join(directory, "merged")
    id_mapped(image, os.path.join(directory, "lower"), userns)
    id_mapped(usr, os.path.join(directory, "lower-usr"), userns)

    def layer(name: str) -> str:
        return os.path.join(directory, name)

    overlay(layer("lower"), layer("upper"), layer("work"), merged)
    overlay(layer("lower-usr"), layer("upper-usr"), layer("work-usr"), os.path.join(merged, "usr"))
    return merged


def mount_system(merged: str, directory: str, uid_base: int) -> None:
    """/proc, /sys, /dev and /run as a booted server has them, with nothing of the host's."""
    proc = os.path.join(merged, "proc")
    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name in READ_ONLY_PROC:
        if os.path.exists(os.path.join(proc, name)):
            bind_read_only(os.path.join(proc, name), os.path.join(proc, name))
    for name in MASKED_PROC_FILES:
        if os.path.exists(os.path.join(proc, name)):
            mount("/dev/null", os.path.join(proc, name), None, MS_BIND)
    for name in MASKED_PROC_DIRS:
        if os.path.isdir(os.path.join(proc, name)):
            mount("tmpfs", os.path.join(proc, name), "tmpfs", MS_RDONLY, "size=4k")
    # A boot id of its own per boot, as a rebooted server has (Ansible's reboot module waits for it).
    boot_id = os.path.join(directory, "boot_id")
    with open(boot_id, "w") as handle:
        handle.write(f"{uuid.uuid4()}\n")
    mount(boot_id, os.path.join(proc, "sys/kernel/random/boot_id"), None, MS_BIND)
    mount("sysfs", os.path.join(merged, "sys"), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = os.path.join(merged, "dev")
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, f"mode=0755,size=64k,uid={uid_base},gid={uid_base}")
    for name, major, minor in DEVICES:
        os.mknod(os.path.join(dev, name), 0o020666, os.makedev(major, minor))
        os.chmod(os.path.join(dev, name), 0o666)  # noqa: S103 - as on every Linux system
    for name, mode in (("pts", 0o755), ("shm", 0o1777)):
        os.mkdir(os.path.join(dev, name))
        os.chmod(os.path.join(dev, name), mode)
        os.chown(os.path.join(dev, name), uid_base, uid_base)
    for link, target in (
        ("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
    ):  # fmt: skip
        os.symlink(target, os.path.join(dev, link))
        os.lchown(os.path.join(dev, link), uid_base, uid_base)
    owner = f"uid={uid_base},gid={uid_base}"
    mount(
        "tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={SHM_SIZE},{owner}"
    )
    # A fresh /run, as after boot, owned by the node's root (sshd wants its /run/sshd root's).
    run = os.path.join(merged, "run")
    mount(
        "tmpfs",
        run,
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"mode=0755,size={RUN_SIZE},uid={uid_base},gid={uid_base}",
    )
    os.mkdir(os.path.join(run, "sshd"), 0o755)
    os.chown(os.path.join(run, "sshd"), uid_base, uid_base)


def leave_host(merged: str) -> None:
    """``pivot_root`` into the node's disk and detach the host's: no path leads back."""
    os.chdir(merged)
    _check(_syscall(SYS_PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detaching the host's root")
    os.chdir("/")


def enter(userns: int, hostname: str, kept: tuple[str, ...]) -> None:
    """Become root of the node's user namespace with namespaces of the node's own, then drop the
    capabilities outside ``kept`` from the bounding set and the inheritable and ambient sets."""
    _check(_syscall(SYS_SETNS[platform.machine()], userns, CLONE_NEWUSER), "entering the user namespace")
    os.close(userns)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC), "unshare")
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    # Entering the user namespace and the id changes cleared the parent-death signal that the
    # launcher (unshare --kill-child) set: without it again, a simulator killed with SIGKILL
    # takes unshare along but leaves this process, the node's init, running under the host's init.
    _check(_libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "setting the parent-death signal")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    mount(
        "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )  # fmt: skip
    _check(_libc.sethostname(hostname.encode(), len(hostname.encode())), "sethostname")
    keep = {CAPABILITY_NUMBERS[name] for name in kept}
    for number in range(CAP_LAST + 1):
        if number not in keep:
            result = _libc.prctl(PR_CAPBSET_DROP, number, 0, 0, 0)
            if result < 0 and ctypes.get_errno() != 22:  # EINVAL: a capability this kernel lacks
                _check(result, f"dropping capability {number}")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_syscall(SYS_CAPGET, header, data), "capget")
    mask = [sum(1 << n for n in keep if n // 32 == word) for word in (0, 1)]
    for word in (0, 1):  # effective, permitted, inheritable per 32-bit word
        data[word * 3] &= mask[word]
        data[word * 3 + 1] &= mask[word]
        data[word * 3 + 2] = 0
    _check(_syscall(SYS_CAPSET, header, data), "capset")


def main(argv: list[str]) -> NoReturn:
    with open(argv[1]) as handle:
        config = json.load(handle)
    directory: str = config["directory"]
    uid_base: int = config["uid_base"]
    if config.get("own_network"):
        # The node's network namespace is the host's root's; its sshd (root of the node, not of
        # that namespace) binds port 22 because the namespace lets anyone bind low ports.
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as handle:
            handle.write("0\n")
    userns = user_namespace(uid_base)
    merged = mount_disk(directory, config["image"], userns, config.get("usr", "/usr"))
    mount_system(merged, directory, uid_base)
    # From here on every path names the node's disk, which root in the node controls: nothing may
    # be imported (this Python's own library may resolve into the node's /root), so imports fail.
    sys.meta_path.clear()
    sys.path_hooks.clear()
    sys.path.clear()
    leave_host(merged)
    enter(userns, config["hostname"], tuple(config.get("capabilities", KEPT_CAPABILITIES)))
    command: list[str] = config["command"]
    os.execve(command[0], command, ENVIRONMENT)  # noqa: S606 - the node's init, as root of the node only


if __name__ == "__main__":
    try:
        main(sys.argv)
    except BaseException as exc:
        os.write(2, f"node setup failed: {exc}\n".encode(errors="replace"))
        os._exit(1)
