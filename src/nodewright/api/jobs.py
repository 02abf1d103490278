"""``/api/jobs``: list, inspect, follow (JSON pages or Server-Sent Events) and cancel jobs."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.types import Receive, Scope, Send

from nodewright.api.deps import DatabaseDep, Operator, Principal, Viewer
from nodewright.api.ids import JobId
from nodewright.api.problems import PROBLEM_RESPONSES, ProblemError, problem_doc
from nodewright.api.routing import OneHopRoute
from nodewright.api.streams import StreamHub, StreamTicket
from nodewright.db.database import Database
from nodewright.db.models.jobs import Job, JobEvent, JobStep
from nodewright.jobs import service
from nodewright.jobs.states import ALL_STATES, TERMINAL
from nodewright.security import audit
from nodewright.security.redaction import redact

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=PROBLEM_RESPONSES, route_class=OneHopRoute)

SSE_MEDIA_TYPE = "text/event-stream"
SSE_POLL_SECONDS = 0.25
SSE_KEEPALIVE_SECONDS = 15.0
# A stream also ends after this long, even for a job still running: uvicorn's graceful shutdown waits
# for every open response, so an endless stream would keep the server (and its embedded workers)
# from stopping. The client resumes losslessly with Last-Event-ID, as EventSource does by itself.
SSE_MAX_STREAM_SECONDS = 20.0

MAX_SEQ = 2**31 - 1
STREAM_BATCH = 500  # events per read of a stream


class JobErrorOut(BaseModel):
    code: str
    message: str
    retryable: bool = False
    hint: str | None = None
    retry_after: float | None = None


class StepOut(BaseModel):
    name: str
    attempt: int
    output: Any = None
    started_at: dt.datetime
    completed_at: dt.datetime


class JobOut(BaseModel):
    id: int
    kind: str
    state: str
    args: dict[str, Any]
    resource_key: str | None
    dedup_key: str | None
    priority: int
    run_after: dt.datetime
    attempt: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    cancel_requested_at: dt.datetime | None
    error: JobErrorOut | None
    result: dict[str, Any] | None
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class JobDetail(JobOut):
    steps: list[StepOut]


class JobPageOut(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class EventOut(BaseModel):
    seq: int
    at: dt.datetime
    type: str
    level: str
    message: str
    data: dict[str, Any]
    attempt: int


class EventPageOut(BaseModel):
    items: list[EventOut]
    next_after: int
    job_state: str
    finished: bool


def _job_fields(job: Job) -> dict[str, Any]:
    error = job.error if isinstance(job.error, dict) else None
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "args": redact(job.args or {}),
        "resource_key": job.resource_key,
        "dedup_key": job.dedup_key,
        "priority": job.priority,
        "run_after": job.run_after,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "lease_owner": job.lease_owner,
        "lease_expires_at": job.lease_expires_at,
        "cancel_requested_at": job.cancel_requested_at,
        "error": JobErrorOut(**redact(error)) if error else None,
        "result": redact(job.result) if isinstance(job.result, dict) else None,
        "created_by": job.created_by,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _step_out(step: JobStep) -> StepOut:
    return StepOut(
        name=step.name,
        attempt=step.attempt,
        output=redact((step.output or {}).get("value")),
        started_at=step.started_at,
        completed_at=step.completed_at,
    )


def _event_out(event: JobEvent) -> EventOut:
    return EventOut(
        seq=event.seq,
        at=event.at,
        type=event.type,
        level=event.level,
        message=event.message,
        data=event.data or {},
        attempt=event.attempt,
    )


def _not_found(job_id: int) -> ProblemError:
    return ProblemError(404, "not_found", "Job not found", f"There is no job {job_id}.")


@router.get("", summary="List jobs, newest first")
def list_jobs(
    _caller: Viewer,
    database: DatabaseDep,
    state: Annotated[list[str] | None, Query(description=f"Filter by state: {', '.join(ALL_STATES)}")] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    resource_key: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JobPageOut:
    unknown = sorted(set(state or ()) - set(ALL_STATES))
    if unknown:
        raise ProblemError(
            422,
            "invalid_state",
            "Unknown job state",
            f"Unknown state(s): {', '.join(unknown)}.",
            hint=f"Use one of: {', '.join(ALL_STATES)}.",
        )
    with database.session() as session:
        page = service.list_jobs(
            session, states=state, kind=kind, resource_key=resource_key, limit=limit, offset=offset
        )
        items = [JobOut(**_job_fields(job)) for job in page.items]
    return JobPageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/{job_id}", summary="One job with its completed steps")
def get_job(job_id: JobId, _caller: Viewer, database: DatabaseDep) -> JobDetail:
    with database.session() as session:
        try:
            job = service.get_job(session, job_id)
        except service.JobNotFound:
            raise _not_found(job_id) from None
        steps = [_step_out(step) for step in service.list_steps(session, job_id)]
        return JobDetail(**_job_fields(job), steps=steps)


def _parse_last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    # isdecimal() rather than isdigit(): "²" is a digit that int() refuses. Bounded like ``after``,
    # so the database never sees an integer it cannot compare (a 500 on PostgreSQL and SQLite).
    if not text.isascii() or not text.isdecimal() or int(text) > MAX_SEQ:
        raise ProblemError(400, "invalid_last_event_id", "Invalid Last-Event-ID", "It must be an event seq.")
    return int(text)


@router.get(
    "/{job_id}/events",
    summary="Job events after a sequence number (JSON), or a live Server-Sent Events stream",
    description=(
        "With `Accept: text/event-stream` the response is an SSE stream (`id` = seq, `event` = type, "
        "`data` = the event as JSON) starting after `Last-Event-ID` (or `after`); it ends once the job "
        "is finished and every event was sent."
    ),
    responses={200: {"content": {SSE_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
)
def job_events(
    job_id: JobId,
    request: Request,
    caller: Viewer,
    database: DatabaseDep,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> Any:
    resume = _parse_last_event_id(last_event_id)
    start = resume if resume is not None else after
    if SSE_MEDIA_TYPE in request.headers.get("accept", ""):
        return _open_stream(request, caller, database, job_id, start)
    with database.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise _not_found(job_id)
        state = job.state
        events = [_event_out(e) for e in service.list_events(session, job_id, after=start, limit=limit)]
    next_after = events[-1].seq if events else start
    return EventPageOut(
        items=events,
        next_after=next_after,
        job_state=state,
        finished=state in TERMINAL and len(events) < limit,
    )


def _open_stream(
    request: Request, caller: Principal, database: Database, job_id: int, start: int
) -> Response:
    """Admit a stream (or refuse it, 429) before anything is read, then read its first batch.

    The ticket is registered before the first statement of that read: an event committed from then
    on is either in the read or wakes the ticket (a wake before the stream starts is kept). Read
    first and register after, and an event committed in between, seen by the feed while no ticket
    was there, would wait for the stream's end (20-30 s) to be sent."""
    hub: StreamHub = request.app.state.streams
    ticket = hub.open(
        user_id=caller.user_id, job_id=job_id, token_id=caller.token_id, session_id=caller.session_id
    )
    try:
        # The stream's first read, here: one hand-off to a worker thread fewer per stream opened.
        first = _poll_events(database, job_id, start)
    except BaseException:
        hub.release(ticket)
        raise
    if first[0] is None:
        hub.release(ticket)
        raise _not_found(job_id)
    # Streams end after 20-30 s, spread so that many streams opened together (a page of tabs, a
    # restart) do not all reconnect in the same instant.
    lifetime = SSE_MAX_STREAM_SECONDS * (1 + random.random() / 2)
    return _TicketedStream(
        event_stream(database, job_id, start, hub=hub, ticket=ticket, max_seconds=lifetime, first=first),
        release=lambda: hub.release(ticket),
        media_type=SSE_MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _poll_events(database: Database, job_id: int, after: int) -> tuple[str | None, list[EventOut]]:
    """One short-lived session: the job's state first, then its events after ``after``.

    The final state change commits together with its event, so once a terminal state is seen, the
    events read next include the last one.
    """
    with database.session() as session:
        job = session.get(Job, job_id)
        state = job.state if job is not None else None
        batch = [_event_out(e) for e in service.list_events(session, job_id, after=after, limit=STREAM_BATCH)]
    return state, batch


class _TicketedStream(StreamingResponse):
    """A streaming response that gives its stream slot back however it ends: finished, failed,
    or cancelled by a client that went away before the first byte (the generator's own
    ``finally`` would not run if it never started)."""

    def __init__(self, content: AsyncIterator[str], *, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def event_stream(
    database: Database,
    job_id: int,
    after: int,
    *,
    hub: StreamHub | None = None,
    ticket: StreamTicket | None = None,
    poll_seconds: float = SSE_POLL_SECONDS,
    keepalive_seconds: float = SSE_KEEPALIVE_SECONDS,
    max_seconds: float = SSE_MAX_STREAM_SECONDS,
    first: tuple[str | None, list[EventOut]] | None = None,
) -> AsyncIterator[str]:
    """SSE frames for the job's events after ``after``, until the job is finished and all are sent,
    ``max_seconds`` passed (the client then reconnects with ``Last-Event-ID``), or the stream's
    credential is gone (token revoked, session ended: the hub closes the ticket).

    With a ticket the stream reads the database only when the hub's shared change feed says its job
    has new events (or at a keep-alive); without one (direct callers) it polls every
    ``poll_seconds``. Each read runs in the thread pool, never on the loop.
    """
    if ticket is not None:
        ticket.bind()
        if hub is not None:
            hub.ensure_running()
    last = after
    last_sent = started = time.monotonic()
    # The first keep-alive comes at a random point of its interval: 500 streams opened together
    # would otherwise send their keep-alives in the same instant.
    keepalive_due = keepalive_seconds * (0.5 + random.random() / 2)
    yield "retry: 2000\n\n"
    while True:
        if ticket is not None and ticket.closed:
            yield _end_frame(ticket)
            return
        try:
            if first is not None:
                (state, batch), first = first, None
            elif hub is not None:
                state, batch = await hub.read(_poll_events, database, job_id, last)
            else:
                state, batch = await run_in_threadpool(_poll_events, database, job_id, last)
        except (OperationalError, InterfaceError):
            # The database went away mid-stream: too late for a 503, so end the stream; the client
            # reconnects with Last-Event-ID and then gets the 503 (or its events).
            return
        if ticket is not None and ticket.closed:
            # Closed while the read waited its turn: what it read is not sent to a revoked caller.
            yield _end_frame(ticket)
            return
        for event in batch:
            payload = json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
            yield f"id: {event.seq}\nevent: {event.type}\ndata: {payload}\n\n"
            last = event.seq
            last_sent = time.monotonic()
        full = len(batch) >= STREAM_BATCH
        if state is None or (state in TERMINAL and not full):
            # Finished, and every event sent: the state was read before the events, and a job's
            # final state commits together with its last event.
            return
        if time.monotonic() - started >= max_seconds:
            return
        if full:
            continue  # more are waiting; otherwise the feed wakes this stream for new ones
        while True:
            now = time.monotonic()
            if now - started >= max_seconds:
                return
            if now - last_sent >= keepalive_due:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
                keepalive_due = keepalive_seconds
                if hub is not None and hub.feed_running():
                    continue  # the feed wakes this stream for its job's events: nothing to read
                break  # no feed (it failed, or a direct caller): read again, as a poll
            if ticket is None:
                await asyncio.sleep(poll_seconds)
                break
            wait = min(keepalive_due - (now - last_sent), max_seconds - (now - started))
            if await ticket.wait(max(0.0, wait)):
                break


def _end_frame(ticket: StreamTicket) -> str:
    """The last frame of a stream closed for its credential: says why, so a client does not just
    reconnect in a loop (EventSource then gets a 401 and stops)."""
    return f"event: end\ndata: {json.dumps({'reason': ticket.closed_reason})}\n\n"


@router.post(
    "/{job_id}/cancel",
    summary="Cancel a job: at once if waiting, at its next step boundary if running",
    responses={409: problem_doc("The job already finished")},
)
def cancel_job(job_id: JobId, caller: Operator, database: DatabaseDep) -> JobOut:
    target = f"job:{job_id}"
    try:
        with database.session(write=True) as session:
            job = service.request_cancel(session, job_id, actor=caller.actor)
            audit.record(
                session,
                actor=caller.actor,
                action="job.cancel",
                target=target,
                outcome="ok",
                detail={"state": job.state},
            )
            return JobOut(**_job_fields(job))
    except service.JobNotFound:
        raise _not_found(job_id) from None
    except service.JobAlreadyFinished as exc:
        raise ProblemError(
            409,
            "job_finished",
            "Job already finished",
            f"Job {job_id} is already {exc.state}; there is nothing to cancel.",
        ) from None
