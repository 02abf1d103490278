"""Live job event streams: one shared change feed per process, caps, and credential rechecks.

Before, every open stream polled the database four times a second through the shared thread pool:
200 streams of one viewer token made every other request wait. Now:

- One change feed per process learns which jobs got new events: on PostgreSQL a LISTEN connection
  (a trigger on ``job_events`` notifies ``nodewright_job_events`` with the job id, from any process on
  any machine); on SQLite a single poller reads the ids of new event rows. It wakes only the streams
  of those jobs, which then read their new events once. An idle stream costs no query.
- Streams are capped per user and per process; one over a cap is refused with 429 before it starts.
- A checker looks at every open stream's credential twice a second, with one query for all of them:
  a stream whose API token was revoked, whose session ended, or whose user was disabled, is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from nodewright.api.problems import ProblemError
from nodewright.db.database import Database
from nodewright.db.models import ApiToken, User, WebSession
from nodewright.db.models.jobs import JobEvent
from nodewright.security.hashing import token_hash

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "nodewright_job_events"
SQLITE_POLL_SECONDS = 0.25
CREDENTIAL_CHECK_SECONDS = 0.5
IDLE_STOP_SECONDS = 5.0
ANY_JOB = 0  # a ticket for this "job" wakes on every job's events (the live node list)
# The streams' own reads share this many worker threads, apart from the pool everyone else uses:
# 500 streams opened (or woken) together queue behind each other, not in front of every request.
# Job-event streams and the live node list (woken by every job's events) have a share each.
STREAM_READ_THREADS = {"events": 4, "nodes": 2}

T = TypeVar("T")


@dataclass(eq=False)
class StreamTicket:
    """One open stream: who holds it, which job it follows, and how to wake or close it."""

    user_id: int | None
    job_id: int
    token_id: int | None
    session_hash: str | None
    closed_reason: str | None = None
    _wake: asyncio.Event | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    # Woken before its stream started (events committed just after the request's own read).
    _woken_early: bool = field(default=False, repr=False)

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def bind(self) -> None:
        """Attach to the running loop (the ticket was made in a worker thread)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._woken_early:
            self._wake.set()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()
        else:
            self._woken_early = True

    def close(self, reason: str) -> None:
        self.closed_reason = reason
        self.wake()

    async def wait(self, timeout: float) -> bool:
        """Wait for new events of this job (or a close); False when ``timeout`` passed first."""
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return False
        self._wake.clear()
        return True


