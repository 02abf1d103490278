"""``/nodes``: the fleet with live status and health, the create form driven by the provider's
catalog, and each node's page (stage timeline, live log, evidence, SSH command, retry and delete,
and the watcher's view: current health, recent checks, daily roll-up, the covering pause)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, load_only

from nodewright import gates, runtime
from nodewright.api.ids import NodeId
from nodewright.api.jobs import SSE_MAX_STREAM_SECONDS, SSE_MEDIA_TYPE, _TicketedStream
from nodewright.api.nodes import node_out
from nodewright.api.routing import OneHopRoute
from nodewright.api.streams import ANY_JOB, StreamHub, StreamTicket
from nodewright.context import AppContext
from nodewright.dashboard.health import HEALTH_FILTERS, badge, pause_title, selector_text, when
from nodewright.dashboard.rendering import (
    PageError,
    PostedForm,
    checked_form,
    render,
    require_page_role,
    require_user,
)
from nodewright.db.models import Job, Node, NodeCheck, ProviderConnection, RemediationBrake
from nodewright.jobs import service as jobs_service
from nodewright.jobs.states import TERMINAL
from nodewright.nodes import service
from nodewright.nodes.names import NAME_PATTERN
from nodewright.nodes.states import PROVISION_STAGES, NodeStatus, Stage
from nodewright.providers import connections
from nodewright.providers.errors import ProviderError
from nodewright.provisioning.profiles import DEFAULT_PROFILE, available_profiles
from nodewright.security.roles import Role
from nodewright.watching import brake, history, remediation
from nodewright.watching import service as watch_service
from nodewright.watching.policy import policy_for

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)
KEEPALIVE_SECONDS = 15.0


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _gate_open(ctx: AppContext) -> bool:
    with ctx.database.session() as session:
        return gates.is_enabled(session, ctx.settings, gates.PROVIDER_CREATE)


def _form_context(ctx: AppContext) -> dict[str, Any]:
    providers = [
        {"id": p.id, "name": p.name, "status": p.status} for p in connections.list_connections(ctx.database)
    ]
    return {
        "providers": providers,
        "profiles": available_profiles(ctx.settings.resolved_profiles_dir),
        "default_profile": DEFAULT_PROFILE,
        "name_pattern": NAME_PATTERN.strip("^$"),
    }


def _list_page(request: Request, status: str | None, health: str | None = None, **extra: Any) -> Response:
    user = require_user(request)
    ctx = _ctx(request)
    status = status or None  # the filter form sends "" for "any"
    health = health or None
    if status is not None and status not in [s.value for s in NodeStatus]:
        raise PageError(422, "Unknown status", f"{status!r} is not a node status.")
    if health is not None and health not in HEALTH_FILTERS:
        raise PageError(
            422, "Unknown health", f"health: {health!r} is not one of {', '.join(HEALTH_FILTERS)}."
        )
    with ctx.database.session() as session:
        page = service.list_nodes(
            session,
            statuses=[status] if status else None,
            node_ids=watch_service.node_ids_with_health(session, {health}) if health else None,
            limit=500,
        )
        views = watch_service.health_of(session, page.items)
        nodes = [node_out(n, views[n.id]) for n in page.items]
        badges = {n.id: badge(n.status, views[n.id]) for n in page.items}
        brakes = [_brake_row(session, row) for row in brake.all_brakes(session) if row.engaged]
    return render(
        request,
        "nodes.html",
        status_code=extra.pop("status_code", 200),
        user=user,
        nodes=nodes,
        badges=badges,
        total=page.total,
        status=status,
        statuses=[s.value for s in NodeStatus],
        health=health,
        health_filters=HEALTH_FILTERS,
        # Engaged fleet brakes (no automatic remediation on those connections), shown loudly.
        brakes=brakes,
        gate_open=_gate_open(ctx),
        can_create=user.can(Role.operator),
        form=extra.pop("form", {}),
        error=extra.pop("error", None),
        **_form_context(ctx),
    )


@router.get("/nodes", response_class=HTMLResponse)
def nodes_page(
    request: Request,
    status: str | None = Query(None, max_length=16),
    health: str | None = Query(None, max_length=16),
) -> Response:
    return _list_page(request, status, health)


@router.post("/nodes")
def create_node(request: Request, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.operator)
    fields = checked_form(form, user)
    ctx = _ctx(request)
    keep = {k: v for k, v in fields.items() if k != "csrf_token"}

    def again(message: str, status_code: int = 422) -> Response:
        return _list_page(request, None, form=keep, error=message, status_code=status_code)

    try:
        provider_id = int(fields.get("provider_id", ""))
    except ValueError:
        return again("Choose a provider connection.")
    labels: dict[str, str] = {}
    for line in fields.get("labels", "").splitlines():
        if line.strip():
            key, sep, value = line.strip().partition("=")
            if not sep:
                return again(f"labels: {line.strip()[:60]!r} must be key=value (one per line).")
            labels[key.strip()] = value.strip()
    keys = tuple(k.strip() for k in fields.get("ssh_authorized_keys", "").splitlines() if k.strip())
    from pydantic import ValidationError

    from nodewright.api.nodes import NodeCreateBody

    try:
        body = NodeCreateBody(
            provider_id=provider_id,
            name=fields.get("name", "").strip(),
            location=fields.get("location", ""),
            server_type=fields.get("server_type", ""),
            image=fields.get("image", ""),
            labels=labels,
            profile=fields.get("profile") or DEFAULT_PROFILE,
            ssh_authorized_keys=list(keys),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        return again(f"{'.'.join(str(p) for p in first['loc']) or 'form'}: {first['msg']}")
    request_ = body.to_request()
    try:
        created = service.create_node(ctx, request_, actor=user.actor)
    except gates.GateClosed:
        return again(
            "Creating nodes is switched off (feature gate provider_create). Reads keep working.", 503
        )
    except service.NodeRequestError as exc:
        return again(f"{exc.field}: {exc.message}", exc.status)
    except ProviderError as error:
        return again(f"{error.code.value}: {error.message}" + (f" {error.hint}" if error.hint else ""), 503)
    return RedirectResponse(f"/nodes/{created.node.id}", status_code=303)


def _timeline(node: Node) -> list[dict[str, Any]]:
    stages = (node.evidence or {}).get("stages") or {}
    failed_here = node.status == NodeStatus.failed.value
    items = []
    for stage in (*PROVISION_STAGES, Stage.release):
        record = stages.get(stage.value) or {}
        if record.get("ok"):
            state = "done"
        elif node.stage == stage.value:
            state = "failed" if failed_here else "current"
        else:
            state = "pending"
        if stage is Stage.release and state == "pending" and node.status != NodeStatus.released.value:
            continue
        if stage is Stage.release and node.status == NodeStatus.released.value:
            state = "done"
        items.append({"name": stage.value, "state": state, "seconds": record.get("seconds")})
    return items


NODE_PAGE_CHECKS = 50
NODE_PAGE_DAYS = 30


def _check_row(check: NodeCheck) -> dict[str, Any]:
    results = [
        {
            "name": str(r.get("name", "")),
            "ok": bool(r.get("ok")),
            "detail": str(r.get("detail", "")),
            "timed_out": bool(r.get("timed_out")),
        }
        for r in (check.results or [])
    ]
    return {
        "id": check.id,
        "at": when(check.at),
        "ok": check.ok,
        "seconds": check.seconds,
        "paused": check.paused,
        "health": check.health,
        "results": results,
    }


def _brake_row(session: Session, row: RemediationBrake) -> dict[str, Any]:
    connection = session.get(ProviderConnection, row.provider_id)
    return {
        "provider_id": row.provider_id,
        "provider": connection.name if connection is not None else f"connection {row.provider_id}",
        "reason": row.reason,
        "engaged_at": when(row.engaged_at),
    }


def _remediation_rows(session: Session, node_id: int) -> list[dict[str, Any]]:
    return [
        {**remediation.as_dict(r), "created_at": when(r.created_at), "finished_at": when(r.finished_at)}
        for r in remediation.history(session, node_id, limit=20)
    ]


def _watch_context(session: Session, node: Node, view: watch_service.HealthView) -> dict[str, Any]:
    """The watcher's part of the node page: health now, recent checks (newest first), daily roll-up
    and the covering pause. Plain values: the template escapes every string."""
    checks = [_check_row(c) for c in history.recent(session, node.id, NODE_PAGE_CHECKS)]
    days = [
        {"day": d.day, "passed": d.passed, "failed": d.failed, "seconds": d.seconds}
        for d in history.days(session, node.id, NODE_PAGE_DAYS)
    ]
    window = view.maintenance
    pause = None
    if window is not None:
        pause = {
            "id": window.id,
            "reason": window.reason,
            "ends_at": when(window.ends_at),
            "starts_at": when(window.starts_at),
            "created_by": window.created_by,
            "target": "this node" if window.node_id is not None else selector_text(window.selector),
            "title": pause_title(window),
        }
    return {
        "badge": badge(node.status, view),
        "view": view,
        "last_check_at": when(view.last_check_at),
        "next_check_at": when(view.next_check_at),
        "failing_since": when(view.failing_since),
        "degraded_since": when(view.degraded_since),
        "checks": checks,
        "strip": list(reversed(checks)),  # oldest first, for the at-a-glance strip
        "days": days,
        "pause": pause,
        "remediations": _remediation_rows(session, node.id),
        "remediation_enabled": policy_for(node.profile, runtime.settings()).remediation.enabled,
        "brake": _brake_row(session, engaged)
        if (engaged := brake.engaged(session, node.provider_id))
        else None,
    }


@router.get("/nodes/live")
def nodes_live(request: Request) -> Response:
    """SSE: the status of every node, sent whenever a job writes an event (the shared change feed)."""
    user = require_user(request)
    ctx = _ctx(request)
    hub: StreamHub = request.app.state.streams
    ticket = hub.open(user_id=user.id, job_id=ANY_JOB, token_id=None, session_id=user.session_id)
    lifetime = SSE_MAX_STREAM_SECONDS * (1 + random.random() / 2)
    return _TicketedStream(
        _node_stream(ctx, hub, ticket, lifetime),
        release=lambda: hub.release(ticket),
        media_type=SSE_MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _snapshot(ctx: AppContext) -> dict[int, dict[str, Any]]:
    """Every node's live fields, health included: the node rows' few columns (not their evidence),
    plus one read of the health rows and one of the active pauses, shared by all streams."""
    columns = (Node.id, Node.status, Node.stage, Node.error_code, Node.ssh_address, Node.server_status)
    with ctx.database.session() as session:
        rows = list(session.scalars(select(Node).options(load_only(*columns, Node.labels))))
        views = watch_service.health_of(session, rows)
        return {
            r.id: {
                "id": r.id,
                "status": r.status,
                "stage": r.stage,
                "error": r.error_code,
                "address": r.ssh_address,
                "server": r.server_status,
                "health": badge(r.status, views[r.id]).as_json(),
            }
            for r in rows
        }


async def _node_stream(
    ctx: AppContext, hub: StreamHub, ticket: StreamTicket, lifetime: float
) -> AsyncIterator[str]:
    ticket.bind()
    hub.ensure_running()
    started = time.monotonic()
    sent: dict[int, dict[str, Any]] = {}
    yield "retry: 2000\n\n"
    read = True
    while time.monotonic() - started < lifetime:
        if ticket.closed:
            yield f"event: end\ndata: {json.dumps({'reason': ticket.closed_reason})}\n\n"
            return
        changed: list[dict[str, Any]] = []
        if read:
            try:
                now = await hub.read(_snapshot, ctx, share="nodes")
            except (OperationalError, InterfaceError):
                return
            changed = [row for node_id, row in now.items() if sent.get(node_id) != row]
            if changed:
                sent = now
        if changed:
            yield f"event: nodes\ndata: {json.dumps(changed, separators=(',', ':'))}\n\n"
        else:
            yield ": keep-alive\n\n"
        remaining = lifetime - (time.monotonic() - started)
        if remaining <= 0:
            return
        woken = await ticket.wait(min(KEEPALIVE_SECONDS, remaining))
        # A quiet interval needs no read while the feed runs: it would have woken this stream.
        read = woken or not hub.feed_running()
        if woken:
            await asyncio.sleep(0.2)  # coalesce a burst of events into one read


@router.get("/nodes/{node_id}", response_class=HTMLResponse)
def node_page(request: Request, node_id: NodeId) -> Response:
    user = require_user(request)
    ctx = _ctx(request)
    with ctx.database.session() as session:
        try:
            node = service.get_node(session, node_id)
        except service.NodeNotFound:
            raise PageError(404, "Not found", f"There is no node {node_id}.") from None
        job = session.get(Job, node.job_id) if node.job_id is not None else None
        events = list(jobs_service.list_events(session, job.id, limit=1000)) if job is not None else []
        view = watch_service.health_of(session, [node])[node.id]
        out = node_out(node, view)
        watch = _watch_context(session, node, view)
        timeline = _timeline(node)
        evidence = json.dumps(node.evidence or {}, indent=2, sort_keys=True)
        job_info = (
            {"id": job.id, "kind": job.kind, "state": job.state, "finished": job.state in TERMINAL}
            if job
            else None
        )
    return render(
        request,
        "node.html",
        user=user,
        node=out,
        timeline=timeline,
        watch=watch,
        evidence=evidence,
        job=job_info,
        events=[
            {"seq": e.seq, "at": e.at, "level": e.level, "type": e.type, "message": e.message} for e in events
        ],
        can_operate=user.can(Role.operator),
        can_retry=out.status == NodeStatus.failed and out.stage != Stage.release.value,
        can_delete=out.status != NodeStatus.released,
    )


@router.post("/nodes/{node_id}/retry")
def retry_node(request: Request, node_id: NodeId, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.operator)
    checked_form(form, user)
    try:
        service.retry_node(_ctx(request), node_id, actor=user.actor)
    except service.NodeNotFound:
        raise PageError(404, "Not found", f"There is no node {node_id}.") from None
    except service.NodeStateConflict as exc:
        raise PageError(409, "Cannot retry", exc.message) from None
    return RedirectResponse(f"/nodes/{node_id}", status_code=303)


@router.post("/nodes/{node_id}/delete")
def delete_node(request: Request, node_id: NodeId, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.operator)
    fields = checked_form(form, user)
    if fields.get("confirm") != "yes":
        raise PageError(422, "Not confirmed", "Tick the box to confirm that the server is to be deleted.")
    try:
        service.release_node(
            _ctx(request), node_id, actor=user.actor, keep_server=fields.get("keep_server") == "yes"
        )
    except service.NodeNotFound:
        raise PageError(404, "Not found", f"There is no node {node_id}.") from None
    except service.NodeStateConflict as exc:
        raise PageError(409, "Cannot delete", exc.message) from None
    return RedirectResponse(f"/nodes/{node_id}", status_code=303)
