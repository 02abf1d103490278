"""Connection limits of a real ``nodewright serve`` process, probed with raw sockets: half-sent
heads and bodies time out (408), oversize heads and too many header lines are refused (431), idle
kept-alive connections close, connections over the cap get 503 at once, and the open-file limit is
raised to the hard limit."""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import clone_sqlite
from tests.support.live_server import ServeProcess, serve_process

WAIT = 30.0  # generous: the server's own deadlines are 1 s here; this only bounds a broken server


def _connect(server: ServeProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[ServeProcess]:
    """One server for the probes (each opens its own connections; a server start costs seconds).
    The limits live below the application, in the HTTP protocol: one database is enough."""
    root = tmp_path_factory.mktemp("connection-limits")
    with serve_process(
        clone_sqlite(sqlite_template, root),
        root / "data",
        http_header_timeout_seconds=1,
        http_body_timeout_seconds=1,
        http_keepalive_timeout_seconds=1,
        http_max_header_bytes=8192,
        http_max_headers=20,
    ) as running:
        yield running


def test_half_sent_head_times_out(server: ServeProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request_timeout" in answer


def test_silent_connection_is_closed(server: ServeProcess) -> None:
    with _connect(server) as sock:
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_half_sent_body_times_out(server: ServeProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"user'
        )
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_a_slow_drip_of_headers_does_not_reset_the_deadline(server: ServeProcess) -> None:
    """Each byte arriving in time is no progress that counts: the head has one deadline."""
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        sent = 0
        answer = b""
        sock.settimeout(0.3)
        while sent < 200:
            try:
                sock.sendall(b"X-A: b\r\n"[:1])
            except OSError:
                break
            sent += 1
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except TimeoutError:
                continue
        sock.settimeout(WAIT)
        answer += _read_until_closed(sock) if answer else b""
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_oversize_head_is_refused(server: ServeProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer
    assert b"headers_too_large" in answer


def test_unfinished_huge_head_is_refused_before_it_ends(server: ServeProcess) -> None:
    """The head is capped as it arrives: a never-ending header cannot fill memory."""
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000)
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer


def test_too_many_header_lines_are_refused(server: ServeProcess) -> None:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer
    assert b"too_many_headers" in answer


def test_too_many_header_lines_with_bare_line_feeds_are_refused(server: ServeProcess) -> None:
    """h11 accepts lines ended by a bare LF: they count like CRLF-ended ones."""
    lines = b"".join(b"X-H%d: v\n" % i for i in range(30))
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\nHost: x\n" + lines + b"\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer
    assert b"too_many_headers" in answer


def test_normal_requests_and_keep_alive(server: ServeProcess) -> None:
    with _connect(server) as sock:
        for _ in range(3):  # several requests on one connection, each with a fresh head deadline
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            response = b""
            while not response.endswith(b'"ok"}'):
                chunk = sock.recv(65536)
                assert chunk, response
                response += chunk
            assert response.startswith(b"HTTP/1.1 200"), response
        # Idle after the last response: the keep-alive timeout closes it (no 408: nothing was sent).
        assert _read_until_closed(sock) == b""
    with httpx.Client(base_url=server.url) as client:
        body = client.post("/api/users", json={"x": 1})
        assert body.status_code == 401  # a whole body in time is read and answered


def test_open_file_limit_is_raised_to_the_hard_limit(server: ServeProcess) -> None:
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard
    _own_soft, own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert int(hard) == own_hard


@pytest.mark.db_only("sqlite", reason="an HTTP-level limit: the database plays no part")
def test_connections_over_the_cap_get_503(db_url: str, tmp_path: Path) -> None:
    with serve_process(
        db_url, tmp_path / "data", http_max_connections=4, http_header_timeout_seconds=60
    ) as server:
        idle = [_connect(server) for _ in range(4)]
        try:
            with _connect(server) as extra:
                answer = _read_until_closed(extra)
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"too_many_connections" in answer
        finally:
            for sock in idle:
                sock.close()
        # Once they are gone, service resumes (the server notices the closes asynchronously).
        for _attempt in range(100):
            with _connect(server) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if _read_until_closed(sock).startswith(b"HTTP/1.1 200"):
                    break
        else:
            pytest.fail("the server kept refusing after the idle connections closed")


@pytest.mark.db_only("sqlite", reason="how serve starts: the database plays no part")
def test_serve_keeps_the_secret_keys_out_of_proc_environ(db_url: str, tmp_path: Path) -> None:
    """Popping a variable from os.environ leaves it in /proc/<pid>/environ (the environment the
    process was started with): ``serve`` re-executes itself without it, the keys passed by a pipe."""
    with serve_process(db_url, tmp_path / "data") as server:
        env_key = server.env["NODEWRIGHT_SECRET_KEYS"]
        proc_dir = Path(f"/proc/{server.proc.pid}")
        environ = (proc_dir / "environ").read_bytes()
        assert b"NODEWRIGHT_SECRET_KEYS=" not in environ
        assert env_key.encode() not in environ
        assert env_key.encode() not in (proc_dir / "cmdline").read_bytes()
        # The pipe that carried them is closed, and the server runs with its keys.
        handed = [v for v in environ.split(b"\0") if v.startswith(b"NODEWRIGHT_SECRET_KEYS_FD=")]
        assert len(handed) == 1
        carrier = proc_dir / "fd" / handed[0].split(b"=")[1].decode()
        # Closed after reading (the number may since have been reused, but not by a pipe).
        assert not carrier.exists() or not os.readlink(carrier).startswith("pipe:")
        assert httpx.get(f"{server.url}/readyz").status_code == 200
