"""``/api/nodes``: provider-backed creation (202 + job), reads, release, retry, evidence.

The only way to make a node is the provider-backed request below (contract ``provider/v1``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nodewright import gates
from nodewright.api.deps import ContextDep, Operator, Viewer
from nodewright.api.gates import gate_closed_problem
from nodewright.api.ids import NodeId
from nodewright.api.problems import PROBLEM_RESPONSES, FieldError, ProblemError, not_found, problem_doc
from nodewright.api.routing import OneHopRoute
from nodewright.api.watching import NodeHealthOut, health_out
from nodewright.db.models import Job, Node
from nodewright.nodes import service, snapshots
from nodewright.nodes.idempotency import CallerKey
from nodewright.nodes.names import ADMIN_USER, NAME_PATTERN
from nodewright.nodes.states import CONTRACT_PROVIDER_V1, CONTRACTS, NodeStatus
from nodewright.providers.errors import ProviderError
from nodewright.provisioning.profiles import DEFAULT_PROFILE, NAME_RE
from nodewright.provisioning.target import InvalidHostKey, fingerprint, parse_public_key
from nodewright.watching import service as watch_service

router = APIRouter(prefix="/api", tags=["nodes"], responses=PROBLEM_RESPONSES, route_class=OneHopRoute)

MAX_ID = 2**31 - 1
CATALOG_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
LABEL_KEY = re.compile(
    r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
RESERVED_LABEL_PREFIX = "nodewright.io/"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


class NodeCreateBody(BaseModel):
    """Contract ``provider/v1``: a node is always a server acquired from a provider connection."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"x-contract": CONTRACT_PROVIDER_V1})
    contract: str = Field(
        default=CONTRACT_PROVIDER_V1, description=f"Create contract; known: {', '.join(CONTRACTS)}."
    )
    provider_id: int = Field(ge=1, le=MAX_ID)
    name: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    location: str = Field(min_length=1, max_length=64, pattern=CATALOG_NAME_PATTERN)
    server_type: str = Field(min_length=1, max_length=64, pattern=CATALOG_NAME_PATTERN)
    image: str = Field(min_length=1, max_length=128, pattern=CATALOG_NAME_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    profile: str = Field(default=DEFAULT_PROFILE, max_length=63, pattern=NAME_RE.pattern)
    ssh_authorized_keys: list[str] = Field(default_factory=list, max_length=20)

    def to_request(self) -> service.NodeCreate:
        return service.NodeCreate(
            provider_id=self.provider_id,
            name=self.name,
            location=self.location,
            server_type=self.server_type,
            image=self.image,
            labels=self.labels,
            profile=self.profile,
            ssh_authorized_keys=tuple(self.ssh_authorized_keys),
            contract=self.contract,
        )

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not LABEL_KEY.match(key):
                raise ValueError(
                    f"label key {key[:16]!r}{'…' if len(key) > 16 else ''} is not a valid label key"
                )
            if key.startswith(RESERVED_LABEL_PREFIX):
                raise ValueError(f"label keys under {RESERVED_LABEL_PREFIX} are nodewright's own")
            if not LABEL_VALUE.match(val):
                raise ValueError(f"the value of label {key[:16]!r} is not a valid label value")
        return value

    @field_validator("ssh_authorized_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        keys = []
        for i, line in enumerate(value):
            if len(line) > 8192 or "\n" in line.strip() or "\r" in line:
                raise ValueError(f"key {i} must be one OpenSSH public key line")
            try:
                key_type, _ = parse_public_key(line)
            except InvalidHostKey as exc:
                raise ValueError(f"key {i} is not an OpenSSH public key ({exc})") from None
            if key_type not in SSH_KEY_TYPES:
                raise ValueError(f"key {i} has unsupported type {key_type[:40]!r}")
            keys.append(line.strip())
        return keys


class NodeError(BaseModel):
    code: str
    message: str | None
    hint: str | None
    retryable: bool


class NodeServer(BaseModel):
    id: int | None
    name: str | None
    status: str | None


class NodeSsh(BaseModel):
    address: str
    port: int
    user: str = Field(
        description="The login of `command`: the admin user the profile makes for operators' keys."
    )
    provision_user: str = Field(description="The account nodewright itself connects as (the provider's).")
    host_key_fingerprint: str | None
    command: str = Field(description="How to reach the node with its pinned host key.")


class NodePrice(BaseModel):
    hourly_gross: str | None
    monthly_gross: str | None
    currency: str = "EUR"


class NodeOut(BaseModel):
    id: int
    name: str
    contract: str
    provider_id: int
    location: str
    server_type: str
    image: str
    labels: dict[str, str]
    profile: str
    ssh_authorized_keys: int = Field(description="How many operator keys the admin user gets.")
    status: NodeStatus
    stage: str | None
    error: NodeError | None
    job_id: int | None
    server: NodeServer
    ssh: NodeSsh | None
    host_key_fingerprint: str | None
    price: NodePrice
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    ready_at: dt.datetime | None
    released_at: dt.datetime | None
    health: NodeHealthOut | None = Field(
        default=None, description="The watcher's view (docs/watching.md); in GET responses."
    )


class JobRef(BaseModel):
    id: int
    kind: str
    state: str
    url: str


class NodeJobOut(BaseModel):
    node: NodeOut
    job: JobRef


class NodePageOut(BaseModel):
    items: list[NodeOut]
    total: int
    limit: int
    offset: int


class EvidenceOut(BaseModel):
    node_id: int
    evidence: dict[str, Any]


def ssh_command(node: Node) -> str | None:
    if not (node.ssh_address and node.ssh_port and node.ssh_user and node.host_public_key):
        return None
    if node.status == NodeStatus.released.value:  # no server behind the old address any more
        return None
    host = node.ssh_address if node.ssh_port == 22 else f"[{node.ssh_address}]:{node.ssh_port}"
    known = f"{host} {' '.join(node.host_public_key.split()[:2])}"
    port = "" if node.ssh_port == 22 else f" -p {node.ssh_port}"
    return (
        f"echo '{known}' > nw-{node.name}.known_hosts && ssh -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile=nw-{node.name}.known_hosts{port} {ADMIN_USER}@{node.ssh_address}"
    )


def node_out(node: Node, health: watch_service.HealthView | None = None) -> NodeOut:
    error = None
    if node.error_code:
        error = NodeError(
            code=node.error_code,
            message=node.error_message,
            hint=node.error_hint,
            retryable=bool(node.error_retryable) or node.status == NodeStatus.failed.value,
        )
    ssh = None
    command = ssh_command(node)
    if command is not None:
        assert node.ssh_address and node.ssh_port and node.ssh_user
        ssh = NodeSsh(
            address=node.ssh_address,
            port=node.ssh_port,
            user=ADMIN_USER,
            provision_user=node.ssh_user,
            host_key_fingerprint=node.host_key_fingerprint,
            command=command,
        )
    return NodeOut(
        id=node.id,
        name=node.name,
        contract=node.contract,
        provider_id=node.provider_id,
        location=node.location,
        server_type=node.server_type,
        image=node.image,
        labels=dict(node.labels or {}),
        profile=node.profile,
        ssh_authorized_keys=len(node.ssh_authorized_keys or []),
        status=NodeStatus(node.status),
        stage=node.stage,
        error=error,
        job_id=node.job_id,
        server=NodeServer(id=node.server_id, name=node.server_name, status=node.server_status),
        ssh=ssh,
        host_key_fingerprint=node.host_key_fingerprint,
        price=NodePrice(hourly_gross=node.price_hourly, monthly_gross=node.price_monthly),
        created_by=node.created_by,
        created_at=node.created_at,
        updated_at=node.updated_at,
        ready_at=node.ready_at,
        released_at=node.released_at,
        health=health_out(health) if health is not None else None,
    )


def job_ref(job: Job) -> JobRef:
    return JobRef(id=job.id, kind=job.kind, state=job.state, url=f"/api/jobs/{job.id}")


def _provider_problem(error: ProviderError) -> ProblemError:
    headers = {"Retry-After": str(int(error.retry_after) + 1)} if error.retry_after else None
    return ProblemError(
        503 if error.retryable else 422,
        error.code.value,
        "The provider could not check this request",
        error.message,
        hint=error.hint,
        retryable=error.retryable,
        errors=[FieldError(field="provider_id", message=error.message)] if not error.retryable else None,
        headers=headers,
    )


def _accepted(response: Response, node: Node, job: Job) -> NodeJobOut:
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return NodeJobOut(node=node_out(node), job=job_ref(job))


@router.post(
    "/nodes",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Create a node from a provider (contract provider/v1); answers 202 with its provisioning job",
    responses={
        409: problem_doc("The name is taken, or the Idempotency-Key was used with another body"),
        503: problem_doc("The provider_create gate is off, or the provider is unavailable"),
    },
)
def create_node(
    body: NodeCreateBody,
    caller: Operator,
    ctx: ContextDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "Retries with the same key and body get the same node and job. A key belongs to the "
                "calling user (all their sessions and API tokens share it; another user's identical "
                "key is another key) and lasts 24 hours, after which it may be used anew. The same "
                "key with another body is 409 idempotency_conflict."
            ),
        ),
    ] = None,
) -> NodeJobOut:
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        rule = "1-128 printable ASCII characters"
        raise ProblemError(
            400,
            "invalid_request",
            "Invalid request",
            f"Idempotency-Key must be {rule}.",
            errors=[FieldError(field="Idempotency-Key", message=rule)],
        )
    request = body.to_request()
    try:
        key = None
        if idempotency_key is not None:
            key = (
                CallerKey.for_user(caller.user_id, idempotency_key)
                if caller.user_id is not None
                else CallerKey(scope=f"actor:{caller.actor}"[:64], key=idempotency_key)
            )
        created = service.create_node(ctx, request, actor=caller.actor, idempotency_key=key)
    except gates.GateClosed as exc:
        raise gate_closed_problem(exc) from None
    except service.NodeRequestError as exc:
        raise ProblemError(
            exc.status,
            exc.code,
            "Conflict" if exc.status == 409 else "Invalid request",
            f"{exc.field}: {exc.message}",
            errors=[FieldError(field=exc.field, message=exc.message)],
        ) from None
    except ProviderError as error:
        raise _provider_problem(error) from None
    return _accepted(response, created.node, created.job)


