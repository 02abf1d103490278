"""``/nodes``: the fleet with live status and health, the create form driven by the provider's
catalog, and each node's page (stage timeline, live log, evidence, SSH command, retry and delete,
and the watcher's view: current health, recent checks, daily roll-up, the covering pause)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

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
from nodewright.dashboard import evidence as evidence_view
from nodewright.dashboard.formatting import money
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
from nodewright.nodes.states import PROVISION_STAGES, RELEASABLE_FROM, RELEASE_KIND, NodeStatus, Stage
from nodewright.providers import connections
from nodewright.providers.errors import ProviderError
from nodewright.provisioning.profiles import DEFAULT_PROFILE, available_profiles
from nodewright.security.roles import Role
from nodewright.watching import brake, history, remediation
from nodewright.watching import service as watch_service
from nodewright.watching.policy import policy_for

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)
KEEPALIVE_SECONDS = 15.0
# The node page's one delete action: the server deleted at the provider, or detached and kept.
DELETE_MODES = ("delete", "detach")
# The create form's first choice when the catalog sells it (the README's examples use it).
DEFAULT_SERVER_TYPE = "cx23"


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _gate_open(ctx: AppContext) -> bool:
    with ctx.database.session() as session:
        return gates.is_enabled(session, ctx.settings, gates.PROVIDER_CREATE)


# The name rule of ``NAME_PATTERN`` as an HTML ``pattern``: browsers compile it with the ``v`` flag,
# where a literal hyphen inside a character class must be escaped (unescaped, the pattern is
# invalid and the browser silently checks nothing).
HTML_NAME_PATTERN = NAME_PATTERN.strip("^$").replace("0-9-]", "0-9\\-]")
NAME_RULE = (
    "Use 1 to 63 lowercase letters, digits and hyphens, starting and ending with a letter or a "
    "digit (for example web-1)."
)
FIELD_SENTENCES = {
    "provider_id": "Choose a provider connection.",
    "name": NAME_RULE,
    "location": "Choose a location from the catalog.",
    "server_type": "Choose a server type from the catalog.",
    "image": "Choose an image from the catalog.",
    "profile": "Choose a profile from the list.",
}
FORM_FIELDS = ("provider_id", "name", "location", "server_type", "image", "profile", "labels")
LIST_LIMIT = 500


def _form_context(ctx: AppContext) -> dict[str, Any]:
    providers = [
        {"id": p.id, "name": p.name, "status": p.status} for p in connections.list_connections(ctx.database)
    ]
    return {
        "providers": providers,
        "profiles": available_profiles(ctx.settings.resolved_profiles_dir),
        "default_profile": DEFAULT_PROFILE,
        "default_server_type": DEFAULT_SERVER_TYPE,
        "name_pattern": HTML_NAME_PATTERN,
        "name_rule": NAME_RULE,
    }


@dataclass(frozen=True)
class NodeFilters:
    """The list's filters, all GET parameters so that a filtered list is a link to share."""

    status: str | None = None
    health: str | None = None
    label: str | None = None
    provider: int | None = None
    location: str | None = None
    q: str | None = None
    released: bool = False

    @property
    def active(self) -> bool:
        return any((self.status, self.health, self.label, self.provider, self.location, self.q))

    @property
    def hides_released(self) -> bool:
        return not self.released and self.status != NodeStatus.released.value

    def params(self, **changes: Any) -> dict[str, str]:
        values = {**self.__dict__, **changes}
        out = {k: str(v) for k, v in values.items() if v not in (None, "", False) and k != "released"}
        if values["released"]:
            out["released"] = "1"
        return out

    def query(self, **changes: Any) -> str:
        return urlencode(self.params(**changes))

    def link(self, **changes: Any) -> str:
        query = self.query(**changes)
        return f"/nodes?{query}" if query else "/nodes"

    def label_pair(self) -> tuple[str, str | None] | None:
        if not self.label:
            return None
        key, sep, value = self.label.partition("=")
        return key.strip(), value.strip() if sep else None


def _filters(
    status: str | None,
    health: str | None,
    label: str | None = None,
    provider: str | None = None,
    location: str | None = None,
    q: str | None = None,
    released: str | None = None,
) -> NodeFilters:
    status = status or None  # the filter form sends "" for "any"
    health = health or None
    if status is not None and status not in [s.value for s in NodeStatus]:
        raise PageError(422, "Unknown status", f"{status!r} is not a node status.")
    if health is not None and health not in HEALTH_FILTERS:
        raise PageError(
            422, "Unknown health", f"health: {health!r} is not one of {', '.join(HEALTH_FILTERS)}."
        )
    provider_id = None
    if provider:
        try:
            provider_id = int(provider)
        except ValueError:
            raise PageError(
                422, "Unknown provider", f"provider: {provider!r} is not a connection id."
            ) from None
    return NodeFilters(
        status=status,
        health=health,
        label=(label or "").strip() or None,
        provider=provider_id,
        location=(location or "").strip() or None,
        q=(q or "").strip() or None,
        released=released in ("1", "true", "yes", "on"),
    )


