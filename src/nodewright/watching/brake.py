"""The fleet brake: no automatic remediation on a connection while more than
``remediation_brake_percent`` (default 40 %) of its watched nodes are degraded, and at least two are
(one bad node is what remediation is for; many at once look like the provider, and replacing them
all would make an outage worse: Cluster API's ``maxUnhealthy``).

The brake is looked at by the sweep (once per interval per connection: engages and releases it),
and by each remediation job as it starts (a node that degraded at the same moment as many others
finds the brake engaged and is held). Engaging and releasing fire ``fleet.brake_engaged`` and
``fleet.brake_released`` and are audited; the state is shown on /nodes and by ``GET /api/brakes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nodewright import runtime
from nodewright.db.models import Node, ProviderConnection, RemediationBrake
from nodewright.db.types import iso, utcnow
from nodewright.nodes.states import WATCHED, NodeStatus
from nodewright.security import audit
from nodewright.watching import events

BRAKE_ENGAGED = "fleet.brake_engaged"
BRAKE_RELEASED = "fleet.brake_released"
MIN_DEGRADED = 2  # a single degraded node never engages the brake


@dataclass(frozen=True)
class FleetCount:
    watched: int
    degraded: int

    def over(self, percent: float) -> bool:
        return self.degraded >= MIN_DEGRADED and self.degraded * 100 > percent * self.watched


def count(session: Session, provider_id: int) -> FleetCount:
    rows = dict(
        session.execute(
            select(Node.status, func.count(Node.id))
            .where(Node.provider_id == provider_id, Node.status.in_([s.value for s in WATCHED]))
            .group_by(Node.status)
        ).all()
    )
    return FleetCount(watched=int(sum(rows.values())), degraded=int(rows.get(NodeStatus.degraded.value, 0)))


def _row(session: Session, provider_id: int) -> RemediationBrake:
    row = session.get(RemediationBrake, provider_id, with_for_update=True)
    if row is not None:
        return row
    try:
        # A savepoint: another transaction may insert the connection's first row at the same time.
        with session.begin_nested():
            row = RemediationBrake(provider_id=provider_id, engaged=False, degraded=0, watched=0, reason="")
            session.add(row)
            session.flush()
        return row
    except IntegrityError:
        pass
    row = session.get(RemediationBrake, provider_id, with_for_update=True)  # the winner's, committed
    assert row is not None
    return row


def fleet_data(session: Session, row: RemediationBrake) -> dict[str, Any]:
    connection = session.get(ProviderConnection, row.provider_id)
    base = (runtime.settings().public_url or "").rstrip("/")
    return {
        "provider": {"id": row.provider_id, "name": connection.name if connection is not None else None},
        "degraded": row.degraded,
        "watched": row.watched,
        "threshold_percent": row.threshold_percent,
        "reason": row.reason,
        "links": {"nodes": f"{base}/nodes?health=degraded", "api": f"{base}/api/brakes"},
    }


def evaluate(session: Session, provider_id: int, *, actor: str = "watcher") -> RemediationBrake:
    """Engage or release the connection's brake from the nodes' statuses now (in the caller's
    transaction, the row locked); fires the event on a change. Returns the brake."""
    percent = runtime.settings().remediation_brake_percent
    row = _row(session, provider_id)
    fleet = count(session, provider_id)
    row.degraded, row.watched, row.threshold_percent = fleet.degraded, fleet.watched, percent
    engage = fleet.over(percent)
    if engage == row.engaged:
        if engage:
            row.reason = _reason(fleet, percent)
        return row
    now = utcnow()
    row.engaged = engage
    if engage:
        row.engaged_at, row.released_at, row.reason = now, None, _reason(fleet, percent)
    else:
        row.released_at = now
        row.reason = f"{fleet.degraded} of {fleet.watched} watched nodes degraded: at or below {percent:g} %"
    event = BRAKE_ENGAGED if engage else BRAKE_RELEASED
    data = fleet_data(session, row)
    audit.record(session, actor=actor, action=event, target=f"provider:{provider_id}", outcome="ok",
                 detail={k: v for k, v in data.items() if k != "links"})  # fmt: skip
    events.deliver_fleet(session, event, data)
    return row


def _reason(fleet: FleetCount, percent: float) -> str:
    share = fleet.degraded * 100 / max(1, fleet.watched)
    return (
        f"{fleet.degraded} of {fleet.watched} watched nodes degraded ({share:.0f} %, "
        f"more than {percent:g} %): automatic remediation is stopped on this connection "
        "until they recover or are released"
    )


def engaged(session: Session, provider_id: int) -> RemediationBrake | None:
    row = session.get(RemediationBrake, provider_id)
    return row if row is not None and row.engaged else None


def all_brakes(session: Session) -> list[RemediationBrake]:
    return list(session.scalars(select(RemediationBrake).order_by(RemediationBrake.provider_id)))


def as_dict(row: RemediationBrake) -> dict[str, Any]:
    return {
        "provider_id": row.provider_id,
        "engaged": row.engaged,
        "degraded": row.degraded,
        "watched": row.watched,
        "threshold_percent": row.threshold_percent,
        "reason": row.reason,
        "engaged_at": iso(row.engaged_at),
        "released_at": iso(row.released_at),
    }