@router.get("/nodes", summary="List nodes")
def list_nodes(
    _caller: Viewer,
    ctx: ContextDep,
    status_: Annotated[list[NodeStatus] | None, Query(alias="status")] = None,
    provider_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    label: Annotated[str | None, Query(max_length=320, description="key or key=value")] = None,
    health: Annotated[
        list[watch_service.HealthFilter] | None,
        Query(description="Watch health: unknown, passing, failing, degraded, paused, unwatched"),
    ] = None,
    name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=63,
            pattern=NAME_PATTERN,
            description="Exactly this name (one live node at most; released ones keep theirs)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> NodePageOut:
    selector: tuple[str, str | None] | None = None
    if label is not None:
        key, sep, value = label.partition("=")
        selector = (key, value if sep else None)
    with ctx.database.session() as session:
        wanted = {h.value for h in health} if health else None
        page = service.list_nodes(
            session,
            statuses=[s.value for s in status_] if status_ else None,
            provider_id=provider_id,
            label=selector,
            name=name,
            node_ids=watch_service.node_ids_with_health(session, wanted) if wanted else None,
            limit=limit,
            offset=offset,
        )
        views = watch_service.health_of(session, page.items)
        return NodePageOut(
            items=[node_out(n, views[n.id]) for n in page.items], total=page.total, limit=limit, offset=offset
        )


def _node_or_404(session: Any, node_id: int) -> Node:
    try:
        return service.get_node(session, node_id)
    except service.NodeNotFound:
        raise not_found("Node", node_id) from None


@router.get("/nodes/{node_id}", summary="One node: status, stage, SSH target, server, price, last error")
def get_node(_caller: Viewer, ctx: ContextDep, node_id: NodeId) -> NodeOut:
    with ctx.database.session() as session:
        node = _node_or_404(session, node_id)
        return node_out(node, watch_service.health_of(session, [node])[node.id])


@router.get("/nodes/{node_id}/evidence", summary="Acquisition and provisioning evidence of a node")
def get_evidence(_caller: Viewer, ctx: ContextDep, node_id: NodeId) -> EvidenceOut:
    with ctx.database.session() as session:
        node = _node_or_404(session, node_id)
        evidence = dict(node.evidence or {})
        if node.host_public_key:
            evidence["host_key"] = {
                "public_key": node.host_public_key,
                "fingerprint": fingerprint(node.host_public_key),
            }
        return EvidenceOut(node_id=node.id, evidence=evidence)


def _conflict(exc: service.NodeStateConflict) -> ProblemError:
    return ProblemError(409, "conflict", "Conflict", exc.message)


@router.delete(
    "/nodes/{node_id}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Release a node: delete its server (or keep it with keep_server=true); answers 202 with the job",
    responses={409: problem_doc("The node is already released")},
)
def delete_node(
    caller: Operator,
    ctx: ContextDep,
    response: Response,
    node_id: NodeId,
    keep_server: Annotated[bool, Query(description="Detach: keep the server at the provider.")] = False,
) -> NodeJobOut:
    try:
        node, job = service.release_node(ctx, node_id, actor=caller.actor, keep_server=keep_server)
    except service.NodeNotFound:
        raise not_found("Node", node_id) from None
    except service.NodeStateConflict as exc:
        raise _conflict(exc) from None
    return _accepted(response, node, job)


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(
        default=None, min_length=1, max_length=snapshots.DESCRIPTION_LIMIT, pattern=r"^[^\x00-\x1f\x7f]+$"
    )


@router.post(
    "/nodes/{node_id}/snapshot",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Make an image (a provider snapshot) of a ready node's server; answers 202 with the job",
    responses={409: problem_doc("The node is not ready, or is being released")},
)
def snapshot_node(
    caller: Operator, ctx: ContextDep, response: Response, node_id: NodeId, body: SnapshotIn | None = None
) -> NodeJobOut:
    try:
        node, job = snapshots.snapshot_node(
            ctx, node_id, actor=caller.actor, description=body.description if body else None
        )
    except service.NodeNotFound:
        raise not_found("Node", node_id) from None
    except service.NodeStateConflict as exc:
        raise _conflict(exc) from None
    return _accepted(response, node, job)


@router.post(
    "/nodes/{node_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retry a failed node's provisioning from the stage that failed",
    responses={409: problem_doc("The node is not failed")},
)
def retry_node(caller: Operator, ctx: ContextDep, response: Response, node_id: NodeId) -> NodeJobOut:
    try:
        node, job = service.retry_node(ctx, node_id, actor=caller.actor)
    except service.NodeNotFound:
        raise not_found("Node", node_id) from None
    except service.NodeStateConflict as exc:
        raise _conflict(exc) from None
    return _accepted(response, node, job)
