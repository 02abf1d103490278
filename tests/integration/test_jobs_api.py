"""/api/jobs through the real app: list with filters, detail with steps, events as JSON pages and as a
resumable Server-Sent Events stream, and cancel (role-checked, audited)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select

from nodewright.api.jobs import SSE_MAX_STREAM_SECONDS, event_stream
from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db.models import AuditEvent
from nodewright.jobs import service
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.worker import WorkerPool
from nodewright.security.roles import Role
from tests.support.apps import RoleUser
from tests.support.job_handlers import REGISTRY, create_test_tables
from tests.support.jobs import run_next, wait_for_state, wait_until
from tests.support.live_server import free_port


@pytest.fixture
def ctx(app_context: AppContext) -> AppContext:
    create_test_tables(app_context.database)
    return app_context


def _enqueue(ctx: AppContext, kind: str, args: dict[str, object] | None = None, **kw: object) -> int:
    with ctx.database.session() as session:
        return enqueue(session, kind, args or {}, registry=REGISTRY, **kw).id  # type: ignore[arg-type]


def _sse_frames(body: str) -> list[dict[str, str]]:
    frames = []
    for block in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.lstrip(" ")
        if "id" in fields:
            frames.append(fields)
    return frames


def test_list_filters_and_paginates(
    ctx: AppContext, client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    viewer = role_users[Role.viewer].headers
    ids = [_enqueue(ctx, "test.noop", resource_key=f"node:{i % 2}") for i in range(5)]
    _enqueue(ctx, "test.steps")
    page = client.get("/api/jobs", headers=viewer, params={"kind": "test.noop", "limit": 2}).json()
    assert page["total"] == 5 and [j["id"] for j in page["items"]] == ids[::-1][:2]
    page2 = client.get(
        "/api/jobs", headers=viewer, params={"kind": "test.noop", "limit": 2, "offset": 2}
    ).json()
    assert [j["id"] for j in page2["items"]] == ids[::-1][2:4]
    by_key = client.get("/api/jobs", headers=viewer, params={"resource_key": "node:1"}).json()
    assert {j["id"] for j in by_key["items"]} == {ids[1], ids[3]}
    by_state = client.get("/api/jobs", headers=viewer, params=[("state", "queued"), ("state", "running")])
    assert by_state.json()["total"] == 6
    bad = client.get("/api/jobs", headers=viewer, params={"state": "bogus"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


def test_detail_shows_steps_result_and_error(
    ctx: AppContext, client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    viewer = role_users[Role.viewer].headers
    ok = _enqueue(ctx, "test.steps")
    bad = _enqueue(ctx, "test.fail", {"code": "quota_exceeded", "retryable": False, "hint": "raise it"})
    run_next(ctx.database)
    run_next(ctx.database)
    detail = client.get(f"/api/jobs/{ok}", headers=viewer).json()
    assert detail["state"] == "succeeded"
    assert [s["name"] for s in detail["steps"]] == ["one", "two"]
    assert detail["steps"][0]["output"] == {"server_id": 1000 + ok, "attempt": 1}
    failed = client.get(f"/api/jobs/{bad}", headers=viewer).json()
    assert failed["state"] == "failed"
    assert failed["error"]["code"] == "quota_exceeded" and failed["error"]["hint"] == "raise it"
    missing = client.get("/api/jobs/999999", headers=viewer)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_events_page_after_seq(ctx: AppContext, client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    viewer = role_users[Role.viewer].headers
    job_id = _enqueue(ctx, "test.steps")
    run_next(ctx.database)
    everything = client.get(f"/api/jobs/{job_id}/events", headers=viewer).json()
    seqs = [e["seq"] for e in everything["items"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert everything["finished"] is True and everything["job_state"] == "succeeded"
    tail = client.get(f"/api/jobs/{job_id}/events", headers=viewer, params={"after": 3}).json()
    assert [e["seq"] for e in tail["items"]] == seqs[3:]
    assert tail["next_after"] == seqs[-1]


def test_sse_stream_resumes_after_last_event_id(
    ctx: AppContext, client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    headers = {**role_users[Role.viewer].headers, "Accept": "text/event-stream"}
    job_id = _enqueue(ctx, "test.steps")
    run_next(ctx.database)
    full = client.get(f"/api/jobs/{job_id}/events", headers=headers)
    assert full.headers["content-type"].startswith("text/event-stream")
    frames = _sse_frames(full.text)
    ids = [int(f["id"]) for f in frames]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) >= 6
    assert frames[0]["event"] == "state" and json.loads(frames[0]["data"])["message"] == "queued"
    assert json.loads(frames[-1]["data"])["message"] == "succeeded"

    resumed = client.get(f"/api/jobs/{job_id}/events", headers={**headers, "Last-Event-ID": "4"})
    resumed_frames = _sse_frames(resumed.text)
    assert [int(f["id"]) for f in resumed_frames] == ids[4:]
    assert [f["data"] for f in resumed_frames] == [f["data"] for f in frames[4:]]
    bad = client.get(f"/api/jobs/{job_id}/events", headers={**headers, "Last-Event-ID": "x"})
    assert bad.status_code == 400
    # So are digits beyond any seq (or beyond a 64-bit integer) and digits int() refuses ("²").
    for accept in ("text/event-stream", "application/json"):
        for value in ("99999999999999999999", "2147483648", "\u00b2"):
            refused = client.get(
                f"/api/jobs/{job_id}/events",
                headers={**headers, "Accept": accept, "Last-Event-ID": value.encode("latin-1")},
            )
            assert refused.status_code == 400, (value, refused.text)
            assert refused.json()["code"] == "invalid_last_event_id"


@pytest.fixture
def pool(ctx: AppContext) -> Iterator[WorkerPool]:
    # A short lease: the pool renews and sweeps several times a second while requests authenticate.
    workers = WorkerPool(ctx.database, concurrency=1, registry=REGISTRY, lease_seconds=1.0, poll_interval=0.1)
    workers.start()
    try:
        yield workers
    finally:
        workers.stop(timeout=5.0)


def test_sse_follows_a_running_job_live_until_it_finishes(
    ctx: AppContext, client: TestClient, role_users: dict[Role, RoleUser], pool: WorkerPool, tmp_path: object
) -> None:
    headers = {**role_users[Role.viewer].headers, "Accept": "text/event-stream"}
    from pathlib import Path

    marker = Path(str(tmp_path)) / "blocked"
    job_id = _enqueue(ctx, "test.steps", {"block_attempt": 1, "marker": str(marker), "block_seconds": 1.0})
    wait_until(marker.exists, what="the job to be inside step two")
    seen: list[dict[str, str]] = []
    with client.stream("GET", f"/api/jobs/{job_id}/events", headers=headers) as response:
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            seen = _sse_frames(buffer)
    messages = [json.loads(f["data"])["message"] for f in seen]
    assert messages[0] == "queued" and messages[-1] == "succeeded"
    assert "step two started" in messages and "step two completed" in messages
    assert [int(f["id"]) for f in seen] == list(range(1, len(seen) + 1))


def test_cancel_needs_operator_is_audited_and_refuses_finished_jobs(
    ctx: AppContext, client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    job_id = _enqueue(ctx, "test.noop")
    denied = client.post(f"/api/jobs/{job_id}/cancel", headers=role_users[Role.viewer].headers)
    assert denied.status_code == 403
    operator = role_users[Role.operator].headers
    canceled = client.post(f"/api/jobs/{job_id}/cancel", headers=operator)
    assert canceled.status_code == 200 and canceled.json()["state"] == "canceled"
    again = client.post(f"/api/jobs/{job_id}/cancel", headers=operator)
    assert again.status_code == 409 and again.json()["code"] == "job_finished"
    assert client.post("/api/jobs/424242/cancel", headers=operator).status_code == 404
    with ctx.database.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == "job.cancel")).all()
        assert [(r.target, r.outcome, r.actor) for r in rows] == [
            (f"job:{job_id}", "ok", "user:operator-user/token:operator-token")
        ]


def test_cancel_of_a_running_job_through_the_api(
    ctx: AppContext, client: TestClient, role_users: dict[Role, RoleUser], pool: WorkerPool, tmp_path: object
) -> None:
    from pathlib import Path

    marker = Path(str(tmp_path)) / "running"
    job_id = _enqueue(ctx, "test.wait_cancel", {"marker": str(marker)})
    wait_until(marker.exists, what="the job to start")
    response = client.post(f"/api/jobs/{job_id}/cancel", headers=role_users[Role.operator].headers)
    assert response.status_code == 200 and response.json()["state"] in ("canceling", "canceled")
    assert wait_for_state(ctx.database, job_id, "canceled", "succeeded", "failed").state == "canceled"


def test_metrics_report_queue_depth(ctx: AppContext, client: TestClient) -> None:
    _enqueue(ctx, "test.noop")
    body = client.get("/metrics").text
    assert 'nodewright_jobs{state="queued"} 1.0' in body
    assert "nodewright_job_claim_latency_seconds" in body


def test_sse_stream_of_an_unfinished_job_ends_after_its_time_and_resumes_losslessly(ctx: AppContext) -> None:
    """A stream for a job that will not finish soon still ends (the client resumes with
    Last-Event-ID), so it cannot hold a server's graceful shutdown forever."""
    job_id = _enqueue(ctx, "nobody.runs.this.kind")  # stays queued: no worker knows the kind

    async def follow(after: int) -> list[dict[str, str]]:
        frames = [
            f async for f in event_stream(ctx.database, job_id, after, poll_seconds=0.05, max_seconds=0.5)
        ]
        return _sse_frames("".join(frames))

    first = asyncio.run(follow(0))
    assert [json.loads(f["data"])["message"] for f in first] == ["queued"]
    with ctx.database.session(write=True) as session:
        service.request_cancel(session, job_id, actor="user:test")
    resumed = asyncio.run(follow(int(first[-1]["id"])))
    assert [(int(f["id"]), json.loads(f["data"])["message"]) for f in resumed] == [
        (2, "canceled by user:test")
    ]


@pytest.mark.db_only("sqlite", reason="HTTP server behaviour; one database is enough")
def test_server_shutdown_is_not_held_by_an_open_event_stream(
    ctx: AppContext, settings: Settings, role_users: dict[Role, RoleUser], db_kind: str
) -> None:
    job_id = _enqueue(ctx, "nobody.runs.this.kind")
    app = create_app(settings, ctx=ctx, start_workers=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    received: list[str] = []

    def follow() -> None:
        headers = {**role_users[Role.viewer].headers, "Accept": "text/event-stream"}
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/api/jobs/{job_id}/events", headers=headers, timeout=120
        ) as response:
            received.extend(response.iter_text())

    follower = threading.Thread(target=follow, daemon=True)
    try:
        wait_until(lambda: server.started or not serving.is_alive(), what="the server to start")
        follower.start()
        wait_until(lambda: "queued" in "".join(received), what="the stream to deliver the first event")
        server.should_exit = True
        wait_until(
            lambda: not serving.is_alive(), timeout=SSE_MAX_STREAM_SECONDS + 30, what="the server to stop"
        )
    finally:
        server.force_exit = server.should_exit = True
        serving.join(10)
        follower.join(10)
    assert not serving.is_alive()