def _list_nodes(session: Session, filters: NodeFilters, node_ids: list[int] | None = None) -> Any:
    ids: set[int] | None = set(node_ids) if node_ids is not None else None
    if filters.health:
        with_health = watch_service.node_ids_with_health(session, {filters.health})
        ids = set(with_health) if ids is None else ids & set(with_health)
    return service.list_nodes(
        session,
        statuses=[filters.status] if filters.status else None,
        exclude_statuses=[NodeStatus.released.value] if filters.hides_released else None,
        provider_id=filters.provider,
        label=filters.label_pair(),
        location=filters.location,
        name_contains=filters.q,
        node_ids=ids,
        limit=LIST_LIMIT,
    )


def _provider_names(ctx: AppContext) -> dict[int, str]:
    return {row.id: row.name for row in connections.list_connections(ctx.database)}


def _rows_context(
    ctx: AppContext, session: Session, filters: NodeFilters, node_ids: list[int] | None = None
) -> dict[str, Any]:
    page = _list_nodes(session, filters, node_ids)
    views = watch_service.health_of(session, page.items)
    return {
        "nodes": [node_out(n, views[n.id]) for n in page.items],
        "badges": {n.id: badge(n.status, views[n.id]) for n in page.items},
        "provider_names": _provider_names(ctx),
        "total": page.total,
    }


def _list_page(request: Request, filters: NodeFilters, **extra: Any) -> Response:
    user = require_user(request)
    ctx = _ctx(request)
    with ctx.database.session() as session:
        rows = _rows_context(ctx, session, filters)
        brakes = [_brake_row(session, row) for row in brake.all_brakes(session) if row.engaged]
        fleet = service.fleet_summary(session)
        locations = service.node_locations(session)
    form_context = _form_context(ctx)
    return render(
        request,
        "nodes.html",
        status_code=extra.pop("status_code", 200),
        user=user,
        **rows,
        filters=filters,
        status=filters.status,
        health=filters.health,
        statuses=[s.value for s in NodeStatus],
        health_filters=HEALTH_FILTERS,
        locations=locations,
        fleet=fleet,
        fleet_cost=fleet_line(fleet),
        # Engaged fleet brakes (no automatic remediation on those connections), shown loudly.
        brakes=brakes,
        gate_open=_gate_open(ctx),
        can_create=user.can(Role.operator),
        form=extra.pop("form", {}),
        error=extra.pop("error", None),
        field_errors=extra.pop("field_errors", {}),
        **form_context,
    )


@router.get("/nodes", response_class=HTMLResponse)
def nodes_page(
    request: Request,
    status: str | None = Query(None, max_length=16),
    health: str | None = Query(None, max_length=16),
    label: str | None = Query(None, max_length=200),
    provider: str | None = Query(None, max_length=12),
    location: str | None = Query(None, max_length=64),
    q: str | None = Query(None, max_length=63),
    released: str | None = Query(None, max_length=5),
) -> Response:
    return _list_page(request, _filters(status, health, label, provider, location, q, released))


@router.get("/nodes/rows", response_class=HTMLResponse)
def node_rows(
    request: Request,
    ids: str = Query("", max_length=8000),
    status: str | None = Query(None, max_length=16),
    health: str | None = Query(None, max_length=16),
    label: str | None = Query(None, max_length=200),
    provider: str | None = Query(None, max_length=12),
    location: str | None = Query(None, max_length=64),
    q: str | None = Query(None, max_length=63),
    released: str | None = Query(None, max_length=5),
) -> Response:
    """The list's rows of these nodes that match the filters: the live list asks for the rows of
    nodes it has not shown yet (created elsewhere, by the API or the CLI) and inserts them."""
    user = require_user(request)
    filters = _filters(status, health, label, provider, location, q, released)
    try:
        wanted = [int(part) for part in ids.split(",") if part.strip()][:LIST_LIMIT]
    except ValueError:
        raise PageError(422, "Invalid input", "ids: a comma-separated list of node ids.") from None
    ctx = _ctx(request)
    with ctx.database.session() as session:
        rows = _rows_context(ctx, session, filters, wanted)
    return render(request, "node_rows.html", user=user, **rows)


def _field_sentence(field: str, message: str) -> str:
    if field in FIELD_SENTENCES and field not in ("labels",):
        return FIELD_SENTENCES[field]
    text = message.removeprefix("Value error, ")
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


