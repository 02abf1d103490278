#!/usr/bin/python3
# ruff: noqa: T201  (a command-line program run inside the node)
"""``reboot``, ``poweroff``, ``halt`` and ``shutdown`` inside a simulated node (standard library only).

They ask the node's init to end the boot; the host turns that into the server's state at the
API: a reboot keeps the disk and comes back ``running``, a power-off leaves the server ``off``.
"""

from __future__ import annotations

import json
import os
import socket
import sys

SOCKET = "/run/nodewright/init.sock"


def parse_shutdown(args: list[str]) -> tuple[str | None, float]:
    """``shutdown [-r|-h|-P|-H|-c] [TIME] [MESSAGE]``: what to do, and after how many seconds."""
    what = "poweroff"
    when = 60.0  # shutdown's default is one minute
    rest: list[str] = []
    for arg in args:
        if arg in {"-r", "--reboot"}:
            what = "reboot"
        elif arg in {"-h", "-P", "-H", "--halt", "--poweroff"}:
            what = "poweroff"
        elif arg in {"-c"}:
            return None, 0.0
        elif arg.startswith("-"):
            continue
        else:
            rest.append(arg)
    if rest:
        spec = rest[0]
        if spec == "now":
            when = 0.0
        elif spec.lstrip("+").isdigit():
            when = 60.0 * int(spec.lstrip("+"))
    return what, when


def main(program: str, args: list[str]) -> int:
    if program == "shutdown":
        what, delay = parse_shutdown(args)
        if what is None:
            print("shutdown: cancelling is not supported here", file=sys.stderr)
            return 1
    else:
        what, delay = ("reboot" if program == "reboot" else "poweroff"), 0.0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(SOCKET)
        sock.sendall(json.dumps({"power": what, "delay": delay}).encode() + b"\n")
        sock.makefile().readline()
    return 0


if __name__ == "__main__":
    sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