class StreamHub:
    """The per-process registry of open streams and the tasks that feed and police them."""

    def __init__(self, database: Database, *, max_streams: int, max_per_user: int) -> None:
        self.database = database
        self.max_streams = max_streams
        self.max_per_user = max_per_user
        self._lock = threading.Lock()
        self._tickets: set[StreamTicket] = set()
        self._per_user: Counter[int | None] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._listener: _PostgresEventListener | None = None
        self._sqlite_cursor: int | None = None
        self._reads: dict[str, anyio.CapacityLimiter] = {}

    async def read(self, func: Callable[..., T], *args: Any, share: str = "events") -> T:
        """Run a stream's database read in a worker thread of the streams' own small ``share``
        (``events`` or ``nodes``, see ``STREAM_READ_THREADS``).

        The hub's feed and credential checks do not use it: a revoked token's stream must close
        in time however many streams wait to read."""
        limiter = self._reads.get(share)
        if limiter is None:  # made on the loop: anyio wants a running event loop for it
            limiter = self._reads[share] = anyio.CapacityLimiter(STREAM_READ_THREADS[share])
        return await anyio.to_thread.run_sync(lambda: func(*args), limiter=limiter)

    # --- admission ---------------------------------------------------------------------------------

    def open(
        self, *, user_id: int | None, job_id: int, token_id: int | None, session_id: str | None
    ) -> StreamTicket:
        """Admit a stream or raise a 429 problem; called from the route (a worker thread)."""
        with self._lock:
            if len(self._tickets) >= self.max_streams:
                raise _too_many("This server has as many open event streams as it allows.")
            if self._per_user[user_id] >= self.max_per_user:
                raise _too_many(
                    f"This user already has {self.max_per_user} open event streams; close one first."
                )
            ticket = StreamTicket(
                user_id, job_id, token_id, token_hash(session_id) if session_id is not None else None
            )
            self._tickets.add(ticket)
            self._per_user[user_id] += 1
            return ticket

    def release(self, ticket: StreamTicket) -> None:
        with self._lock:
            if ticket in self._tickets:
                self._tickets.discard(ticket)
                self._per_user[ticket.user_id] -= 1
                if self._per_user[ticket.user_id] <= 0:
                    del self._per_user[ticket.user_id]

    def open_count(self) -> int:
        with self._lock:
            return len(self._tickets)

    def _snapshot(self) -> list[StreamTicket]:
        with self._lock:
            return list(self._tickets)

    # --- the shared feed ---------------------------------------------------------------------------

    def feed_running(self) -> bool:
        """Whether the change feed is running and hearing events (it wakes streams for their jobs'
        events): its task alive on this loop, and on PostgreSQL its LISTEN connection up. When not,
        streams fall back to reading at every keep-alive."""
        if not self._task_alive():
            return False
        listener = self._listener
        return self.database.is_sqlite or (listener is not None and listener.connected.is_set())

    def _task_alive(self) -> bool:
        task = self._task
        if task is None or task.done():
            return False
        try:
            # A task of a loop that stopped without finishing it (a test client's) never runs again.
            return task.get_loop() is asyncio.get_running_loop()
        except RuntimeError:
            return True  # asked from outside any loop: the task is not done

    def ensure_running(self) -> None:
        """Start the feed task on the running loop if it is not running (it stops when idle)."""
        if not self._task_alive():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="nodewright-stream-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._stop_listener()

    def _wake_jobs(self, job_ids: set[int] | None) -> None:
        """Wake the streams of these jobs (all streams when ``None``: a reconnect may have missed some)."""
        for ticket in self._snapshot():
            if job_ids is None or ticket.job_id in job_ids or ticket.job_id == ANY_JOB:
                ticket.wake()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.database.is_sqlite:
            self._listener = _PostgresEventListener(
                self.database.url, lambda ids: loop.call_soon_threadsafe(self._wake_jobs, ids)
            )
            self._listener.start()
        else:
            self._sqlite_cursor = await run_in_threadpool(self._latest_event_id)
            # Events committed before the cursor was taken (after a stream's own first read) are
            # not in the feed: every open stream reads once, as on PostgreSQL's LISTEN (re)connect.
            self._wake_jobs(None)
        idle_since: float | None = None
        next_check = 0.0
        try:
            while True:
                now = loop.time()
                if not self._snapshot():
                    idle_since = idle_since if idle_since is not None else now
                    if now - idle_since >= IDLE_STOP_SECONDS:
                        # No await between the check and this: a stream admitted later finds no
                        # task and starts a new one (ensure_running runs on this same loop).
                        self._task = None
                        return
                else:
                    idle_since = None
                    if self.database.is_sqlite:
                        await self._poll_sqlite()
                    if now >= next_check:
                        next_check = now + CREDENTIAL_CHECK_SECONDS
                        await self._check_credentials()
                await asyncio.sleep(SQLITE_POLL_SECONDS if self.database.is_sqlite else 0.1)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning(
                "event stream feed failed; streams fall back to their keep-alive polls", exc_info=True
            )
            # Waiting streams would otherwise sleep until their keep-alive: each reads once now,
            # then at every keep-alive until a new stream starts the feed again.
            self._wake_jobs(None)
        finally:
            self._stop_listener()

    def _stop_listener(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def _latest_event_id(self) -> int:
        with self.database.session() as session:
            return int(session.scalar(select(JobEvent.id).order_by(JobEvent.id.desc()).limit(1)) or 0)

    async def _poll_sqlite(self) -> None:
        cursor = self._sqlite_cursor or 0

        def poll() -> list[tuple[int, int]]:
            with self.database.session() as session:
                rows = session.execute(
                    select(JobEvent.id, JobEvent.job_id)
                    .where(JobEvent.id > cursor)
                    .order_by(JobEvent.id)
                    .limit(5000)
                ).all()
            return [(int(r[0]), int(r[1])) for r in rows]

        rows = await run_in_threadpool(poll)
        if rows:
            self._sqlite_cursor = rows[-1][0]
            self._wake_jobs({job_id for _id, job_id in rows})

    # --- credentials -------------------------------------------------------------------------------

    async def _check_credentials(self) -> None:
        tickets = self._snapshot()
        token_ids = {t.token_id for t in tickets if t.token_id is not None}
        session_hashes = {t.session_hash for t in tickets if t.session_hash is not None}

        def valid() -> tuple[set[int], set[str]]:
            now = dt.datetime.now(dt.UTC)
            with self.database.session() as session:
                tokens = set(
                    session.scalars(
                        select(ApiToken.id)
                        .join(User, User.id == ApiToken.user_id)
                        .where(
                            ApiToken.id.in_(token_ids),
                            ApiToken.revoked_at.is_(None),
                            User.disabled.is_(False),
                        )
                    )
                    if token_ids
                    else ()
                )
                sessions = set(
                    session.scalars(
                        select(WebSession.token_hash)
                        .join(User, User.id == WebSession.user_id)
                        .where(
                            WebSession.token_hash.in_(session_hashes),
                            WebSession.expires_at > now,
                            User.disabled.is_(False),
                        )
                    )
                    if session_hashes
                    else ()
                )
            return tokens, sessions

        tokens, sessions = await run_in_threadpool(valid)
        for ticket in tickets:
            if ticket.token_id is not None and ticket.token_id not in tokens:
                ticket.close("token_revoked")
            elif ticket.session_hash is not None and ticket.session_hash not in sessions:
                ticket.close("session_ended")


def _too_many(detail: str) -> ProblemError:
    return ProblemError(
        429,
        "too_many_streams",
        "Too many event streams",
        detail,
        hint="Close another stream (browser tab) or poll GET /api/jobs/{id}/events?after=N instead.",
        retryable=True,
        headers={"Retry-After": "5"},
    )


class _PostgresEventListener(threading.Thread):
    """LISTENs for new job events on a dedicated connection; hands job ids to the loop."""

    def __init__(self, database_url: str, deliver: Callable[[set[int] | None], object]) -> None:
        super().__init__(name="nodewright-stream-listen", daemon=True)
        from nodewright.jobs.notify import libpq_url

        self._conninfo = libpq_url(database_url)
        self._deliver = deliver
        self._stop_event = threading.Event()
        # Set while LISTEN is in force; streams read at their keep-alives while it is not.
        self.connected = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        import psycopg

        while not self._stop_event.is_set():
            try:
                # TCP keep-alives: a connection that died silently (no reset) is noticed in about
                # 30 s instead of being listened on forever.
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    keepalives=1,
                    keepalives_idle=15,
                    keepalives_interval=5,
                    keepalives_count=3,
                ) as conn:
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    self.connected.set()
                    self._deliver(None)  # anything committed while (re)connecting
                    while not self._stop_event.is_set():
                        ids = {int(n.payload) for n in conn.notifies(timeout=0.2) if n.payload.isdigit()}
                        if ids:
                            self._deliver(ids)
            except Exception:
                self.connected.clear()
                log.warning("job event LISTEN connection failed; retrying", exc_info=True)
                self._stop_event.wait(1.0)
            finally:
                self.connected.clear()
