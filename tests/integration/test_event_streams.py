"""Live job event streams through a real HTTP server: one shared change feed (no per-stream
polling), caps per user and per process (429), and streams closed when their credential goes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.events import append_event
from nodewright.security import api_tokens, web_sessions
from nodewright.security.roles import Role
from tests.integration.test_dashboard_auth import CSRF_RE
from tests.support.apps import TEST_PASSWORD, RoleUser, create_role_users, make_settings
from tests.support.jobs import wait_until
from tests.support.live_server import live_server


@dataclass
class Follower:
    """Reads one SSE stream in a thread, over a raw socket (HTTP/1.0, so the body is unframed) that
    ``stop()`` can shut down from outside, as a browser closing its tab does."""

    url: str
    headers: dict[str, str]
    cookies: dict[str, str] = field(default_factory=dict)
    text: str = ""
    status: int | None = None
    ended: bool = False
    thread: threading.Thread | None = None
    _sock: socket.socket | None = None

    def start(self) -> Follower:
        parsed = httpx.URL(self.url)
        sock = socket.create_connection((parsed.host, parsed.port or 80), timeout=60)
        headers = {**self.headers, "Accept": "text/event-stream", "Host": parsed.host}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        head = f"GET {parsed.raw_path.decode()} HTTP/1.0\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        sock.sendall(head.encode() + b"\r\n")
        self._sock = sock
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.status is not None or self.ended, what="the stream to answer")
        return self

    def _run(self) -> None:
        assert self._sock is not None
        raw = b""
        try:
            while chunk := self._sock.recv(65536):
                raw += chunk
                if self.status is None and b"\r\n\r\n" in raw:
                    head, _, raw = raw.partition(b"\r\n\r\n")
                    self.status = int(head.split()[1])
                if self.status is not None:
                    self.text = raw.decode(errors="replace")
        except OSError:
            pass
        finally:
            self.ended = True

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self.thread is not None:
            self.thread.join(10)

    @property
    def messages(self) -> list[str]:
        out = []
        for block in self.text.split("\n\n"):
            for line in block.splitlines():
                if line.startswith("data: {") and '"message"' in line:
                    out.append(json.loads(line[6:])["message"])
        return out


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[str, AppContext, dict[Role, RoleUser]]]:
    settings = make_settings(db_url, tmp_path / "data", sse_max_streams_per_user=2, sse_max_streams=3)
    ctx = AppContext.open(settings)
    users = create_role_users(ctx)
    try:
        with live_server(create_app(settings, ctx=ctx, start_workers=False)) as url:
            yield url, ctx, users
    finally:
        ctx.close()


def _queued_job(ctx: AppContext) -> int:
    with ctx.database.session(write=True) as session:
        # A kind no worker runs: the job stays queued, its stream stays open.
        return int(enqueue(session, "nobody.runs.this", {}).id)


def _log(ctx: AppContext, job_id: int, message: str) -> None:
    with ctx.database.session(write=True) as session:
        append_event(session, job_id, type="log", message=message, data={}, attempt=0)


def _follow(url: str, job_id: int, user: RoleUser) -> Follower:
    return Follower(f"{url}/api/jobs/{job_id}/events", user.headers).start()


def test_new_events_reach_open_streams_through_the_shared_feed(
    served: tuple[str, AppContext, dict[Role, RoleUser]],
) -> None:
    url, ctx, users = served
    job_id = _queued_job(ctx)
    followers = [_follow(url, job_id, users[Role.viewer]), _follow(url, job_id, users[Role.operator])]
    try:
        for f in followers:
            wait_until(lambda f=f: f.messages == ["queued"], what="the first event")  # type: ignore[misc]
        _log(ctx, job_id, "written by another connection")
        for f in followers:
            wait_until(
                lambda f=f: "written by another connection" in f.messages,  # type: ignore[misc]
                what="the feed to deliver the new event",
            )
    finally:
        for f in followers:
            f.stop()


def test_idle_streams_do_not_poll_the_database_each(
    served: tuple[str, AppContext, dict[Role, RoleUser]],
) -> None:
    """Three open streams waiting for a quiet job: the process reads job events through one
    feed, not once per stream every quarter second (that was 3 x 4 = 12 reads a second)."""
    url, ctx, users = served
    job_id = _queued_job(ctx)
    followers = [
        _follow(url, job_id, users[Role.viewer]),
        _follow(url, job_id, users[Role.viewer]),
        _follow(url, job_id, users[Role.admin]),
    ]
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM job_events" in statement:
            reads.append(statement)

    try:
        for f in followers:
            wait_until(lambda f=f: f.messages == ["queued"], what="the first event")  # type: ignore[misc]
        event.listen(ctx.database.engine, "before_cursor_execute", count)
        time.sleep(3.0)  # a window to count in, not a timing assertion
        event.remove(ctx.database.engine, "before_cursor_execute", count)
    finally:
        for f in followers:
            f.stop()
    # SQLite: one feed poll every 0.25 s (~12 in 3 s) for all streams together; PostgreSQL: none.
    assert len(reads) <= 20, f"{len(reads)} job-event reads in 3 s by 3 idle streams"
    assert all("FROM job_events" in r for r in reads)


def test_streams_are_capped_per_user_and_per_process(
    served: tuple[str, AppContext, dict[Role, RoleUser]],
) -> None:
    url, ctx, users = served
    job_id = _queued_job(ctx)
    viewer, operator, admin = users[Role.viewer], users[Role.operator], users[Role.admin]
    first = [_follow(url, job_id, viewer), _follow(url, job_id, viewer)]
    try:
        assert all(f.status == 200 for f in first)
        refused = httpx.get(
            f"{url}/api/jobs/{job_id}/events", headers={**viewer.headers, "Accept": "text/event-stream"}
        )
        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_streams" and refused.headers["retry-after"]
        third = _follow(url, job_id, operator)  # another user: under the per-user cap
        assert third.status == 200
        over_process = httpx.get(
            f"{url}/api/jobs/{job_id}/events", headers={**admin.headers, "Accept": "text/event-stream"}
        )
        assert over_process.status_code == 429  # the process cap (3) is reached
        # JSON pages are not streams: never capped.
        assert httpx.get(f"{url}/api/jobs/{job_id}/events", headers=viewer.headers).status_code == 200
        third.stop()
        assert third.ended
        # The server notices the hang-up and frees the slot.
        wait_until(lambda: _stream_status(url, job_id, admin) == 200, what="a freed slot to be admitted")
    finally:
        for f in first:
            f.stop()


def _stream_status(url: str, job_id: int, user: RoleUser) -> int:
    headers = {**user.headers, "Accept": "text/event-stream"}
    with httpx.stream("GET", f"{url}/api/jobs/{job_id}/events", headers=headers, timeout=10) as response:
        return response.status_code


def test_a_revoked_token_closes_its_stream(served: tuple[str, AppContext, dict[Role, RoleUser]]) -> None:
    url, ctx, users = served
    job_id = _queued_job(ctx)
    follower = _follow(url, job_id, users[Role.viewer])
    wait_until(lambda: follower.messages == ["queued"], what="the first event")
    with ctx.database.session(write=True) as session:
        token = next(t for t in api_tokens.list_tokens(session) if t.name == "viewer-token")
        api_tokens.revoke_token(session, token.id, actor="test")
    wait_until(lambda: follower.ended, what="the stream to close")
    assert 'event: end\ndata: {"reason": "token_revoked"}' in follower.text
    # Reconnecting is refused.
    again = httpx.get(
        f"{url}/api/jobs/{job_id}/events",
        headers={**users[Role.viewer].headers, "Accept": "text/event-stream"},
    )
    assert again.status_code == 401


def test_an_ended_session_closes_its_stream(served: tuple[str, AppContext, dict[Role, RoleUser]]) -> None:
    url, ctx, _users = served
    job_id = _queued_job(ctx)
    with httpx.Client(base_url=url) as browser:
        token = CSRF_RE.search(browser.get("/login").text)
        assert token
        signed_in = browser.post(
            "/login",
            data={"username": "viewer-user", "password": TEST_PASSWORD, "csrf_token": token.group(1)},
        )
        assert signed_in.status_code in (200, 303)
        cookie = browser.cookies[web_sessions.SESSION_COOKIE]
    follower = Follower(
        f"{url}/api/jobs/{job_id}/events", {}, cookies={web_sessions.SESSION_COOKIE: cookie}
    ).start()
    assert follower.status == 200
    wait_until(lambda: follower.messages == ["queued"], what="the first event")
    session_id = ctx.signer.unsign(cookie)
    assert session_id is not None
    with ctx.database.session(write=True) as session:
        web_sessions.end_session(session, session_id)  # what /logout does
    wait_until(lambda: follower.ended, what="the stream to close")
    assert 'event: end\ndata: {"reason": "session_ended"}' in follower.text
    follower.stop()


@pytest.mark.parametrize("feed_up", [True, False])
def test_a_quiet_stream_reads_at_its_keep_alives_only_when_the_feed_is_down(
    app_context: AppContext, monkeypatch: pytest.MonkeyPatch, feed_up: bool
) -> None:
    """While the shared feed runs it wakes a stream for its job's events, so neither a keep-alive
    nor a batch that was not full needs another read (500 quiet streams reading at every keep-alive
    and after their first batch slowed every other request); when the feed has failed, each
    keep-alive reads, as a poll."""
    import asyncio

    from nodewright.api.jobs import _poll_events, event_stream
    from nodewright.api.streams import StreamHub

    job_id = _queued_job(app_context)
    first = _poll_events(app_context.database, job_id, 0)  # what the request reads: one event
    assert len(first[1]) == 1
    hub = StreamHub(app_context.database, max_streams=10, max_per_user=10)
    if not feed_up:
        monkeypatch.setattr(hub, "feed_running", lambda: False)
    ticket = hub.open(user_id=None, job_id=job_id, token_id=None, session_id=None)
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "job_events.seq >" in statement:  # a stream's read, not the feed's poll
            reads.append(statement)

    async def follow() -> list[str]:
        frames = []
        if feed_up:  # on PostgreSQL the feed hears events once its LISTEN connection is up
            hub.ensure_running()
            deadline = time.monotonic() + 10
            while not hub.feed_running() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        stream = event_stream(
            app_context.database,
            job_id,
            0,
            hub=hub,
            ticket=ticket,
            keepalive_seconds=0.05,
            max_seconds=1.0,
            first=first,
        )
        async for frame in stream:
            frames.append(frame)
        await hub.stop()
        return frames

    event.listen(app_context.database.engine, "before_cursor_execute", count)
    try:
        frames = asyncio.run(follow())
    finally:
        event.remove(app_context.database.engine, "before_cursor_execute", count)
        hub.release(ticket)
    keepalives = frames.count(": keep-alive\n\n")
    assert keepalives >= 5, frames
    assert any(f.startswith("id: 1\n") for f in frames)
    if feed_up:
        # One read when the feed starts (it wakes every stream then, for what was committed before
        # it took its cursor or its LISTEN connection came up); none at the keep-alives.
        assert len(reads) <= 1, reads
    else:
        assert len(reads) >= keepalives - 1


def test_a_refused_stream_reads_no_events(served: tuple[str, AppContext, dict[Role, RoleUser]]) -> None:
    """A stream over its cap is refused before the request reads the job's events: a viewer at the
    cap asking again and again costs no event reads."""
    url, ctx, users = served
    job_id = _queued_job(ctx)
    viewer = users[Role.viewer]
    open_ = [_follow(url, job_id, viewer), _follow(url, job_id, viewer)]
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "job_events.seq >" in statement:
            reads.append(statement)

    try:
        event.listen(ctx.database.engine, "before_cursor_execute", count)
        try:
            for _ in range(3):
                refused = httpx.get(
                    f"{url}/api/jobs/{job_id}/events",
                    headers={**viewer.headers, "Accept": "text/event-stream"},
                )
                assert refused.status_code == 429
        finally:
            event.remove(ctx.database.engine, "before_cursor_execute", count)
    finally:
        for f in open_:
            f.stop()
    assert reads == []


async def _frames_until(stream: Any, marker: str, seconds: float) -> tuple[list[str], float]:
    """Frames of ``stream`` until one contains ``marker`` (or ``seconds`` pass); the time taken."""
    import asyncio

    frames: list[str] = []
    started = time.monotonic()

    async def run() -> None:
        async for frame in stream:
            frames.append(frame)
            if marker in frame:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run(), seconds)
    return frames, time.monotonic() - started


def _quiet_stream(
    ctx: AppContext, hub: Any, ticket: Any, job_id: int, *, first: tuple[str | None, list[Any]] | None = None
) -> Any:
    """A stream after the job's first event ("queued"), with the request's own first read given (by
    default: nothing new) and its keep-alive 30 s away, so only a wake makes it read within a test."""
    from nodewright.api.jobs import event_stream

    return event_stream(
        ctx.database,
        job_id,
        1,
        hub=hub,
        ticket=ticket,
        keepalive_seconds=30.0,
        max_seconds=8.0,
        first=first if first is not None else ("queued", []),
    )


@pytest.mark.parametrize("feed_already_running", [False, True])
def test_events_written_between_the_first_read_and_the_stream_start_are_sent_at_once(
    app_context: AppContext, feed_already_running: bool
) -> None:
    """The request reads the stream's first events itself; an event committed after that read but
    before the stream started must not wait for a keep-alive (which, with the feed running, reads
    nothing): the feed's start wakes every stream, and a wake that comes before the stream is
    bound is kept for it."""
    import asyncio

    from nodewright.api.streams import StreamHub

    job_id = _queued_job(app_context)
    hub = StreamHub(app_context.database, max_streams=10, max_per_user=10)

    async def scenario() -> tuple[list[str], float]:
        if feed_already_running:
            keeper = hub.open(user_id=None, job_id=_queued_job(app_context), token_id=None, session_id=None)
            keeper.bind()
            hub.ensure_running()
            await asyncio.sleep(1.0)  # the feed has taken its cursor
        ticket = hub.open(user_id=None, job_id=job_id, token_id=None, session_id=None)
        first: tuple[str | None, list[Any]] = ("queued", [])  # the request's own read: nothing new
        _log(app_context, job_id, "written after the first read")
        if feed_already_running:
            await asyncio.sleep(1.0)  # the running feed sees it and wakes the not yet bound ticket
        stream = _quiet_stream(app_context, hub, ticket, job_id, first=first)
        frames, taken = await _frames_until(stream, "written after the first read", 5.0)
        await hub.stop()
        return frames, taken

    frames, taken = asyncio.run(scenario())
    assert any("written after the first read" in f for f in frames), frames
    assert taken < 3.0, taken  # a generous bound: the keep-alive is 30 s away


def test_a_batch_read_after_the_credential_went_is_not_sent(
    app_context: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that waited its turn while the token was revoked returns events; they are not sent,
    the stream ends with its reason instead."""
    import asyncio

    from nodewright.api.jobs import EventOut, event_stream
    from nodewright.api.streams import StreamHub

    job_id = _queued_job(app_context)
    hub = StreamHub(app_context.database, max_streams=10, max_per_user=10)
    ticket = hub.open(user_id=None, job_id=job_id, token_id=1, session_id=None)
    secret_event = EventOut(
        seq=2,
        at=dt.datetime.now(dt.UTC),
        type="log",
        level="info",
        message="after revocation",
        data={},
        attempt=0,
    )

    async def late_read(*_args: Any, **_kwargs: Any) -> tuple[str, list[EventOut]]:
        ticket.close("token_revoked")  # revoked while this read waited
        return "running", [secret_event]

    monkeypatch.setattr(hub, "read", late_read)
    stream = event_stream(app_context.database, job_id, 1, hub=hub, ticket=ticket, max_seconds=2.0)
    frames, _taken = asyncio.run(_frames_until(stream, "event: end", 5.0))
    assert not any("after revocation" in f for f in frames), frames
    assert any("token_revoked" in f for f in frames), frames


