"""Availability under hostile load: one real ``nodewright serve`` per database, attacked while its
latency is measured.

    .venv/bin/python bench/availability_bench.py --postgres-url postgresql://postgres@127.0.0.1:5432/test

For each database (SQLite in a temporary data directory; PostgreSQL on a fresh database created
next to the one named by --postgres-url and dropped afterwards) it starts ``nodewright serve`` (one
embedded worker) and measures, with one keep-alive client, the latency of ``GET /healthz`` and an
authenticated ``GET /api/jobs`` (p50 / p99 / max):

1. quiet: nothing else running;
2. hostile: 8 login flooders (each posting a new user name with a wrong password, as fast as the
   server answers; the sign-in throttles are lifted so that every guess reaches the password
   check, the worst case, bounded only by the cap on password checks at once) and 500 slow-loris
   connections (each sends half a request head, then one byte
   every 2 s; a connection the server closes is opened again at once), all at the same time;
3. streams: 500 open Server-Sent-Event streams (20 each for 25 viewer users, the default per-user
   cap; the process cap is the default 1000) on a job that stays
   queued while another job's events are written 20 times a second, measured at once and again
   3 s later (the end of 500 opens at once is still under way at first); the ratio to the quiet
   latency is the figure of merit (target < 2x);
4. revocation: a stream of its own token is opened, the token revoked through the API, and the
   time from the revoke's answer to the stream's end is taken (5 times; target < 1 s).

Everything runs on loopback and stops by itself; the clients share the machine with the server, so
the numbers include their CPU use. Targets (issue 8): p99 < 100 ms under attack; streams < 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD_RE = re.compile(r"password: (\S+)")
SAMPLES = 150
FLOODERS = 8
LORIS = 500
STREAMS = 500
STREAM_TOKENS = 25
SETTLE_SECONDS = 3.0


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    n: int


@dataclass
class Scenario:
    name: str
    healthz: Latency
    jobs: Latency
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatabaseResult:
    database: str
    scenarios: list[Scenario]
    revoke_close_ms: list[float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(db_url: str | None, data_dir: Path) -> Iterator[tuple[str, dict[str, str], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env.update(
        NODEWRIGHT_DATA_DIR=str(data_dir),
        NODEWRIGHT_SECRET_KEYS=Fernet.generate_key().decode(),
        NODEWRIGHT_EMBEDDED_WORKERS="0",
        NODEWRIGHT_LOG_LEVEL="WARNING",
        # The worst case: every flooder's guess is evaluated (as when each comes from a new address
        # at a new account); with the defaults the address throttle stops them after 30 guesses.
        NODEWRIGHT_LOGIN_MAX_FAILURES="1000000",
        NODEWRIGHT_LOGIN_MAX_FAILURES_PER_ADDRESS="1000000",
        NODEWRIGHT_LOGIN_MAX_FAILURES_PER_ACCOUNT="1000000",
    )
    if db_url:
        env["NODEWRIGHT_DATABASE_URL"] = db_url
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodewright.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        match = PASSWORD_RE.search(log.read_text())
        if match is None:
            raise RuntimeError("no bootstrap password in the serve output")
        yield url, env, match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def admin_token(url: str, password: str) -> str:
    """Sign in as the bootstrap admin and create an API token through the dashboard form."""
    with httpx.Client(base_url=url) as browser:
        token = CSRF_RE.search(browser.get("/login").text)
        assert token
        form = {"username": "admin", "password": password, "csrf_token": token.group(1)}
        assert browser.post("/login", data=form).status_code in (200, 303)
        csrf = CSRF_RE.search(browser.get("/tokens").text)
        assert csrf
        page = browser.post("/tokens", data={"name": "bench", "csrf_token": csrf.group(1)})
        found = re.search(r"(nwt_[A-Za-z0-9_-]{20,})", page.text)
        assert found, page.text[:500]
        return found.group(1)


def new_token(url: str, admin: dict[str, str], name: str, username: str = "admin") -> tuple[int, str]:
    body = httpx.post(f"{url}/api/tokens", json={"username": username, "name": name}, headers=admin).json()
    return int(body["id"]), str(body["token"])


def viewer_token(url: str, admin: dict[str, str], index: int) -> str:
    username = f"streamer{index}"
    user = {"username": username, "role": "viewer", "password": f"bench password {index:04d}"}
    httpx.post(f"{url}/api/users", json=user, headers=admin, timeout=30).raise_for_status()
    return new_token(url, admin, "stream", username)[1]


def measure(url: str, headers: dict[str, str], samples: int = SAMPLES) -> tuple[Latency, Latency]:
    health: list[float] = []
    jobs: list[float] = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for _ in range(samples):
            for path, into in (("/healthz", health), ("/api/jobs?limit=20", jobs)):
                started = time.perf_counter()
                response = client.get(path)
                into.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            time.sleep(0.005)
    return summarize(health), summarize(jobs)


def summarize(values: list[float]) -> Latency:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Latency(round(statistics.median(ordered), 1), round(p99, 1), round(ordered[-1], 1), len(ordered))


class Flooders:
    """Login flooders: a new user name and a wrong password each time."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def __enter__(self) -> Flooders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, index: int) -> None:
        n = 0
        with httpx.Client(base_url=self.url, timeout=60) as client:
            form_page = client.get("/login")
            while not self.stop.is_set():
                n += 1
                # Every login form carries a fresh CSRF token and cookie: use the latest pair.
                token = CSRF_RE.search(form_page.text)
                cookie = form_page.cookies.get("nw_login_csrf")
                if token is None or cookie is None:
                    form_page = client.get("/login")
                    continue
                form = {
                    "username": f"flood{index}-{n}",
                    "password": "wrong password",
                    "csrf_token": token.group(1),
                }
                client.cookies.clear()
                with suppress(httpx.HTTPError):
                    response = client.post("/login", data=form, cookies={"nw_login_csrf": cookie})
                    with self._lock:
                        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                    form_page = response


