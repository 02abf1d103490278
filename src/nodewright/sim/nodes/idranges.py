"""Id ranges of nodes' user namespaces: one range of 65,536 host ids per node, never shared.

Several simulators may run on one machine, so a range is taken by holding an exclusive ``flock``
on its lock file under :data:`LOCK_DIR` (as the network slots are): the kernel lets go of it when
the holder dies, so a killed simulator leaks nothing. Ranges that ``/etc/subuid`` or
``/etc/subgid`` give to users of this machine are never taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

from nodewright.sim.nodes.entry import ID_COUNT

LOCK_DIR = Path("/run/nodewright-sim-ids")
FIRST_INDEX = 2  # host ids below 131,072 are the machine's own users and groups
LAST_INDEX = 65_000  # (65,000 + 1) * 65,536 stays below 2**32 - 1


class RangesExhausted(RuntimeError):
    pass


def _subordinate_ranges() -> list[tuple[int, int]]:
    ranges = []
    for name in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines():
                fields = line.split(":")
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    ranges.append((int(fields[1]), int(fields[1]) + int(fields[2])))
    return ranges


class IdRanges:
    """Hands out ranges to one simulator's nodes and holds them until released."""

    def __init__(self, lock_dir: Path = LOCK_DIR, excluded: list[tuple[int, int]] | None = None) -> None:
        self.lock_dir = lock_dir
        self._held: dict[int, int] = {}  # base -> lock file descriptor
        self._lock = threading.Lock()
        self._excluded = _subordinate_ranges() if excluded is None else excluded

    def _free(self, index: int) -> bool:
        start, end = index * ID_COUNT, (index + 1) * ID_COUNT
        return not any(start < high and low < end for low, high in self._excluded)

    def take(self, hint: int = 0) -> int:
        """A free range's first host id, trying from ``hint`` on (spreads nodes over the space)."""
        self.lock_dir.mkdir(mode=0o700, exist_ok=True)
        span = LAST_INDEX - FIRST_INDEX + 1
        with self._lock:
            for step in range(span):
                index = FIRST_INDEX + (hint + step) % span
                base = index * ID_COUNT
                if base in self._held or not self._free(index):
                    continue
                fd = os.open(self.lock_dir / f"{index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._held[base] = fd
                return base
        raise RangesExhausted("no free id range for another node's user namespace")

    def release(self, base: int) -> None:
        with self._lock:
            fd = self._held.pop(base, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            held, self._held = self._held, {}
        for fd in held.values():
            os.close(fd)
