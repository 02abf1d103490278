"""``GET|PUT /api/gates``: feature gates (admin switches them, anyone signed in reads them)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from nodewright import gates
from nodewright.api.deps import Admin, ContextDep, Viewer
from nodewright.api.problems import PROBLEM_RESPONSES, ProblemError, field_problem
from nodewright.api.routing import OneHopRoute

router = APIRouter(prefix="/api", tags=["gates"], responses=PROBLEM_RESPONSES, route_class=OneHopRoute)


class GateOut(BaseModel):
    name: str
    enabled: bool
    default: bool = Field(description="The configured value, used while the gate was never set.")
    description: str
    updated_at: dt.datetime | None
    updated_by: str | None


class GatesOut(BaseModel):
    gates: list[GateOut]


class GatesUpdate(BaseModel):
    """Only the gates named change; at least one must be named."""

    model_config = ConfigDict(extra="forbid")
    provider_create: StrictBool | None = None


def _out(states: list[gates.GateState]) -> GatesOut:
    return GatesOut(gates=[GateOut(**vars(s)) for s in states])


def gate_closed_problem(exc: gates.GateClosed) -> ProblemError:
    return ProblemError(
        503,
        "feature_disabled",
        "Feature switched off",
        f"The feature gate {exc.name} is off: {gates.DESCRIPTIONS[exc.name]} Reads keep working.",
        hint=f'An admin turns it on with PUT /api/gates {{"{exc.name}": true}} or `nodewright gates set '
        f"{exc.name} on`.",
    )


@router.get("/gates", summary="Feature gates and their values")
def get_gates(_caller: Viewer, ctx: ContextDep) -> GatesOut:
    with ctx.database.session() as session:
        return _out(gates.read_gates(session, ctx.settings))


@router.put("/gates", summary="Switch feature gates (takes effect in every process at once)")
def put_gates(body: GatesUpdate, caller: Admin, ctx: ContextDep) -> GatesOut:
    changes: dict[str, bool] = body.model_dump(exclude_none=True)
    if not changes:
        raise field_problem("body", f"name at least one gate: {', '.join(sorted(gates.DESCRIPTIONS))}")
    with ctx.database.session(write=True) as session:
        return _out(gates.set_gates(session, ctx.settings, changes, actor=caller.actor))
