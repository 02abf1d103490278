"""Nodes' consoles: what each node's init writes, read by the simulator into a bounded log.

A node's init must not hold a descriptor of a file on the host's disk: root in the node can take
any descriptor of its own processes (``pidfd_getfd``) and would write, or truncate, that file
without limit. So the init writes into a pipe, and one thread of the simulator reads every node's
pipe into ``console.log`` in the node's directory, keeping at most :data:`CONSOLE_CAP` bytes (the
newest half when it overflows, after a line saying so).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CONSOLE_CAP = 1024 * 1024
CONSOLE_NAME = "console.log"
CUT_LINE = b"[simulator: earlier console output cut]\n"
READ_SIZE = 65536


@dataclass
class _Console:
    path: Path
    file: BinaryIO
    size: int


def tail(path: Path, size: int = 500) -> str:
    """The last ``size`` bytes of a console log as text (never reads the whole file)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


class Consoles:
    """One reader thread for every node's console pipe."""

    def __init__(self, cap: int = CONSOLE_CAP) -> None:
        self.cap = cap
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="sim-node-consoles", daemon=True)
        self._thread.start()

    def attach(self, fd: int, path: Path) -> None:
        """Read the pipe ``fd`` (its read end; taken over: closed at its end) into ``path``."""
        os.set_blocking(fd, False)
        handle = open(path, "ab")  # noqa: SIM115 - closed when the pipe ends
        console = _Console(path, handle, handle.tell())
        with self._lock:
            self._selector.register(fd, selectors.EVENT_READ, console)
        os.write(self._wake_write, b"x")

    def _append(self, console: _Console, data: bytes) -> None:
        console.file.write(data)
        console.size += len(data)
        if console.size <= self.cap:
            console.file.flush()
            return
        console.file.flush()
        kept = tail(console.path, self.cap // 2).encode(errors="replace")
        console.file.truncate(0)
        console.file.write(CUT_LINE + kept)
        console.file.flush()
        console.size = len(CUT_LINE) + len(kept)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
            for key, _ in self._selector.select(timeout=1.0):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                    continue
                console: _Console = key.data
                fd = int(key.fd)
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self._append(console, data)
                    continue
                with self._lock:
                    self._selector.unregister(fd)
                os.close(fd)
                console.file.close()

    def close(self) -> None:
        with self._lock:
            self._closing = True
        os.write(self._wake_write, b"x")
        self._thread.join(timeout=5)
        with self._lock:
            for key in list(self._selector.get_map().values()):
                if key.data is not None:
                    self._selector.unregister(key.fd)
                    with contextlib.suppress(OSError):
                        os.close(int(key.fd))
                    key.data.file.close()
            self._selector.close()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