def test_an_event_committed_while_a_stream_is_being_opened_is_sent_at_once(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's last event and its final state commit while the request that opens the stream is
    being admitted, and the running feed (kept up by another stream) has already passed that event
    by: the stream still sends it and ends at once, not at its end 20-30 s later."""
    settings = make_settings(db_url, tmp_path / "data")
    ctx = AppContext.open(settings)
    users = create_role_users(ctx)
    app = create_app(settings, ctx=ctx, start_workers=False)
    hub = app.state.streams
    job_id = _queued_job(ctx)
    real_open = hub.open

    def open_while_the_job_finishes(**kwargs: Any) -> Any:
        if kwargs["job_id"] == job_id:
            from sqlalchemy import update

            from nodewright.db.models.jobs import Job

            with ctx.database.session(write=True) as session:
                append_event(session, job_id, type="log", message="the last event", data={}, attempt=0)
                session.execute(update(Job).where(Job.id == job_id).values(state="succeeded"))
            time.sleep(1.0)  # the feed sees it (SQLite poll, PostgreSQL notify) with no ticket to wake
        return real_open(**kwargs)

    monkeypatch.setattr(hub, "open", open_while_the_job_finishes)
    try:
        with live_server(app) as url:
            keeper = _follow(url, _queued_job(ctx), users[Role.viewer])  # keeps the feed running
            try:
                wait_until(lambda: keeper.messages == ["queued"], what="the keeper's first event")
                follower = _follow(url, job_id, users[Role.operator])
                try:
                    wait_until(lambda: follower.ended, timeout=6, what="the finished job's stream to end")
                    assert "the last event" in follower.messages
                finally:
                    follower.stop()
            finally:
                keeper.stop()
    finally:
        ctx.close()


@pytest.mark.db_only("postgresql", "the LISTEN connection of the PostgreSQL feed")
def test_the_feed_counts_as_running_only_while_its_listen_connection_is_up(
    app_context: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the LISTEN connection down the feed wakes nobody: streams must read at their keep-alives
    then, so the feed does not count as running."""
    import asyncio

    from nodewright.api.streams import StreamHub
    from nodewright.jobs import notify

    async def running_after(seconds: float, hub: StreamHub) -> bool:
        ticket = hub.open(user_id=None, job_id=_queued_job(app_context), token_id=None, session_id=None)
        ticket.bind()
        hub.ensure_running()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not hub.feed_running():
            await asyncio.sleep(0.05)
        up = hub.feed_running()
        await hub.stop()
        hub.release(ticket)
        return up

    assert asyncio.run(running_after(10.0, StreamHub(app_context.database, max_streams=5, max_per_user=5)))
    # A server nobody listens on (loopback): every connection attempt is refused.
    monkeypatch.setattr(notify, "libpq_url", lambda _url: "postgresql://postgres@127.0.0.1:1/nowhere")
    down = StreamHub(app_context.database, max_streams=5, max_per_user=5)
    assert not asyncio.run(running_after(2.0, down))


def test_streams_waiting_when_the_feed_fails_read_at_once(
    app_context: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed task fails (here: its credential check raises) right after an event was committed:
    the waiting stream is woken to read, instead of sleeping until its keep-alive."""
    import asyncio

    from nodewright.api.streams import StreamHub

    job_id = _queued_job(app_context)
    hub = StreamHub(app_context.database, max_streams=5, max_per_user=5)
    ticket = hub.open(user_id=None, job_id=job_id, token_id=None, session_id=None)
    calls = []

    async def failing_check() -> None:
        calls.append(1)
        if len(calls) == 2:  # the first check passes; the stream is waiting by the second
            _log(app_context, job_id, "written as the feed fails")
            raise RuntimeError("the credential check failed")

    monkeypatch.setattr(hub, "_check_credentials", failing_check)

    async def scenario() -> tuple[list[str], float]:
        result = await _frames_until(
            _quiet_stream(app_context, hub, ticket, job_id), "written as the feed fails", 6.0
        )
        await hub.stop()
        return result

    frames, taken = asyncio.run(scenario())
    hub.release(ticket)
    assert any("written as the feed fails" in f for f in frames), frames
    assert taken < 4.0, taken  # the keep-alive is 30 s away