class Background:
    """An asyncio loop in a thread for the many-socket attackers (slow loris, SSE streams)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks: list[asyncio.Future[Any]] = []

    def spawn(self, coro: Any) -> None:
        self.tasks.append(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        time.sleep(0.5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def slow_loris(port: int, stop: threading.Event, counters: dict[str, int]) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counters["refused"] = counters.get("refused", 0) + 1
            await asyncio.sleep(0.5)
            continue
        counters["opened"] = counters.get("opened", 0) + 1
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while not stop.is_set():
                await asyncio.sleep(2)
                writer.write(b"a")
                await writer.drain()
                if reader.at_eof():
                    break
                with suppress(TimeoutError):
                    data = await asyncio.wait_for(reader.read(4096), 0.01)
                    if data.startswith(b"HTTP/1.1 408"):
                        counters["timed_out"] = counters.get("timed_out", 0) + 1
                    if not data or data.startswith(b"HTTP/"):
                        break
        except OSError:
            pass
        finally:
            writer.close()


async def sse_stream(
    port: int, job_id: int, token: str, stop: threading.Event, counters: dict[str, int]
) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        writer.write(
            f"GET /api/jobs/{job_id}/events HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split()[1])
            counters[str(status)] = counters.get(str(status), 0) + 1
            if status != 200:
                await asyncio.sleep(1)
                continue
            counters["open"] = counters.get("open", 0) + 1
            try:
                while not stop.is_set() and await reader.read(4096):
                    pass
            finally:
                counters["open"] -= 1
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def _attack(kind: str, port: int, stop: Any, results: Any, args: dict[str, Any]) -> None:
    """One attacker process (so that its CPU and GIL use stays out of the measuring client)."""
    counters: dict[str, int] = {}
    if kind == "flood":
        with Flooders(f"http://127.0.0.1:{port}", args["count"]) as flooders:
            stop.wait()
        results.put({str(k): v for k, v in flooders.statuses.items()})
        return
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    flag = threading.Event()
    background = Background()
    for i in range(args["count"]):
        if kind == "loris":
            background.spawn(slow_loris(port, flag, counters))
        else:
            token = args["tokens"][i % len(args["tokens"])]
            background.spawn(sse_stream(port, args["job_id"], token, flag, counters))
    if kind == "sse":
        results.put({"ready": True})
        deadline = time.monotonic() + 90
        while counters.get("open", 0) < args["count"] and time.monotonic() < deadline:
            time.sleep(0.2)
        results.put({"open_before": counters.get("open", 0)})
    stop.wait()
    if kind == "sse":
        counters["open_after"] = counters.get("open", 0)
    flag.set()
    background.close()
    results.put(dict(counters))


@contextmanager
def attackers(kind: str, port: int, **args: Any) -> Iterator[Any]:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    results = ctx.Queue()
    proc = ctx.Process(target=_attack, args=(kind, port, stop, results, args), daemon=True)
    proc.start()
    try:
        yield results
    finally:
        stop.set()
        proc.join(60)
        if proc.is_alive():
            proc.kill()


def enqueue_quiet_job(env: dict[str, str]) -> int:
    """A job of a kind no worker runs: it stays queued, so its streams stay open."""
    from nodewright.db.database import Database
    from nodewright.jobs.enqueue import enqueue

    db_url = (
        env.get("NODEWRIGHT_DATABASE_URL")
        or f"sqlite:///{Path(env['NODEWRIGHT_DATA_DIR']) / 'nodewright.db'}"
    )
    database = Database(db_url)
    try:
        with database.session(write=True) as session:
            return int(enqueue(session, "bench.nobody.runs.this", {}).id)
    finally:
        database.dispose()


class EventWriter:
    """Writes events of another job 20 times a second, so the change feed has work while streams
    wait (their own job stays quiet)."""

    def __init__(self, env: dict[str, str]) -> None:
        from nodewright.db.database import Database

        db_url = (
            env.get("NODEWRIGHT_DATABASE_URL")
            or f"sqlite:///{Path(env['NODEWRIGHT_DATA_DIR']) / 'nodewright.db'}"
        )
        self.database = Database(db_url)
        self.job_id = enqueue_quiet_job(env)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EventWriter:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.database.dispose()

    def _run(self) -> None:
        from nodewright.jobs.events import append_event

        n = 0
        while not self.stop.wait(0.05):
            n += 1
            with self.database.session(write=True) as session:
                append_event(session, self.job_id, type="log", message=f"tick {n}", data={}, attempt=0)


def revoke_close_times(url: str, admin: dict[str, str], job_id: int, rounds: int = 5) -> list[float]:
    times = []
    port = int(url.rsplit(":", 1)[1])
    for i in range(rounds):
        token_id, token = new_token(url, admin, f"revoke{i}")
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(
            f"GET /api/jobs/{job_id}/events HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        assert httpx.delete(f"{url}/api/tokens/{token_id}", headers=admin).status_code == 200
        revoked = time.perf_counter()
        while sock.recv(65536):
            pass
        times.append(round((time.perf_counter() - revoked) * 1000, 1))
        sock.close()
    return times


def run_database(name: str, db_url: str | None, workdir: Path) -> DatabaseResult:
    scenarios = []
    with serve(db_url, workdir / name) as (url, env, password):
        port = int(url.rsplit(":", 1)[1])
        admin = {"Authorization": f"Bearer {admin_token(url, password)}"}
        for _ in range(20):  # something for GET /api/jobs to list
            enqueue_quiet_job(env)
        measure(url, admin, samples=50)  # warm-up
        quiet_h, quiet_j = measure(url, admin)
        scenarios.append(Scenario("quiet", quiet_h, quiet_j))
        print(f"[{name}] quiet: {quiet_h} {quiet_j}", flush=True)

        with (
            attackers("loris", port, count=LORIS) as loris,
            attackers("flood", port, count=FLOODERS) as flood,
        ):
            time.sleep(5)
            hostile_h, hostile_j = measure(url, admin)
        loris_counts, flood_counts = loris.get(timeout=60), flood.get(timeout=60)
        scenarios.append(
            Scenario(
                "8 login flooders + 500 slow-loris connections",
                hostile_h,
                hostile_j,
                {"login_statuses": flood_counts, "loris": loris_counts},
            )
        )
        print(f"[{name}] hostile: {hostile_h} {hostile_j} {flood_counts} {loris_counts}", flush=True)

        job_id = enqueue_quiet_job(env)
        tokens = [viewer_token(url, admin, i) for i in range(STREAM_TOKENS)]
        with attackers("sse", port, count=STREAMS, tokens=tokens, job_id=job_id) as streams:
            streams.get(timeout=60)
            open_before = streams.get(timeout=120)["open_before"]
            with EventWriter(env):
                # At once (the end of the 500 opens may still be under way), then once they settled.
                streams_h, streams_j = measure(url, admin)
                time.sleep(SETTLE_SECONDS)
                settled_h, settled_j = measure(url, admin)
        stream_counts = streams.get(timeout=60)
        for label, (h, j) in (
            ("", (streams_h, streams_j)),
            (f", {SETTLE_SECONDS:.0f} s after they opened", (settled_h, settled_j)),
        ):
            scenarios.append(
                Scenario(
                    f"{STREAMS} open SSE streams + 20 events/s on another job{label}",
                    h,
                    j,
                    {
                        "open_streams_before_and_after": [open_before, stream_counts.get("open_after")],
                        "stream_answers": {k: v for k, v in stream_counts.items() if k.isdigit()},
                        "jobs_p50_ratio": round(j.p50_ms / quiet_j.p50_ms, 2),
                        "jobs_p99_ratio": round(j.p99_ms / quiet_j.p99_ms, 2),
                        "healthz_p50_ratio": round(h.p50_ms / quiet_h.p50_ms, 2),
                        "healthz_p99_ratio": round(h.p99_ms / quiet_h.p99_ms, 2),
                    },
                )
            )
            print(f"[{name}] streams{label}: {h} {j} {scenarios[-1].extra}", flush=True)
        revoke = revoke_close_times(url, admin, job_id)
        print(f"[{name}] revoked token stream closed after (ms): {revoke}", flush=True)
    return DatabaseResult(name, scenarios, revoke)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    name = f"nwbench_avail_{os.getpid()}"
    engine = create_engine(
        admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def main() -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 500 sockets and more, client side
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", help="PostgreSQL server to create a scratch database on")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="nw-avail-bench-") as tmp:
        results.append(run_database("sqlite", None, Path(tmp)))
        if args.postgres_url:
            with postgres_database(args.postgres_url) as url:
                results.append(run_database("postgresql", url, Path(tmp)))
    print(json.dumps([asdict(r) for r in results], indent=2))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
