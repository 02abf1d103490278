"""Create, list, read, release and retry nodes: what the API, the dashboard and the CLI call.

Creating a node checks everything that can be checked before a server costs money (gate, contract,
provider connection, catalog pre-flight, profile), then writes the node and its ``node_provision``
job in ONE transaction: intent first, no provider call until it has committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nodewright import gates
from nodewright.context import AppContext
from nodewright.db.models import Job, Node, ProviderConnection
from nodewright.jobs import service as jobs_service
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.states import TERMINAL
from nodewright.nodes import idempotency
from nodewright.nodes.idempotency import CallerKey
from nodewright.nodes.states import (
    CONTRACT_PROVIDER_V1,
    IN_PROGRESS,
    PROVISION_KIND,
    RELEASABLE_FROM,
    RELEASE_KIND,
    REMEDIATE_KIND,
    RETRYABLE_FROM,
    NodeStatus,
    Stage,
    resource_key,
)
from nodewright.providers.acquisition import preflight
from nodewright.providers.connections import get_catalog, register_usage_counter
from nodewright.providers.errors import ErrorCode, ProviderError
from nodewright.provisioning.profiles import DEFAULT_PROFILE, ProfileError, get_profile
from nodewright.security import audit


class NodeRequestError(ValueError):
    """Bad input that names its field (422), or a conflict (409)."""

    def __init__(self, field: str, message: str, *, status: int = 422, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status
        self.code = code


class NodeNotFound(LookupError):
    pass


class NodeStateConflict(Exception):
    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node_id = node.id
        self.status = node.status
        self.message = message


@dataclass(frozen=True)
class NodeCreate:
    provider_id: int
    name: str
    location: str
    server_type: str
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    profile: str = DEFAULT_PROFILE
    ssh_authorized_keys: tuple[str, ...] = ()
    contract: str = CONTRACT_PROVIDER_V1

    def digest(self) -> str:
        body = asdict(self)
        body["labels"] = dict(sorted(self.labels.items()))
        body["ssh_authorized_keys"] = list(self.ssh_authorized_keys)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Created:
    node: Node
    job: Job
    replayed: bool  # an Idempotency-Key seen before: the original node and job


def _replay(session: Session, caller_key: CallerKey, digest: str) -> Created | None:
    held = idempotency.live(session, caller_key)
    if held is None:
        return None
    if held.request_digest != digest:
        raise NodeRequestError(
            "Idempotency-Key",
            "this key was used with a different request body; use a new key for a new request",
            status=409,
            code="idempotency_conflict",
        )
    node = session.get(Node, held.node_id)
    job = session.get(Job, node.job_id) if node is not None and node.job_id is not None else None
    assert node is not None and job is not None
    return Created(node, job, replayed=True)


def _price(view_catalog: Any, server_type: str, location: str) -> tuple[str | None, str | None]:
    for st in view_catalog.server_types:
        if st.name == server_type:
            for price in st.prices:
                if price.location == location:
                    return price.hourly_gross, price.monthly_gross
    return None, None


def create_node(
    app: AppContext, request: NodeCreate, *, actor: str, idempotency_key: CallerKey | None = None
) -> Created:
    """Validate, then write the node and its provisioning job together. Raises ``GateClosed``,
    ``NodeRequestError`` (field errors, 409 conflicts) or ``ProviderError`` (catalog unreachable
    and no copy to check against). ``idempotency_key`` is the caller's key (see ``idempotency``)."""
    digest = request.digest()
    database, settings = app.database, app.settings
    with database.session() as session:
        if idempotency_key is not None:
            # First: a retry of a request that was accepted gets its answer even if the gate has
            # been switched off since (it creates nothing; the node exists and is on its way).
            replay = _replay(session, idempotency_key, digest)
            if replay is not None:
                return replay
        gates.require_enabled(session, settings, gates.PROVIDER_CREATE)
        if request.contract not in settings.node_contracts:
            raise NodeRequestError(
                "contract",
                f"contract {request.contract!r} is not accepted here (accepted: "
                f"{', '.join(settings.node_contracts)})",
            )
        if session.get(ProviderConnection, request.provider_id) is None:
            raise NodeRequestError("provider_id", f"no provider connection {request.provider_id}")
        taken = session.scalar(
            select(Node.id).where(Node.name == request.name, Node.status != NodeStatus.released.value)
        )
        if taken is not None:
            if idempotency_key is not None:
                # A retry with this key may have committed since the lookup above: answer as it did.
                replay = _replay(session, idempotency_key, digest)
                if replay is not None:
                    return replay
            raise NodeRequestError(
                "name", f"a node named {request.name!r} exists", status=409, code="conflict"
            )
    try:
        get_profile(request.profile, settings.resolved_profiles_dir)
    except ProfileError as exc:
        raise NodeRequestError("profile", str(exc)) from None
    view = get_catalog(database, app.box, request.provider_id)
    if request.image.isdigit() and not any(i.name == request.image for i in view.catalog.images):
        # A snapshot's id, perhaps made since the catalog was read (a snapshot job runs elsewhere).
        view = get_catalog(database, app.box, request.provider_id, max_age=10.0)
    try:
        preflight(view.catalog, request.location, request.server_type, request.image)
    except ProviderError as error:
        if error.code in (ErrorCode.invalid_combination, ErrorCode.capacity_unavailable) and error.field:
            raise NodeRequestError(error.field, error.message, code=error.code.value) from None
        raise
    hourly, monthly = _price(view.catalog, request.server_type, request.location)
    try:
        with database.session(write=True) as session:
            # Checked again inside the write: a gate switched off a moment ago wins.
            gates.require_enabled(session, settings, gates.PROVIDER_CREATE)
            node = Node(
                name=request.name,
                contract=request.contract,
                provider_id=request.provider_id,
                location=request.location,
                server_type=request.server_type,
                image=request.image,
                labels=dict(request.labels),
                profile=request.profile,
                ssh_authorized_keys=list(request.ssh_authorized_keys),
                status=NodeStatus.pending.value,
                stage=Stage.acquire.value,
                price_hourly=hourly,
                price_monthly=monthly,
                evidence={},
                request_digest=digest,
                created_by=actor[:128],
            )
            session.add(node)
            session.flush()
            job = enqueue(
                session,
                PROVISION_KIND,
                {"node_id": node.id},
                resource_key=resource_key(node.id),
                created_by=actor,
            )
            node.job_id = job.id
            if idempotency_key is not None:
                idempotency.claim(session, idempotency_key, node_id=node.id, digest=digest)
            audit.record(
                session,
                actor=actor,
                action="node.create",
                target=f"node:{node.id}",
                outcome="ok",
                detail={"name": node.name, "provider_id": node.provider_id, "job_id": job.id},
            )
            session.flush()
            session.expunge_all()
            return Created(node, job, replayed=False)
    except IntegrityError:
        # A concurrent create won the name or the idempotency key: answer as it would have.
        with database.session() as session:
            if idempotency_key is not None:
                replay = _replay(session, idempotency_key, digest)
                if replay is not None:
                    return replay
        raise NodeRequestError(
            "name", f"a node named {request.name!r} exists", status=409, code="conflict"
        ) from None


