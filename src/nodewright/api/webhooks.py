"""``/api/webhooks`` (admin): endpoints, their secret (shown once), rotation, test event, delivery log."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from nodewright.alerts import deliveries, endpoints
from nodewright.alerts.events import EventType
from nodewright.api.deps import Admin, ContextDep
from nodewright.api.problems import PROBLEM_RESPONSES, FieldError, ProblemError, problem_doc
from nodewright.api.routing import OneHopRoute
from nodewright.db.models import WebhookDelivery, WebhookEndpoint

router = APIRouter(
    prefix="/api/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES, route_class=OneHopRoute
)
MAX_ID = 2**31 - 1
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$"


class WebhookOut(BaseModel):
    id: int
    name: str
    url: str
    events: list[str]
    enabled: bool
    resend_every_checks: int
    secret_fingerprint: str
    previous_secret_expires_at: dt.datetime | None
    created_by: str
    created_at: dt.datetime


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_...): shown this once, never again.")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    url: str = Field(min_length=1, max_length=2048)
    events: list[EventType] = Field(default_factory=list, description="Empty: every event type.")
    enabled: bool = True
    resend_every_checks: int = Field(default=0, ge=0, le=endpoints.MAX_RESEND_EVERY)


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=NAME_PATTERN)
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: list[EventType] | None = None
    enabled: bool | None = None
    resend_every_checks: int | None = Field(default=None, ge=0, le=endpoints.MAX_RESEND_EVERY)


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: int = Field(
        default=endpoints.DEFAULT_OVERLAP_SECONDS,
        ge=0,
        le=endpoints.MAX_OVERLAP_SECONDS,
        description="How long the previous secret keeps signing alongside the new one.",
    )


class DeliveryOut(BaseModel):
    id: int
    endpoint_id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    latency_ms: int | None
    next_attempt_at: dt.datetime | None
    job_id: int | None
    redelivery_of: int | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    body: str


def webhook_out(row: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=row.id,
        name=row.name,
        url=row.url,
        events=list(row.events or []),
        enabled=row.enabled,
        resend_every_checks=row.resend_every_checks,
        secret_fingerprint=row.secret_fingerprint,
        previous_secret_expires_at=row.previous_expires_at if row.previous_secret_id else None,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def delivery_out(row: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        latency_ms=row.latency_ms,
        next_attempt_at=row.next_attempt_at,
        job_id=row.job_id,
        redelivery_of=row.redelivery_of,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        body=row.body,
    )


def _problem(exc: endpoints.WebhookError) -> ProblemError:
    titles = {404: "No such webhook endpoint", 409: "Conflict", 422: "Invalid webhook endpoint"}
    return ProblemError(
        exc.status,
        exc.code,
        titles.get(exc.status, "Refused"),
        exc.message,
        errors=[FieldError(field=exc.field, message=exc.message)] if exc.field else None,
    )


def _with_secret(found: endpoints.WithSecret) -> WebhookWithSecret:
    return WebhookWithSecret(**webhook_out(found.endpoint).model_dump(), secret=found.secret.reveal())


@router.get("", summary="List webhook endpoints (never a secret)")
def list_webhooks(_caller: Admin, ctx: ContextDep) -> list[WebhookOut]:
    return [webhook_out(r) for r in endpoints.list_endpoints(ctx.database)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Add a webhook endpoint; the answer holds its signing secret, shown this once",
    responses={409: problem_doc("An endpoint with that name exists")},
)
def create_webhook(body: WebhookCreate, caller: Admin, ctx: ContextDep) -> WebhookWithSecret:
    try:
        found = endpoints.create_endpoint(
            ctx.database,
            ctx.box,
            actor=caller.actor,
            name=body.name,
            url=body.url,
            events=list(body.events),
            enabled=body.enabled,
            resend_every_checks=body.resend_every_checks,
            allowed=ctx.settings.allowed_webhook_endpoints,
        )
    except endpoints.WebhookError as exc:
        raise _problem(exc) from None
    return _with_secret(found)


@router.get("/{webhook_id}", summary="One webhook endpoint")
def get_webhook(_caller: Admin, ctx: ContextDep, webhook_id: int = Path(ge=1, le=MAX_ID)) -> WebhookOut:
    try:
        return webhook_out(endpoints.get_endpoint(ctx.database, webhook_id))
    except endpoints.WebhookError as exc:
        raise _problem(exc) from None


@router.patch(
    "/{webhook_id}",
    summary="Change the URL, event filter, name, enabled or resend setting",
    responses={409: problem_doc("An endpoint with that name exists")},
)
def update_webhook(
    body: WebhookUpdate, caller: Admin, ctx: ContextDep, webhook_id: int = Path(ge=1, le=MAX_ID)
) -> WebhookOut:
    try:
        row = endpoints.update_endpoint(
            ctx.database,
            webhook_id,
            actor=caller.actor,
            name=body.name,
            url=body.url,
            events=list(body.events) if body.events is not None else None,
            enabled=body.enabled,
            resend_every_checks=body.resend_every_checks,
            allowed=ctx.settings.allowed_webhook_endpoints,
        )
    except endpoints.WebhookError as exc:
        raise _problem(exc) from None
    return webhook_out(row)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove an endpoint")
def delete_webhook(caller: Admin, ctx: ContextDep, webhook_id: int = Path(ge=1, le=MAX_ID)) -> None:
    try:
        endpoints.delete_endpoint(ctx.database, webhook_id, actor=caller.actor)
    except endpoints.WebhookError as exc:
        raise _problem(exc) from None


@router.post(
    "/{webhook_id}/rotate",
    summary="New signing secret (shown this once); the previous one signs too during the overlap",
)
def rotate_webhook(
    caller: Admin, ctx: ContextDep, body: RotateRequest | None = None, webhook_id: int = Path(ge=1, le=MAX_ID)
) -> WebhookWithSecret:
    request = body or RotateRequest()
    try:
        found = endpoints.rotate_secret(
            ctx.database, ctx.box, webhook_id, actor=caller.actor, overlap_seconds=request.overlap_seconds
        )
    except endpoints.WebhookError as exc:
        raise _problem(exc) from None
    return _with_secret(found)


@router.post("/{webhook_id}/test", status_code=status.HTTP_202_ACCEPTED, summary="Send a webhook.test event")
def test_webhook(caller: Admin, ctx: ContextDep, webhook_id: int = Path(ge=1, le=MAX_ID)) -> DeliveryOut:
    try:
        return delivery_out(deliveries.send_test(ctx.database, webhook_id, actor=caller.actor))
    except endpoints.WebhookError as exc:
        raise _problem(exc) from None


@router.get("/{webhook_id}/deliveries", summary="The endpoint's delivery log, newest first")
def list_webhook_deliveries(
    _caller: Admin,
    ctx: ContextDep,
    webhook_id: int = Path(ge=1, le=MAX_ID),
    limit: int = Query(default=50, ge=1, le=deliveries.MAX_LIST),
) -> list[DeliveryOut]:
    try:
        return [delivery_out(r) for r in deliveries.list_deliveries(ctx.database, webhook_id, limit=limit)]
    except endpoints.WebhookError as exc:
        raise _problem(exc) from None


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a delivery again (same webhook-id and body, new attempts)",
)
def redeliver_webhook(
    caller: Admin,
    ctx: ContextDep,
    webhook_id: int = Path(ge=1, le=MAX_ID),
    delivery_id: int = Path(ge=1, le=MAX_ID),
) -> DeliveryOut:
    try:
        row = deliveries.redeliver(ctx.database, webhook_id, delivery_id, actor=caller.actor)
    except endpoints.WebhookError as exc:
        raise _problem(exc) from None
    return delivery_out(row)
