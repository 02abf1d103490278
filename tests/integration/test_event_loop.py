"""No route blocks the event loop: every database statement, every password hash, and every other
blocking call Python can report runs in a worker thread, never on the loop's own thread.

A timing check (``/healthz`` latency while a route is hammered) is flaky on a loaded machine; this
check is deterministic. Every statement SQLAlchemy sends and every argon2 call records whether it
runs on a thread that is running an event loop; so does every blocking call that raises a Python
audit event (``sys.addaudithook``): opening a file, starting a process, connecting a
socket or resolving a name, opening an SQLite database, listing or changing a directory. Every
route the app serves (found from the app itself, so a new route is checked without being listed)
is requested with valid credentials. One ``async def`` route that does any of that on the loop
fails the test.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import argon2
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import event
from starlette.routing import Route

from nodewright.context import AppContext
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.registry import registry
from nodewright.security.roles import Role
from tests.integration.test_dashboard_auth import login
from tests.support.apps import TEST_PASSWORD, RoleUser

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


# Audit events (https://docs.python.org/3/library/audit_events.html) of calls that block.
BLOCKING_EVENTS = frozenset(
    {
        "open",
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.fork",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "sqlite3.connect",
        "os.listdir",
        "os.scandir",
        "os.remove",
        "os.rename",
        "os.mkdir",
        "os.chmod",
        "shutil.rmtree",
        "shutil.copyfile",
        "fcntl.flock",
        "fcntl.lockf",
        "tempfile.mkstemp",
        "tempfile.mkdtemp",
        "glob.glob",
        "http.client.connect",
        "urllib.Request",
    }
)
# Opened by the import system: a module imported lazily reads its file once, as at start.
IMPORTED = (".py", ".pyc", ".so", ".pth")


class LoopWatch:
    """Collects blocking calls made on a thread that runs an event loop."""

    active: LoopWatch | None = None  # the audit hook (added once, never removed) reports here

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.route = "(none)"
        self._lock = threading.Lock()

    def check(self, what: str) -> None:
        if asyncio._get_running_loop() is not None:
            with self._lock:
                self.violations.append(f"{self.route}: {what}")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    watch = LoopWatch.active
    if watch is None or event not in BLOCKING_EVENTS:
        return
    subject = args[0] if args else ""
    if event == "open" and isinstance(subject, str | bytes) and str(subject).endswith(IMPORTED):
        return
    watch.check(f"{event} {subject!r}"[:200])


_hook_added = False


def _add_audit_hook() -> None:
    global _hook_added
    if not _hook_added:
        sys.addaudithook(_audit)
        _hook_added = True


@pytest.fixture
def watch(app_context: AppContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopWatch]:
    watch = LoopWatch()
    _add_audit_hook()
    LoopWatch.active = watch

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        watch.check(f"SQL {statement.split()[0]}")

    engine = app_context.database.engine
    event.listen(engine, "before_cursor_execute", on_execute)

    def guarded(name: str) -> Any:
        original = getattr(argon2.PasswordHasher, name)

        def wrapper(self: argon2.PasswordHasher, *args: Any, **kwargs: Any) -> Any:
            watch.check(f"argon2 {name}")
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("hash", "verify"):
        monkeypatch.setattr(argon2.PasswordHasher, name, guarded(name))
    try:
        yield watch
    finally:
        LoopWatch.active = None
        event.remove(engine, "before_cursor_execute", on_execute)


def _finished_job(ctx: AppContext) -> int:
    from sqlalchemy import update

    from nodewright.db.models.jobs import Job

    with ctx.database.session(write=True) as session:
        job = enqueue(session, "nodewright.noop", {}, registry=registry)
        session.flush()
        # Finished, so its event stream ends at once instead of following the job.
        session.execute(update(Job).where(Job.id == job.id).values(state="succeeded"))
        return int(job.id)


def _flatten(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included router
        if included is not None:
            yield from _flatten(included.routes)
        else:
            yield route


def _routes(client: TestClient) -> list[tuple[str, str]]:
    found = []
    for route in _flatten(client.app.routes):  # type: ignore[attr-defined]
        if isinstance(route, APIRoute | Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    found.append((method, route.path))
    return found


def test_no_route_blocks_the_event_loop(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], watch: LoopWatch
) -> None:
    job_id = _finished_job(app_context)
    token_id = 1
    csrf = login(client, "admin-user")
    admin = role_users[Role.admin].headers
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/users"): {"username": "looped", "role": "viewer", "password": "long enough pw 1"},
        ("POST", "/api/tokens"): {"username": "viewer-user", "name": "looped"},
    }
    forms: dict[tuple[str, str], dict[str, str]] = {("POST", "/tokens"): {"name": "looped form"}}
    exercised = []
    for method, template in _routes(client):
        watch.route = f"{method} {template}"
        path = template.replace("{job_id}", str(job_id)).replace("{token_id}", str(token_id))
        if template == "/logout":
            continue  # last: it ends the session the other routes use
        if (method, template) == ("POST", "/login"):
            other = TestClient(client.app)
            token = CSRF_RE.search(other.get("/login").text)
            assert token
            for password in ("wrong password!", TEST_PASSWORD):
                other.post(
                    "/login",
                    data={"username": "viewer-user", "password": password, "csrf_token": token.group(1)},
                    follow_redirects=False,
                )
        elif template.startswith("/api/"):
            client.request(method, path, json=bodies.get((method, template)), headers=admin)
            if template.endswith("/events"):
                client.get(path, headers={**admin, "Accept": "text/event-stream"})
        elif method == "POST":
            client.post(path, data={**forms.get((method, template), {}), "csrf_token": csrf})
        else:
            client.request(method, path)
        exercised.append((method, template))
    watch.route = "POST /logout"
    client.post("/logout", data={"csrf_token": csrf})
    exercised.append(("POST", "/logout"))

    assert sorted(exercised) == sorted(_routes(client)), (
        sorted(set(exercised) ^ set(_routes(client))),
        len(exercised),
    )
    assert ("POST", "/login") in exercised and ("GET", "/api/jobs/{job_id}/events") in exercised
    assert watch.violations == [], "blocking work on the event loop:\n" + "\n".join(watch.violations)


def test_the_watch_sees_blocking_work_on_the_loop(app_context: AppContext, watch: LoopWatch) -> None:
    """The check itself can fail: a query run from a coroutine on the loop is caught."""
    from sqlalchemy import text

    async def blocking_route() -> None:
        with app_context.database.session() as session:
            session.execute(text("SELECT 1"))

    asyncio.run(blocking_route())
    assert any("SQL SELECT" in v for v in watch.violations)


@pytest.mark.parametrize(
    ("what", "blocking"),
    [
        ("open", lambda path: open(path, "rb").close()),
        ("subprocess.Popen", lambda _path: subprocess.run(["true"], check=True)),
        ("os.listdir", lambda path: os.listdir(os.path.dirname(path))),
    ],
)
def test_the_watch_sees_other_blocking_calls_on_the_loop(
    watch: LoopWatch, tmp_path: Any, what: str, blocking: Any
) -> None:
    """Calls that raise an audit event are caught on the loop, and only there."""
    path = str(tmp_path / "file.txt")
    with open(path, "w") as out:
        out.write("x")
    blocking(path)  # no loop on this thread: allowed
    assert watch.violations == []

    async def route() -> None:
        blocking(path)

    asyncio.run(route())
    assert any(v.startswith(f"(none): {what}") for v in watch.violations), watch.violations
