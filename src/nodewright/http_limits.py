"""Connection limits for ``serve``: what uvicorn's own options leave open to a slow or greedy client.

uvicorn bounds the idle time between requests (keep-alive) but not how long a client may take to
send a request's head or body, and its ``limit_concurrency`` answers 503 only once a request has been
read. A few hundred half-sent requests ("slow loris") therefore held sockets and file descriptors
forever. ``GuardedH11Protocol`` is uvicorn's h11 protocol with, per connection:

- a deadline for the request head (from connect, or from the first byte of the next request on a
  kept-alive connection, to the blank line that ends the headers): 408 and close when it passes;
- a cap on the head's size (431) and on the number of header lines (431), checked on the raw bytes
  before h11 parses them;
- a deadline for the body, from the end of the head to the end of the body (408 and close);
- a cap on open connections per process: one over it is answered 503 and closed at once.

``raise_nofile_limit`` lifts the soft open-file limit to the hard one at start; the connection cap
is then kept below it with a reserve, so job workers and the database still get file handles.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_BLANK_LINE = re.compile(rb"\n\r?\n")


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 16_384
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 2000


def _problem(status: int, reason: str, code: str, detail: str) -> bytes:
    body = json.dumps(
        {
            "type": f"urn:nodewright:problem:{code}",
            "title": reason,
            "status": status,
            "detail": detail,
            "code": code,
            "retryable": status in (408, 503),
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with head/body deadlines, head size and count caps, a connection cap."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head = bytearray()
        self._deadline: asyncio.TimerHandle | None = None
        self._rejected = False

    # --- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._reject(
                503, "Service Unavailable", "too_many_connections", "The server is at its connection limit."
            )
            return
        self._arm(self.limits.header_timeout, "request head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # --- data --------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if self._in_head:
            if self._deadline is None:  # the first byte of a request on a kept-alive connection
                self._arm(self.limits.header_timeout, "request head")
            if not self._check_head(data):
                return
        super().data_received(data)
        if self._in_head and self.conn.their_state in (h11.SEND_BODY, h11.DONE):
            # h11 took the head (it also accepts bare LF line ends, which our CRLF search misses).
            self._end_head()
        if not self._in_head and self._deadline is not None and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # the whole request is in

    def _check_head(self, data: bytes) -> bool:
        start = max(0, len(self._head) - 3)
        self._head += data
        # h11 ends a head at a blank line and takes bare LF line ends as well as CRLF, so both are
        # looked for (a count of CRLF alone let a head of LF-ended lines carry any number of them).
        blank = _BLANK_LINE.search(self._head, start)
        end = -1 if blank is None else blank.start()
        head = self._head if end < 0 else self._head[:end]
        if len(head) > self.limits.max_header_bytes:
            self._reject(
                431,
                "Request Header Fields Too Large",
                "headers_too_large",
                f"The request head exceeds {self.limits.max_header_bytes} bytes.",
            )
            return False
        if head.lstrip(b"\r\n").count(b"\n") > self.limits.max_headers:
            self._reject(
                431,
                "Request Header Fields Too Large",
                "too_many_headers",
                f"The request has more than {self.limits.max_headers} header lines.",
            )
            return False
        if end >= 0:
            self._end_head()
        return True

    def _end_head(self) -> None:
        self._in_head = False
        self._head = bytearray()
        self._disarm()
        self._arm(self.limits.body_timeout, "request body")

    def on_response_complete(self) -> None:
        # The next request's head starts with its first byte; until then uvicorn's keep-alive
        # timeout bounds the idle connection.
        self._in_head = True
        self._head = bytearray()
        self._disarm()
        super().on_response_complete()

    # --- deadlines ---------------------------------------------------------------------------------

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # too late for a status: just end it
            return
        self._reject(408, "Request Timeout", "request_timeout", f"The {what} was not received in time.")

    def _reject(self, status: int, reason: str, code: str, detail: str) -> None:
        self._rejected = True
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app sees http.disconnect, not more body
            self.cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.write(_problem(status, reason, code, detail))
            self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A ``GuardedH11Protocol`` subclass bound to ``limits`` (uvicorn builds one per connection)."""
    return type("BoundGuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def raise_nofile_limit() -> int:
    """Lift the soft open-file limit to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(configured: int, nofile: int, reserve: int) -> int:
    """The connection cap in force: the configured one, kept ``reserve`` descriptors below the
    open-file limit (workers, the database, log files and the listening socket need theirs)."""
    return max(1, min(configured, nofile - reserve))