@dataclass(frozen=True)
class NodePage:
    items: list[Node]
    total: int


def list_nodes(
    session: Session,
    *,
    statuses: Sequence[str] | None = None,
    provider_id: int | None = None,
    label: tuple[str, str | None] | None = None,
    name: str | None = None,
    node_ids: Collection[int] | None = None,
    limit: int = 50,
    offset: int = 0,
    location: str | None = None,
    name_contains: str | None = None,
    exclude_statuses: Sequence[str] | None = None,
) -> NodePage:
    conditions: list[ColumnElement[bool]] = []
    if node_ids is not None:
        conditions.append(Node.id.in_(list(node_ids)))
    if statuses:
        conditions.append(Node.status.in_(list(statuses)))
    if exclude_statuses:
        conditions.append(Node.status.not_in(list(exclude_statuses)))
    if location is not None:
        conditions.append(Node.location == location)
    if name_contains:
        # A search box: a substring of the name, case-insensitive, wildcards taken literally.
        escaped = name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(Node.name.ilike(f"%{escaped}%", escape="\\"))
    if provider_id is not None:
        conditions.append(Node.provider_id == provider_id)
    if name is not None:
        conditions.append(Node.name == name)
    rows = list(session.scalars(select(Node).where(*conditions).order_by(Node.id.desc())))
    if label is not None:
        # Labels are JSON: filtered here, portable across SQLite and PostgreSQL (a fleet is small).
        key, value = label
        rows = [n for n in rows if key in n.labels and (value is None or n.labels[key] == value)]
    total = (
        len(rows)
        if label is not None
        else int(session.scalar(select(func.count()).select_from(Node).where(*conditions)) or 0)
    )
    return NodePage(rows[offset : offset + limit], total)


@dataclass(frozen=True)
class FleetSummary:
    """What the fleet holds and costs: every node that is not released holds (or may hold) a
    server, billed by the provider. ``monthly`` sums the known gross monthly prices."""

    live: int
    released: int
    by_status: dict[str, int]
    monthly: Decimal
    unpriced: int


