"""Hold a running node still: every process in its pid namespace stopped, then continued.

``create_image`` copies a running node's disk as the host's root. While any process of the node
runs, it could swap a directory that the copy has listed for a link to a host path between the
listing and the copy of its entries, and the copy would follow it on the host. Frozen, the node
can change nothing; as on Hetzner, the snapshot of a running server is as consistent as the
moment it was taken.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

ROUNDS = 200


class FreezeError(RuntimeError):
    pass


def namespace_of(launcher_pid: int) -> str | None:
    """The pid namespace of the node's init (the launcher's child), or None when it is gone."""
    try:
        children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
        return os.readlink(f"/proc/{children[0]}/ns/pid") if children else None
    except (OSError, IndexError):
        return None


def _members(namespace: str) -> set[int]:
    pids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry.name}/ns/pid") == namespace:
                    pids.add(int(entry.name))
    return pids


def _stopped(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # gone
    return state in {"T", "t", "Z", "X"}


@contextlib.contextmanager
def frozen(launcher_pid: int | None) -> Iterator[None]:
    """Stop every process of the node (a stopped process cannot fork, so rounds end when a scan
    finds no process that is not stopped) and continue them all afterwards."""
    namespace = namespace_of(launcher_pid) if launcher_pid is not None else None
    held: set[int] = set()
    try:
        if namespace is not None:
            for _ in range(ROUNDS):
                running = {p for p in _members(namespace) if p not in held or not _stopped(p)}
                if not running:
                    break
                for pid in running - held:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                    held.add(pid)
                time.sleep(0.001)
            else:
                raise FreezeError("the node's processes would not hold still")
        yield
    finally:
        for pid in held:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
