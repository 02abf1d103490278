"""Job handlers used by the job-engine tests, importable by worker subprocesses and job children.

They record what they do in small tables created by :func:`create_test_tables`, in the test's own
database, so assertions read facts from the database rather than from shared Python state.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from nodewright.db.database import Database
from nodewright.jobs.context import JobContext
from nodewright.jobs.errors import JobError
from nodewright.jobs.registry import Registry

REGISTRY = Registry()


def _mark(path: str, content: str) -> None:
    """Write a marker file whole: a test that waits for it to exist must never read it half-written."""
    partial = f"{path}.partial"
    Path(partial).write_text(content)
    os.replace(partial, path)


TEST_TABLES = (
    "CREATE TABLE IF NOT EXISTS test_job_runs ("
    " job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, resource_key VARCHAR(64),"
    " pid INTEGER NOT NULL, started DOUBLE PRECISION NOT NULL, ended DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS test_step_runs ("
    " job_id INTEGER NOT NULL, step VARCHAR(64) NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL)",
)


def create_test_tables(database: Database) -> None:
    with database.session(write=True) as session:
        for ddl in TEST_TABLES:
            session.execute(text(ddl))


def _record_step(ctx: JobContext, step: str) -> None:
    with ctx.database.session(write=True) as session:
        session.execute(
            text("INSERT INTO test_step_runs (job_id, step, attempt, pid) VALUES (:j, :s, :a, :p)"),
            {"j": ctx.job_id, "s": step, "a": ctx.attempt, "p": os.getpid()},
        )


@REGISTRY.handler("test.noop")
def noop(ctx: JobContext) -> dict[str, Any]:
    return {"ok": True}


@REGISTRY.handler("test.record")
def record(ctx: JobContext) -> dict[str, Any]:
    """Records its run interval; the test checks exactly-once and no overlap per resource."""
    started = time.time()
    time.sleep(float(ctx.args.get("sleep", 0.002)))
    ended = time.time()
    with ctx.database.session(write=True) as session:
        session.execute(
            text(
                "INSERT INTO test_job_runs (job_id, attempt, resource_key, pid, started, ended)"
                " VALUES (:j, :a, :r, :p, :s, :e)"
            ),
            {
                "j": ctx.job_id,
                "a": ctx.attempt,
                "r": ctx.resource_key,
                "p": os.getpid(),
                "s": started,
                "e": ended,
            },
        )
    return {"pid": os.getpid()}


@REGISTRY.handler("test.steps", max_attempts=3)
def steps(ctx: JobContext) -> dict[str, Any]:
    """Two checkpointed steps. With ``block_attempt`` it hangs in step two on that attempt after
    touching ``marker``, so a test can kill or freeze the worker mid-step."""

    def one() -> dict[str, Any]:
        _record_step(ctx, "one")
        return {"server_id": 1000 + ctx.job_id, "attempt": ctx.attempt}

    def two() -> dict[str, Any]:
        _record_step(ctx, "two")
        if ctx.args.get("block_attempt") == ctx.attempt:
            _mark(ctx.args["marker"], str(os.getpid()))
            deadline = time.monotonic() + float(ctx.args.get("block_seconds", 60))
            while time.monotonic() < deadline:
                time.sleep(0.05)
        return {"action_id": 7, "attempt": ctx.attempt}

    first = ctx.step("one", one)
    ctx.log("between steps", server_id=first["server_id"])
    second = ctx.step("two", two)
    return {"one": first, "two": second}


@REGISTRY.handler("test.fail", max_attempts=3, backoff_base=0.05, backoff_cap=0.2)
def fail(ctx: JobContext) -> None:
    """With ``as_exception`` the message is an exception object, as an untyped adapter might pass."""
    message = ctx.args.get("message", "the provider is down")
    raise JobError(
        ctx.args.get("code", "provider_unavailable"),
        RuntimeError(message) if ctx.args.get("as_exception") else message,  # type: ignore[arg-type]
        retryable=bool(ctx.args.get("retryable", True)),
        retry_after=ctx.args.get("retry_after"),
        hint=ctx.args.get("hint"),
    )


@REGISTRY.handler("test.flaky", max_attempts=4, backoff_base=0.05, backoff_cap=0.1)
def flaky(ctx: JobContext) -> dict[str, Any]:
    """Fails retryably until attempt ``succeed_on``."""
    if ctx.attempt < int(ctx.args.get("succeed_on", 2)):
        raise JobError("provider_busy", "locked", retryable=True)
    return {"attempt": ctx.attempt}


@REGISTRY.handler("test.crash")
def crash(ctx: JobContext) -> None:
    raise RuntimeError(f"unexpected failure with {ctx.args.get('secret', 'nothing')}")


@REGISTRY.handler("test.wait_cancel")
def wait_cancel(ctx: JobContext) -> None:
    """Runs until canceled, checking at every poll as a handler polling an action would."""
    _mark(ctx.args["marker"], str(os.getpid()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ctx.check_canceled()
        time.sleep(0.05)


@REGISTRY.handler("test.tick")
def tick(ctx: JobContext) -> None:
    started = time.time()
    time.sleep(0.05)
    with ctx.database.session(write=True) as session:
        session.execute(
            text(
                "INSERT INTO test_job_runs (job_id, attempt, resource_key, pid, started, ended)"
                " VALUES (:j, :a, :r, :p, :s, :e)"
            ),
            {
                "j": ctx.job_id,
                "a": ctx.attempt,
                "r": "tick",
                "p": os.getpid(),
                "s": started,
                "e": time.time(),
            },
        )


@REGISTRY.handler("test.die_once", max_attempts=3, backoff_base=0.05, backoff_cap=0.1)
def die_once(ctx: JobContext) -> dict[str, Any]:
    """Process mode only: the job's own process is killed on the first attempt."""
    import signal

    first = ctx.step("before", lambda: {"pid": os.getpid()})
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"first_pid": first["pid"], "pid": os.getpid()}


