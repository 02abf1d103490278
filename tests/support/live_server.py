"""Real servers on free loopback ports: uvicorn in a thread (browser and CLI tests), or a whole
``nodewright serve`` process (connection limits, signals)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class ServeProcess:
    """A real ``nodewright serve`` in its own process (what operators run), on a free port."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve_process(
    db_url: str, data_dir: Path, *, extra_env: Mapping[str, str | None] | None = None, **settings: object
) -> Iterator[ServeProcess]:
    """Start ``nodewright serve`` on ``db_url`` with ``NODEWRIGHT_<NAME>`` settings; wait until
    /healthz answers; stop it with SIGTERM at the end. ``extra_env``: more variables (``None`` removes
    one, e.g. ``NODEWRIGHT_SECRET_KEYS`` to use the key file of the data directory)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env.update(
        NODEWRIGHT_DATABASE_URL=db_url,
        NODEWRIGHT_DATA_DIR=str(data_dir),
        NODEWRIGHT_SECRET_KEYS=Fernet.generate_key().decode(),
        NODEWRIGHT_EMBEDDED_WORKERS="0",
        NODEWRIGHT_LOG_LEVEL="WARNING",
        NODEWRIGHT_PROVIDER_ENDPOINTS="http://127.0.0.1:",
    )
    env.update({f"NODEWRIGHT_{k.upper()}": str(v) for k, v in settings.items()})
    for name, value in (extra_env or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
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
    server = ServeProcess(f"http://127.0.0.1:{port}", port, proc, log, env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextmanager
def worker_process(server: ServeProcess, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A ``nodewright worker`` beside ``server`` (its environment: same database, data directory
    and keys), logging to ``worker.log`` beside the server's log; SIGTERM at the end."""
    log = server.log.with_name("worker.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodewright.cli", "worker", *args],
            env=server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