def fleet_summary(session: Session) -> FleetSummary:
    rows = session.execute(
        select(Node.status, Node.price_monthly).where(Node.status != NodeStatus.released.value)
    ).all()
    by_status: dict[str, int] = {}
    monthly = Decimal(0)
    unpriced = 0
    for status, price in rows:
        by_status[status] = by_status.get(status, 0) + 1
        try:
            monthly += Decimal(price) if price else Decimal(0)
            unpriced += 0 if price else 1
        except InvalidOperation:
            unpriced += 1
    released = int(
        session.scalar(select(func.count(Node.id)).where(Node.status == NodeStatus.released.value)) or 0
    )
    return FleetSummary(len(rows), released, by_status, monthly, unpriced)


def node_locations(session: Session) -> list[str]:
    """The locations the fleet's nodes are in (for the list's location filter)."""
    return sorted(set(session.scalars(select(Node.location).distinct())))


def get_node(session: Session, node_id: int) -> Node:
    node = session.get(Node, node_id)
    if node is None:
        raise NodeNotFound(node_id)
    return node


def count_nodes_using(session: Session, connection_id: int) -> int:
    """Nodes that still hold (or may hold) a server of this connection."""
    return int(
        session.scalar(
            select(func.count(Node.id)).where(
                Node.provider_id == connection_id, Node.status != NodeStatus.released.value
            )
        )
        or 0
    )


def start_node_job(
    session: Session,
    node: Node,
    kind: str,
    args: dict[str, Any],
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Job:
    """Enqueue the node's next job (one pending job per node and kind), make it the node's current
    job, and audit the request, all in the caller's transaction."""
    job = enqueue(
        session,
        kind,
        {"node_id": node.id, **args},
        resource_key=resource_key(node.id),
        dedup_key=f"{kind}:{node.id}",
        created_by=actor,
    )
    node.job_id = job.id
    audit.record(
        session,
        actor=actor,
        action=action,
        target=target or f"node:{node.id}",
        outcome="ok",
        detail={**(detail or {}), "job_id": job.id},
    )
    return job


def release_node(app: AppContext, node_id: int, *, actor: str, keep_server: bool = False) -> tuple[Node, Job]:
    """Enqueue ``node_release``; a provisioning job still running is asked to cancel first (the
    release runs once it has stopped: both hold the node's resource key)."""
    with app.database.session(write=True) as session:
        node = get_node(session, node_id)
        if NodeStatus(node.status) not in RELEASABLE_FROM:
            raise NodeStateConflict(node, f"node {node.id} is {node.status}")
        if node.job_id is not None:
            current = session.get(Job, node.job_id)
            # A provisioning still under way, or a remediation step (which could be making a
            # replacement server), stops first.
            stoppable = (current is not None and current.kind == PROVISION_KIND and NodeStatus(node.status) in
                         IN_PROGRESS) or (current is not None and current.kind == REMEDIATE_KIND)  # fmt: skip
            if current is not None and stoppable and current.state not in TERMINAL:
                with contextlib.suppress(jobs_service.JobAlreadyFinished):
                    jobs_service.request_cancel(session, current.id, actor=actor)
        job = start_node_job(
            session, node, RELEASE_KIND, {"keep_server": keep_server}, actor=actor, action="node.release",
            detail={"keep_server": keep_server},
        )  # fmt: skip
        session.flush()
        session.expunge_all()
        return node, job


def release_pending(session: Session, node: Node) -> bool:
    """A release was asked for and has not ended: the node shows its old status until the release
    job starts, but it is on its way out (a retry or adoption would race it)."""
    if node.job_id is None:
        return False
    job = session.get(Job, node.job_id)
    return job is not None and job.kind == RELEASE_KIND and job.state not in TERMINAL


def retry_node(app: AppContext, node_id: int, *, actor: str) -> tuple[Node, Job]:
    """Run ``node_provision`` again for a failed node; it resumes from the stage that failed."""
    with app.database.session(write=True) as session:
        node = get_node(session, node_id)
        if NodeStatus(node.status) not in RETRYABLE_FROM or node.stage == Stage.release.value:
            raise NodeStateConflict(
                node, f"node {node.id} is {node.status}; only a failed provisioning is retried"
            )
        if release_pending(session, node):
            raise NodeStateConflict(node, f"node {node.id} is being released; it cannot be retried")
        job = start_node_job(
            session, node, PROVISION_KIND, {"retry": True}, actor=actor, action="node.retry",
            detail={"stage": node.stage},
        )  # fmt: skip
        node.status = NodeStatus.pending.value
        node.error_code = node.error_message = node.error_hint = None
        node.error_retryable = None
        session.flush()
        session.expunge_all()
        return node, job


# A provider connection cannot be deleted while nodes of it are not released.
register_usage_counter(count_nodes_using)