@REGISTRY.handler("test.log_in_transaction")
def log_in_transaction(ctx: JobContext) -> dict[str, Any]:
    """Logs from inside its fenced transaction, as a handler marking a node's state naturally would."""
    with ctx.transaction() as session:
        session.execute(
            text("INSERT INTO test_step_runs (job_id, step, attempt, pid) VALUES (:j, 'tx', :a, :p)"),
            {"j": ctx.job_id, "a": ctx.attempt, "p": os.getpid()},
        )
        seq = ctx.log("marked inside the transaction")
    return {"seq": seq}


@REGISTRY.handler("test.hold_transaction")
def hold_transaction(ctx: JobContext) -> None:
    """Keeps its fenced transaction (and so its job row's lock) open until ``release`` exists."""
    with ctx.transaction():
        _mark(ctx.args["marker"], str(os.getpid()))
        deadline = time.monotonic() + 60
        while not Path(ctx.args["release"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)


@REGISTRY.handler("test.non_finite", max_attempts=1)
def non_finite(ctx: JobContext) -> dict[str, Any]:
    """Floats JSON has no literal for, in a step output, an event and the result."""
    ratio = ctx.step("measure", lambda: {"ratio": float("nan")})
    ctx.log("measured", ratio=float("inf"))
    return {"ratio": ratio["ratio"], "low": float("-inf")}


# A value the process knows as a secret (as a decrypted provider token would be).
LEAKY_SECRET = "leaky-provider-token-0f3c9a7d51e2"


@REGISTRY.handler("test.leak_step")
def leak_step(ctx: JobContext) -> dict[str, Any]:
    from nodewright.security.redaction import register_secret

    register_secret(LEAKY_SECRET)
    ctx.step("fetch", lambda: {"server_id": 7, "token": LEAKY_SECRET})
    return {"never": "reached"}


@REGISTRY.handler("test.leak_result")
def leak_result(ctx: JobContext) -> dict[str, Any]:
    from nodewright.security.redaction import register_secret

    register_secret(LEAKY_SECRET)
    return {"token": LEAKY_SECRET}


@REGISTRY.handler("test.tree", max_attempts=3)
def tree(ctx: JobContext) -> dict[str, Any]:
    """Attempt 1 starts a grandchild in its own session (as pexpect and ansible-runner do), writes
    ``<own pid> <grandchild pid>`` to ``marker`` and hangs; later attempts return at once."""
    import subprocess

    if ctx.attempt > 1:
        return {"attempt": ctx.attempt}
    pidfile = Path(ctx.args["marker"] + ".grandchild")
    subprocess.Popen(
        ["setsid", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 1000"],
        env=ctx.process_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text().strip():
        if time.monotonic() > deadline:
            raise RuntimeError("the grandchild did not start")
        time.sleep(0.02)
    _mark(ctx.args["marker"], f"{os.getpid()} {pidfile.read_text().strip()}")
    time.sleep(60)
    return {"attempt": ctx.attempt}


@REGISTRY.handler("test.hold_then_wait")
def hold_then_wait(ctx: JobContext) -> None:
    """Holds its fenced transaction until ``release`` exists, touches ``committed`` once the block
    has ended, then waits for ``finish``."""
    with ctx.transaction():
        _mark(ctx.args["marker"], str(os.getpid()))
        deadline = time.monotonic() + 60
        while not Path(ctx.args["release"]).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    Path(ctx.args["committed"]).touch()
    deadline = time.monotonic() + 60
    while not Path(ctx.args["finish"]).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _ledger(path: str, **entry: Any) -> None:
    """One line per side effect, appended outside the database (O_APPEND lines do not interleave)."""
    import json

    line = json.dumps({**entry, "pid": os.getpid(), "ppid": os.getppid(), "t": time.time()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@REGISTRY.handler("test.chaos", max_attempts=25)
def chaos(ctx: JobContext) -> dict[str, Any]:
    """Three checkpointed steps, each a side effect with a duration recorded in an external ledger
    (``start`` and ``end`` lines), for the chaos test's exactly-once and no-overlap checks."""
    ledger = ctx.args["ledger"]
    hold = float(ctx.args.get("hold", 0.05))

    def effect(name: str) -> dict[str, Any]:
        common = {"job": ctx.job_id, "step": name, "attempt": ctx.attempt, "resource": ctx.resource_key}
        _ledger(ledger, event="start", **common)
        time.sleep(hold)
        _ledger(ledger, event="end", **common)
        return {"attempt": ctx.attempt}

    outputs = {name: ctx.step(name, functools.partial(effect, name)) for name in ("a", "b", "c")}
    return {"steps": outputs}
