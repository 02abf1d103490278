"""``/api/providers``: connect a provider account, check it, rotate its token, browse its catalog.

Handlers are plain ``def``: they make blocking provider calls, which FastAPI runs in its thread pool.
The token goes in (POST, PATCH) and never comes out: responses carry its fingerprint only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from nodewright.api.deps import Admin, ContextDep, Viewer
from nodewright.api.problems import PROBLEM_RESPONSES, FieldError, ProblemError, problem_doc
from nodewright.api.routing import OneHopRoute
from nodewright.db.models import ProviderConnection
from nodewright.providers import connections
from nodewright.providers.errors import ProviderError
from nodewright.security.secret import Secret

router = APIRouter(
    prefix="/api/providers", tags=["providers"], responses=PROBLEM_RESPONSES, route_class=OneHopRoute
)

MAX_ID = 2**31 - 1
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$"
ENDPOINT_PATTERN = r"^https?://[^\s]+$"
SSH_USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"


class LastError(BaseModel):
    code: str
    message: str | None
    hint: str | None
    retryable: bool | None


class RateLimitSnapshot(BaseModel):
    limit: int | None
    remaining: int | None
    reset_at: dt.datetime | None


class ProviderOut(BaseModel):
    id: int
    kind: str
    name: str
    token_fingerprint: str
    api_endpoint: str | None
    ssh_port: int
    ssh_user: str
    status: str
    status_message: str
    last_checked_at: dt.datetime | None
    last_error: LastError | None
    rate_limit: RateLimitSnapshot | None
    created_by: str
    created_at: dt.datetime


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["hetzner"]
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    token: Secret = Field(
        description="The provider API token. Validated, stored encrypted, never shown again."
    )
    api_endpoint: str | None = Field(default=None, max_length=255, pattern=ENDPOINT_PATTERN)
    ssh_port: int = Field(default=22, ge=1, le=65535)
    ssh_user: str = Field(default="root", pattern=SSH_USER_PATTERN)


class ProviderUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=NAME_PATTERN)
    token: Secret | None = Field(default=None, description="A new token (rotation); validated first.")
    api_endpoint: str | None = Field(default=None, max_length=255, pattern=ENDPOINT_PATTERN)
    ssh_port: int | None = Field(default=None, ge=1, le=65535)
    ssh_user: str | None = Field(default=None, pattern=SSH_USER_PATTERN)


class CatalogOut(BaseModel):
    provider_id: int
    fetched_at: dt.datetime
    stale: bool
    stale_reason: str | None
    locations: list[dict[str, Any]]
    server_types: list[dict[str, Any]]
    images: list[dict[str, Any]]


def provider_out(row: ProviderConnection) -> ProviderOut:
    last_error = None
    if row.last_error_code:
        last_error = LastError(
            code=row.last_error_code,
            message=row.last_error_message,
            hint=row.last_error_hint,
            retryable=row.last_error_retryable,
        )
    rate = None
    if row.rate_limit is not None:
        rate = RateLimitSnapshot(
            limit=row.rate_limit,
            remaining=int(row.rate_remaining) if row.rate_remaining is not None else None,
            reset_at=row.rate_reset_at,
        )
    return ProviderOut(
        id=row.id,
        kind=row.kind,
        name=row.name,
        token_fingerprint=row.token_fingerprint,
        api_endpoint=row.api_endpoint,
        ssh_port=row.ssh_port,
        ssh_user=row.ssh_user,
        status=row.status,
        status_message=connections.status_message(row),
        last_checked_at=row.last_checked_at,
        last_error=last_error,
        rate_limit=rate,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _problem(exc: connections.ConnectionError_) -> ProblemError:
    titles = {404: "No such provider connection", 409: "Conflict", 422: "Provider refused the token"}
    hint = None
    if exc.code in ("credentials_invalid", "permission_denied", "rate_limited", "provider_unavailable"):
        hint = {
            "credentials_invalid": "Token rejected: paste a new token.",
            "permission_denied": "Read-only token: create a Read & Write token.",
            "rate_limited": "The provider's rate limit is exhausted: try again in a few minutes.",
            "provider_unavailable": "The provider did not answer: try again shortly.",
        }[exc.code]
    return ProblemError(
        exc.status,
        exc.code,
        titles.get(exc.status, "Refused"),
        exc.message,
        hint=hint,
        retryable=exc.code in ("rate_limited", "provider_unavailable"),
        errors=[FieldError(field=exc.field, message=exc.message)] if exc.field else None,
    )


@router.get("", summary="List provider connections (never a token)")
def list_providers(_caller: Viewer, ctx: ContextDep) -> list[ProviderOut]:
    return [provider_out(row) for row in connections.list_connections(ctx.database)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Connect a provider account (the token is validated before it is stored)",
    responses={409: problem_doc("A connection with that name exists")},
)
def create_provider(body: ProviderCreate, caller: Admin, ctx: ContextDep) -> ProviderOut:
    try:
        row = connections.create_connection(
            ctx.database,
            ctx.box,
            actor=caller.actor,
            kind=body.kind,
            name=body.name,
            token=body.token,
            api_endpoint=body.api_endpoint,
            ssh_port=body.ssh_port,
            ssh_user=body.ssh_user,
            allowed_endpoints=ctx.settings.allowed_provider_endpoints,
        )
    except connections.ConnectionError_ as exc:
        raise _problem(exc) from None
    return provider_out(row)


def _get(ctx: ContextDep, provider_id: int) -> ProviderConnection:
    row = connections.get_connection(ctx.database, provider_id)
    if row is None:
        raise ProblemError(
            404, "not_found", "No such provider connection", f"no provider connection {provider_id}"
        )
    return row


@router.get("/{provider_id}", summary="One provider connection")
def get_provider(_caller: Viewer, ctx: ContextDep, provider_id: int = Path(ge=1, le=MAX_ID)) -> ProviderOut:
    return provider_out(_get(ctx, provider_id))


@router.patch(
    "/{provider_id}",
    summary="Rotate the token (validated first) or change settings",
    responses={409: problem_doc("A connection with that name exists")},
)
def update_provider(
    body: ProviderUpdate, caller: Admin, ctx: ContextDep, provider_id: int = Path(ge=1, le=MAX_ID)
) -> ProviderOut:
    try:
        row = connections.update_connection(
            ctx.database,
            ctx.box,
            provider_id,
            actor=caller.actor,
            token=body.token,
            name=body.name,
            api_endpoint=body.api_endpoint,
            ssh_port=body.ssh_port,
            ssh_user=body.ssh_user,
            allowed_endpoints=ctx.settings.allowed_provider_endpoints,
        )
    except connections.ConnectionError_ as exc:
        raise _problem(exc) from None
    connections.forget_catalog(ctx.database, provider_id)
    return provider_out(row)


@router.delete(
    "/{provider_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a provider connection (refused while nodes use it)",
    responses={409: problem_doc("Nodes still use this connection")},
)
def delete_provider(caller: Admin, ctx: ContextDep, provider_id: int = Path(ge=1, le=MAX_ID)) -> None:
    try:
        connections.delete_connection(ctx.database, provider_id, actor=caller.actor)
    except connections.ConnectionError_ as exc:
        raise _problem(exc) from None
    connections.forget_catalog(ctx.database, provider_id)


@router.post("/{provider_id}/check", summary="Check the token now (status is updated)")
def check_provider(caller: Admin, ctx: ContextDep, provider_id: int = Path(ge=1, le=MAX_ID)) -> ProviderOut:
    try:
        row = connections.check_connection(ctx.database, ctx.box, provider_id, actor=caller.actor)
    except connections.ConnectionError_ as exc:
        raise _problem(exc) from None
    return provider_out(row)


@router.get(
    "/{provider_id}/catalog",
    summary="Locations, server types (availability, deprecation, prices) and images",
    responses={
        502: problem_doc("The provider refused the catalog request"),
        503: problem_doc("The provider is down and no earlier copy exists"),
    },
)
def provider_catalog(
    _caller: Viewer, ctx: ContextDep, provider_id: int = Path(ge=1, le=MAX_ID)
) -> CatalogOut:
    try:
        view = connections.get_catalog(ctx.database, ctx.box, provider_id)
    except connections.ConnectionError_ as exc:
        raise _problem(exc) from None
    except ProviderError as error:
        raise ProblemError(
            503 if error.retryable else 502,
            error.code.value,
            "Catalog unavailable",
            error.message,
            hint=error.hint,
            retryable=error.retryable,
        ) from None
    data = view.catalog.to_dict()
    return CatalogOut(
        provider_id=provider_id,
        fetched_at=view.fetched_at,
        stale=view.stale,
        stale_reason=view.error.message if view.error else None,
        locations=data["locations"],
        server_types=data["server_types"],
        images=data["images"],
    )