@router.post("/nodes")
def create_node(request: Request, form: PostedForm) -> Response:
    user = require_user(request)
    require_page_role(user, Role.operator)
    fields = checked_form(form, user)
    ctx = _ctx(request)
    keep = {k: v for k, v in fields.items() if k != "csrf_token"}

    def again(message: str, status_code: int = 422, field: str | None = None) -> Response:
        if field in FORM_FIELDS or field == "ssh_authorized_keys":
            assert field is not None
            return _list_page(
                request,
                NodeFilters(),
                form=keep,
                error="The node was not created: see the marked field.",
                field_errors={field: message},
                status_code=status_code,
            )
        return _list_page(request, NodeFilters(), form=keep, error=message, status_code=status_code)

    try:
        provider_id = int(fields.get("provider_id", ""))
    except ValueError:
        return again(FIELD_SENTENCES["provider_id"], field="provider_id")
    labels: dict[str, str] = {}
    for line in fields.get("labels", "").splitlines():
        if line.strip():
            key, sep, value = line.strip().partition("=")
            if not sep:
                return again(
                    f"Write each label as key=value, one per line ({line.strip()[:60]!r} has no =).",
                    field="labels",
                )
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
        field = str(first["loc"][0]) if first["loc"] else "form"
        return again(_field_sentence(field, str(first["msg"])), field=field)
    request_ = body.to_request()
    try:
        created = service.create_node(ctx, request_, actor=user.actor)
    except gates.GateClosed:
        return again(
            "Creating nodes is switched off (feature gate provider_create). Reads keep working.", 503
        )
    except service.NodeRequestError as exc:
        return again(_field_sentence("", exc.message), exc.status, field=exc.field)
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
        "moment": check.at,
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
        {**remediation.as_dict(r), "created_at": r.created_at, "finished_at": r.finished_at}
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
        "last_check_at": view.last_check_at,
        "next_check_at": view.next_check_at,
        "failing_since": view.failing_since,
        "degraded_since": view.degraded_since,
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


def fleet_line(fleet: service.FleetSummary) -> dict[str, str]:
    """The list's fleet cost line, as the page renders it and the live list updates it (text only)."""
    plural = "" if fleet.live == 1 else "s"
    unpriced = f", {fleet.unpriced} without a known price" if fleet.unpriced else ""
    return {
        "monthly": money(fleet.monthly),
        "detail": f"(gross, {fleet.live} node{plural} not released{unpriced})",
    }


def _fleet(ctx: AppContext) -> dict[str, str]:
    with ctx.database.session() as session:
        return fleet_line(service.fleet_summary(session))


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
                "address": None
                if r.status in (NodeStatus.released.value, NodeStatus.lost.value)
                else r.ssh_address,
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
    fleet_sent: dict[str, str] = {}
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
                # The fleet's cost follows its nodes (created, released, priced): sent when it moves.
                try:
                    fleet = await hub.read(_fleet, ctx, share="nodes")
                except (OperationalError, InterfaceError):
                    return
                if fleet != fleet_sent:
                    yield f"event: fleet\ndata: {json.dumps(fleet, separators=(',', ':'))}\n\n"
                fleet_sent = fleet
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
        evidence = evidence_view.sections(node.evidence)
        evidence_json = json.dumps(node.evidence or {}, indent=2, sort_keys=True)
        connection = session.get(ProviderConnection, node.provider_id)
        provider = {
            "id": node.provider_id,
            "name": connection.name if connection is not None else f"connection {node.provider_id}",
        }
        job_info = (
            {"id": job.id, "kind": job.kind, "state": job.state, "finished": job.state in TERMINAL}
            if job
            else None
        )
    released = out.status == NodeStatus.released
    # A release asked for and not finished yet: nothing more to delete (the page shows its log).
    releasing = job_info is not None and job_info["kind"] == RELEASE_KIND and not job_info["finished"]
    return render(
        request,
        "node.html",
        user=user,
        node=out,
        provider=provider,
        released=released,
        timeline=timeline,
        watch=watch,
        evidence=evidence,
        evidence_json=evidence_json,
        job=job_info,
        events=[
            {"seq": e.seq, "at": e.at, "level": e.level, "type": e.type, "message": e.message} for e in events
        ],
        can_operate=user.can(Role.operator),
        can_retry=out.status == NodeStatus.failed and out.stage != Stage.release.value,
        can_delete=out.status in RELEASABLE_FROM and not releasing,
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
    mode = fields.get("mode")
    if mode not in DELETE_MODES:
        raise PageError(
            422,
            "Not confirmed",
            "Choose what happens to the server: delete it at the provider, or detach it and keep it.",
        )
    try:
        service.release_node(_ctx(request), node_id, actor=user.actor, keep_server=mode == "detach")
    except service.NodeNotFound:
        raise PageError(404, "Not found", f"There is no node {node_id}.") from None
    except service.NodeStateConflict as exc:
        raise PageError(409, "Cannot delete", exc.message) from None
    return RedirectResponse(f"/nodes/{node_id}", status_code=303)
