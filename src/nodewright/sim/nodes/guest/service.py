#!/usr/bin/python3
# ruff: noqa: T201, S606  (a command-line program run inside the node)
"""``service NAME ACTION`` inside a simulated node (standard library only).

sshd (``ssh``/``sshd``) belongs to the node's init, which supervises it: the request goes to init
over its socket. Any other name runs its SysV script in /etc/init.d, as Debian's ``service`` does
where there is no systemd; the daemons it starts are reaped by init.
"""

from __future__ import annotations

import json
import os
import socket
import sys

SOCKET = "/run/nodewright/init.sock"


def ask_init(request: dict[str, object]) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(SOCKET)
        sock.sendall(json.dumps(request).encode() + b"\n")
        answer = json.loads(sock.makefile().readline())
    sys.stdout.write(answer.get("out", ""))
    return int(answer.get("rc", 1))


def main(argv: list[str]) -> int:
    if len(argv) == 1 and argv[0] == "--status-all":
        for name in sorted(os.listdir("/etc/init.d")) if os.path.isdir("/etc/init.d") else []:
            print(f" [ ? ]  {name}")
        return 0
    if len(argv) < 2:
        print("Usage: service < option > | --status-all | [ service_name [ command | --full-restart ] ]")
        return 1
    name, action = argv[0], argv[1]
    if name in {"ssh", "sshd"}:
        return ask_init({"service": "ssh", "action": action})
    script = f"/etc/init.d/{name}"
    if os.access(script, os.X_OK):
        os.execv(script, [script, action, *argv[2:]])
    print(f"{name}: unrecognized service", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
