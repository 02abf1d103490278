"""Feature gates: switches an admin flips at run time, seen by every process at once.

A gate's value lives in the database (one row per gate that was ever set), so every ``serve`` and
``worker`` process reads the same answer without a restart; a gate never set follows the configured
default (``NODEWRIGHT_GATE_PROVIDER_CREATE``). The seed's rollback step 1 is ``provider_create`` off:
node creation is refused while every read path, provider check, release and reconcile keeps working.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewright.config import Settings
from nodewright.db.models import FeatureGate
from nodewright.db.types import utcnow
from nodewright.security import audit

PROVIDER_CREATE = "provider_create"

DESCRIPTIONS: dict[str, str] = {
    PROVIDER_CREATE: "Creating nodes from a provider (POST /api/nodes, the /nodes form, "
    "`nodewright nodes create`).",
}


class UnknownGate(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class GateClosed(Exception):
    """An action behind a gate that is off."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the feature gate {name} is off")
        self.name = name


@dataclass(frozen=True)
class GateState:
    name: str
    enabled: bool
    default: bool
    description: str
    updated_at: dt.datetime | None
    updated_by: str | None


def defaults(settings: Settings) -> dict[str, bool]:
    return {PROVIDER_CREATE: settings.gate_provider_create}


def read_gates(session: Session, settings: Settings) -> list[GateState]:
    rows = {row.name: row for row in session.scalars(select(FeatureGate))}
    states = []
    for name, default in defaults(settings).items():
        row = rows.get(name)
        states.append(
            GateState(
                name=name,
                enabled=row.enabled if row is not None else default,
                default=default,
                description=DESCRIPTIONS[name],
                updated_at=row.updated_at if row is not None else None,
                updated_by=row.updated_by if row is not None else None,
            )
        )
    return states


def is_enabled(session: Session, settings: Settings, name: str) -> bool:
    if name not in DESCRIPTIONS:
        raise UnknownGate(name)
    row = session.get(FeatureGate, name)
    return row.enabled if row is not None else defaults(settings)[name]


def require_enabled(session: Session, settings: Settings, name: str) -> None:
    if not is_enabled(session, settings, name):
        raise GateClosed(name)


def set_gates(
    session: Session, settings: Settings, changes: Mapping[str, bool], *, actor: str
) -> list[GateState]:
    """Set gates in the caller's write transaction, audited with what changed."""
    for name in changes:
        if name not in DESCRIPTIONS:
            raise UnknownGate(name)
    now = utcnow()
    for name, enabled in changes.items():
        row = session.get(FeatureGate, name)
        before = row.enabled if row is not None else defaults(settings)[name]
        if row is None:
            session.add(FeatureGate(name=name, enabled=enabled, updated_at=now, updated_by=actor[:128]))
        else:
            row.enabled, row.updated_at, row.updated_by = enabled, now, actor[:128]
        audit.record(
            session,
            actor=actor,
            action="gate.set",
            target=f"gate:{name}",
            outcome="ok",
            detail={"enabled": enabled, "was": before},
        )
    session.flush()
    return read_gates(session, settings)
