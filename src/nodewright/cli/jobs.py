"""``nodewright jobs ...``: the durable jobs every mutation runs as, over the HTTP API."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiClient, ApiError
from nodewright.cli.errors import die, say
from nodewright.cli.options import JsonOption, TokenFile, UrlOption, client, filters
from nodewright.cli.output import OutputOption, emit, parse, table
from nodewright.cli.times import absolute, relative
from nodewright.security.text import clean_line, for_terminal

jobs_app = typer.Typer(help="Jobs: list, show, follow their logs, cancel.", no_args_is_help=True)
JobArg = Annotated[int, typer.Argument(help="Job id.", min=1)]
PAGE = 500
EXIT_DETACHED = 130  # Ctrl-C: the conventional status of an interrupted command; the job goes on


def detached(command: str) -> typer.Exit:
    """Ctrl-C while following: nothing is cancelled; say how to come back."""
    say(f"\ndetached; the work goes on. Reattach with `{command}`", err=True)
    return typer.Exit(EXIT_DETACHED)


def _progress(job: dict[str, Any]) -> str:
    """What a job is doing or waiting for, in words (a queued retry says when it runs)."""
    state = str(job["state"])
    if state in ("queued", "retrying"):
        when = relative(job.get("run_after"))
        return f"{state}, runs {when}" if when.startswith("in ") else f"{state}, waiting for a worker"
    if state == "running" and job.get("cancel_requested_at"):
        return "running, cancel requested"
    return state


def _row(job: dict[str, Any]) -> list[str]:
    error = job.get("error") or {}
    return [str(job["id"]), job["kind"], _progress(job), f"{job['attempt']}/{job['max_attempts']}",
            job.get("resource_key") or "-", relative(job.get("created_at")),
            clean_line(str(error.get("code") or ""))]  # fmt: skip


@jobs_app.command("list")
def jobs_list(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only these states (repeatable).")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind, e.g. nodes.provision.")] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", help="Only this resource, e.g. node:12.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="How many jobs.")] = 50,
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """Jobs, newest first."""
    shape = parse(output, as_json=as_json)
    params: dict[str, Any] = {"limit": limit, **filters({"kind": kind, "resource": resource})}
    if "resource" in params:
        params["resource_key"] = params.pop("resource")
    if state:
        params["state"] = state
    try:
        with client(url, token_file) as api:
            page = api.get("/api/jobs", params=params)
    except ApiError as exc:
        die(exc)
    if emit(page, shape):
        return
    header = ["ID", "KIND", "STATE", "ATTEMPT", "RESOURCE", "CREATED", "ERROR"]
    table(header, [_row(j) for j in page["items"]], colour=(2,))
    say(f"{len(page['items'])} of {page['total']} job(s)")


@jobs_app.command("show")
def jobs_show(
    job_id: JobArg, url: UrlOption = None, token_file: TokenFile = None, as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:  # fmt: skip
    """A job: state, attempts, error and hint, its completed steps."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            job = api.get(f"/api/jobs/{job_id}")
    except ApiError as exc:
        die(exc)
    if emit(job, shape):
        return
    kind, progress = clean_line(str(job["kind"])), clean_line(_progress(job))
    say(f"job {job['id']} {kind}: {progress} (attempt {job['attempt']}/{job['max_attempts']})")
    resource, by = (
        clean_line(str(job.get("resource_key") or "-")),
        clean_line(str(job.get("created_by") or "-")),
    )
    say(f"  resource {resource}, by {by}, "
        f"created {absolute(job['created_at'])} ({relative(job['created_at'])})")  # fmt: skip
    if job.get("finished_at"):
        say(f"  finished {absolute(job['finished_at'])} ({relative(job['finished_at'])})")
    error = job.get("error")
    if error:
        message = for_terminal(str(error.get("message") or ""), "    ")
        say(f"  error {clean_line(str(error['code']))}: {message}")
        if error.get("hint"):
            say(f"  hint: {for_terminal(str(error['hint']), '    ')}")
    for step in job.get("steps") or []:
        done = relative(step["completed_at"])
        say(f"  step {clean_line(str(step['name']))} (attempt {step['attempt']}) done {done}")


def event_page(api: ApiClient, job_id: int, after: int) -> tuple[dict[str, Any], int]:
    """One page of the job's events after ``after``, and where the next page starts. A server whose
    pages do not move on is refused (a caller reading every page would loop on it)."""
    page: dict[str, Any] = api.get(f"/api/jobs/{job_id}/events", params={"after": after, "limit": PAGE})
    following = page.get("next_after")
    if page["items"] and (
        not isinstance(following, int) or isinstance(following, bool) or following <= after
    ):
        raise ApiError(
            "the server's event pages do not move on (next_after); is --url a nodewright server?",
            status=200,
            foreign=True,
        )
    return page, following if isinstance(following, int) else after


def read_events(api: ApiClient, job_id: int, *, most: int = 50_000) -> list[dict[str, Any]]:
    """Every event of the job as it stands (the first ``most``: a runaway log stays bounded)."""
    events: list[dict[str, Any]] = []
    after = 0
    while len(events) < most:
        page, after = event_page(api, job_id, after)
        events.extend(page["items"])
        if len(page["items"]) < PAGE:
            break
    return events[:most]


def print_events(api: ApiClient, job_id: int, *, follow: bool, after: int = 0) -> dict[str, Any]:
    """Print the job's events after ``after``, every page of them; with ``follow`` until the job is
    finished. Returns the last page (its ``job_state``)."""
    while True:
        page, after = event_page(api, job_id, after)
        items = page["items"]
        for event in items:
            level = "" if event["level"] == "info" else f" {clean_line(str(event['level'])).upper()}"
            say(f"{absolute(event['at'])[11:19]}{level} {for_terminal(str(event['message']), '         ')}")
        if len(items) >= PAGE:
            continue  # more are there now
        if not follow or page["finished"]:
            return page
        time.sleep(1.0)


@jobs_app.command("logs")
def jobs_logs(
    job_id: JobArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job is done.")
    ] = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """A job's log; --follow streams it live (Ctrl-C detaches, the job goes on)."""
    try:
        with client(url, token_file) as api:
            page = print_events(api, job_id, follow=follow)
    except ApiError as exc:
        die(exc)
    except KeyboardInterrupt:
        raise detached(f"nodewright jobs logs {job_id} --follow") from None
    if follow:
        unless_succeeded(job_id, page)


def unless_succeeded(job_id: object, page: dict[str, Any]) -> None:
    """After a followed log: a job that did not succeed says how it ended and exits 1."""
    if page["job_state"] != "succeeded":
        say(f"job {clean_line(str(job_id))} {clean_line(str(page['job_state']))}", err=True)
        raise typer.Exit(1)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: JobArg, url: UrlOption = None, token_file: TokenFile = None, as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:  # fmt: skip
    """Cancel a job: at once if it waits, at its next step boundary if it runs."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            job = api.post(f"/api/jobs/{job_id}/cancel")
    except ApiError as exc:
        die(exc)
    if not emit(job, shape):
        say(f"job {job_id}: {_progress(job)}" + ("" if job["state"] == "canceled" else " (cancel requested)"))
