"""``/jobs``: every infrastructure change with its steps and live log; operators can cancel."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from nodewright.api.ids import JobId
from nodewright.api.routing import OneHopRoute
from nodewright.context import AppContext
from nodewright.dashboard.rendering import (
    PageError,
    PostedForm,
    checked_form,
    render,
    require_page_role,
    require_user,
)
from nodewright.db.types import utcnow
from nodewright.jobs import service
from nodewright.jobs.states import ALL_STATES, TERMINAL
from nodewright.security import audit
from nodewright.security.redaction import redact
from nodewright.security.roles import Role

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)
PAGE_SIZE = 50
WAITING_STATES = ("queued", "retry_wait")


def waiting_until(state: str, run_after: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """When a job that waits will run: a queued (or retrying) job scheduled for later says so,
    rather than looking stuck at attempt 0."""
    if state in WAITING_STATES and run_after is not None and run_after > now:
        return run_after
    return None


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    state: str | None = Query(None, max_length=16),
    kind: str | None = Query(None, max_length=64),
    page: int = Query(1, ge=1, le=10_000),
) -> Response:
    user = require_user(request)
    if state is not None and state not in ALL_STATES:
        raise PageError(
            422, "Unknown state", f"{state!r} is not a job state; use one of {', '.join(ALL_STATES)}."
        )
    now = utcnow()
    with _ctx(request).database.session() as session:
        result = service.list_jobs(
            session,
            states=[state] if state else None,
            kind=kind or None,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        jobs = [
            {
                "id": j.id,
                "kind": j.kind,
                "state": j.state,
                "resource_key": j.resource_key,
                "attempt": j.attempt,
                "max_attempts": j.max_attempts,
                "created_at": j.created_at,
                "finished_at": j.finished_at,
                "waiting_until": waiting_until(j.state, j.run_after, now),
                "error": redact(j.error) if j.error else None,
            }
            for j in result.items
        ]
    return render(
        request,
        "jobs.html",
        user=user,
        jobs=jobs,
        total=result.total,
        page=page,
        pages=max(1, -(-result.total // PAGE_SIZE)),
        state=state,
        kind=kind,
        states=ALL_STATES,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: JobId) -> Response:
    user = require_user(request)
    with _ctx(request).database.session() as session:
        try:
            job = service.get_job(session, job_id)
        except service.JobNotFound:
            raise PageError(404, "Not found", f"There is no job {job_id}.") from None
        steps = [
            {"name": s.name, "attempt": s.attempt, "completed_at": s.completed_at}
            for s in service.list_steps(session, job_id)
        ]
        events = [
            {"seq": e.seq, "at": e.at, "level": e.level, "type": e.type, "message": redact(e.message)}
            for e in service.list_events(session, job_id)
        ]
        detail = {
            "id": job.id,
            "kind": job.kind,
            "state": job.state,
            "resource_key": job.resource_key,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "created_by": job.created_by,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "run_after": job.run_after,
            "waiting_until": waiting_until(job.state, job.run_after, utcnow()),
            "error": redact(job.error) if job.error else None,
            "finished": job.state in TERMINAL,
        }
    return render(
        request,
        "job.html",
        user=user,
        job=detail,
        steps=steps,
        events=events,
        can_cancel=user.can(Role.operator) and job.state not in TERMINAL,
    )


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: JobId, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.operator)
    checked_form(form, user)
    with _ctx(request).database.session(write=True) as session:
        try:
            job = service.request_cancel(session, job_id, actor=user.actor)
        except service.JobNotFound:
            raise PageError(404, "Not found", f"There is no job {job_id}.") from None
        except service.JobAlreadyFinished as exc:
            raise PageError(409, "Already finished", f"Job {job_id} already {exc.state}.") from None
        audit.record(
            session,
            actor=user.actor,
            action="job.cancel",
            target=f"job:{job_id}",
            outcome="ok",
            detail={"state": job.state},
        )
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
