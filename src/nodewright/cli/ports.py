"""Listening sockets for ``serve`` and ``demo``, bound before anything else starts: a port that is
taken (or not ours to take) is one line naming the option that changes it, never a traceback from
deep inside uvicorn or the simulator."""

from __future__ import annotations

import errno
import os
import socket

# What a second choice is suggested as: the same port a hundred up (8400 -> 8500), if that is free.
SUGGESTION_STEP = 100


class PortUnavailable(Exception):
    """The message is the whole line an operator sees."""


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (uvicorn listens on it), as uvicorn itself would bind it; ``OSError`` when
    the address cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _free(host: str, port: int) -> bool:
    try:
        listen_socket(host, port).close()
    except OSError:
        return False
    return True


def unavailable(exc: OSError, host: str, port: int, *, flag: str, make_var: str | None = None) -> str:
    """The line for a port that could not be bound: what is wrong and the option that changes it
    (with the ``make demo`` variable too, when there is one)."""
    if isinstance(exc, socket.gaierror):  # the host, not the port: naming another port would not help
        return f"cannot listen on {host} ({exc.strerror or exc}); choose another with --host"
    alternative = port + SUGGESTION_STEP
    example = str(alternative) if 0 < alternative < 65536 and _free(host, alternative) else "..."
    hint = f"choose another with {flag}"
    if make_var:
        hint += f" (make demo {make_var}={example})"
    elif example != "...":
        hint += f" (e.g. {flag} {example})"
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use; {hint}"
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"cannot listen on {host}:{port} ({reason}); {hint}"


def bind_or_explain(host: str, port: int, *, flag: str, make_var: str | None = None) -> socket.socket:
    """:func:`listen_socket`, or ``PortUnavailable`` with the operator's line."""
    if not 0 <= port <= 65535:  # bind() would raise OverflowError
        raise PortUnavailable(f"port {port} is not a port (0-65535); choose another with {flag}")
    try:
        return listen_socket(host, port)
    except OSError as exc:
        raise PortUnavailable(unavailable(exc, host, port, flag=flag, make_var=make_var)) from None
