"""``/api/orphans``: servers with our labels that no node holds, found by reconcile."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from nodewright.api.deps import ContextDep, Operator, Viewer
from nodewright.api.ids import OrphanId
from nodewright.api.nodes import MAX_ID, JobRef, NodeJobOut, job_ref, node_out
from nodewright.api.problems import PROBLEM_RESPONSES, ProblemError, not_found, problem_doc
from nodewright.api.routing import OneHopRoute
from nodewright.nodes import orphans

router = APIRouter(prefix="/api", tags=["nodes"], responses=PROBLEM_RESPONSES, route_class=OneHopRoute)


class OrphanOut(BaseModel):
    id: int
    provider_id: int
    server_id: int
    name: str
    status: str
    labels: dict[str, str]
    node_id: int | None
    ipv4: str | None
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime


@router.get("/orphans", summary="Servers carrying this installation's labels that no node holds")
def list_orphans(
    _caller: Viewer, ctx: ContextDep, provider_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> list[OrphanOut]:
    with ctx.database.session() as session:
        return [
            OrphanOut.model_validate(o, from_attributes=True)
            for o in orphans.list_orphans(session, provider_id)
        ]


@router.post(
    "/orphans/{orphan_id}/delete",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Delete an orphaned server at the provider (a job)",
    responses={409: problem_doc("A node holds the server again")},
)
def delete_orphan(caller: Operator, ctx: ContextDep, response: Response, orphan_id: OrphanId) -> JobRef:
    try:
        job = orphans.delete_orphan(ctx, orphan_id, actor=caller.actor)
    except orphans.OrphanNotFound:
        raise not_found("Orphan", orphan_id) from None
    except orphans.OrphanHeld as exc:
        raise ProblemError(409, "conflict", "Not an orphan", str(exc)) from None
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return job_ref(job)


@router.post(
    "/orphans/{orphan_id}/adopt",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Give an orphaned server back to the node its label names; provisioning resumes at connect",
    responses={409: problem_doc("The server cannot be adopted (no node, or no pinned host key)")},
)
def adopt_orphan(caller: Operator, ctx: ContextDep, response: Response, orphan_id: OrphanId) -> NodeJobOut:
    try:
        node, job = orphans.adopt_orphan(ctx, orphan_id, actor=caller.actor)
    except orphans.OrphanNotFound:
        raise not_found("Orphan", orphan_id) from None
    except orphans.CannotAdopt as exc:
        raise ProblemError(409, "conflict", "Cannot adopt", str(exc)) from None
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return NodeJobOut(node=node_out(node), job=job_ref(job))
