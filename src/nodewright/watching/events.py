"""Node lifecycle events: ONE function turns a status change into an event, its audit row, and
its webhook deliveries (``nodewright.alerts.emit``).

Event types fired (documented in docs/watching.md):

- ``node.ready``      a node finished provisioning (pending/verifying -> ready)
- ``node.degraded``   the watcher's checks failed ``failures_before_degraded`` times in a row
- ``node.recovered``  a degraded node passed ``successes_before_ready`` checks (never without a
                      prior ``node.degraded``: only ``degraded -> ready`` fires it)
- ``node.failed``     provisioning failed
- ``node.released``   the node was released
- ``node.lost``       reconcile found its server gone at the provider

During a maintenance pause of the node the audit row is written but nothing is delivered.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from nodewright import alerts, runtime
from nodewright.alerts.payloads import node_data
from nodewright.db.models import Node
from nodewright.db.types import utcnow
from nodewright.security import audit
from nodewright.watching import maintenance

NODE_READY = "node.ready"
NODE_DEGRADED = "node.degraded"
NODE_RECOVERED = "node.recovered"
NODE_FAILED = "node.failed"
NODE_RELEASED = "node.released"
NODE_LOST = "node.lost"
REMEDIATION_STARTED = "node.remediation_started"
REMEDIATION_SUCCEEDED = "node.remediation_succeeded"
REMEDIATION_FAILED = "node.remediation_failed"
EVENT_TYPES = (NODE_READY, NODE_DEGRADED, NODE_RECOVERED, NODE_FAILED, NODE_RELEASED, NODE_LOST)


def event_type(old: str, new: str) -> str | None:
    if new == "degraded" and old == "ready":
        return NODE_DEGRADED
    if new == "ready":
        return NODE_RECOVERED if old == "degraded" else NODE_READY
    return {"failed": NODE_FAILED, "released": NODE_RELEASED, "lost": NODE_LOST}.get(new)


def deliver(
    session: Session, event: str, node: Node, reason: str, extra: dict[str, Any] | None = None
) -> None:
    """The one place node alerts are sent from: webhook deliveries enqueued in this transaction."""
    alerts.emit(session, event, {**node_data(node, reason, runtime.settings().public_url), **(extra or {})})


def deliver_fleet(session: Session, event: str, data: dict[str, Any]) -> None:
    """Fleet alerts (the brake): not about one node."""
    alerts.emit(session, event, data)


def remediation_event(
    session: Session, node: Node, event: str, reason: str, remediation: dict[str, Any], *, actor: str
) -> None:
    """``node.remediation_started|succeeded|failed``: audited; delivered unless under maintenance."""
    window = maintenance.active_for(session, node, utcnow())
    audit.record(session, actor=actor, action=event, target=f"node:{node.id}",
                 outcome="silenced" if window is not None else "ok",
                 detail={"reason": reason[:500], "remediation": remediation})  # fmt: skip
    if window is None:
        deliver(session, event, node, reason[:500], {"remediation": remediation})


def resend_degraded(session: Session, node: Node, reason: str, degraded_checks: int) -> None:
    """Send ``node.degraded`` again to the endpoints that asked for a resend every N checks."""
    data = {**node_data(node, reason[:500], runtime.settings().public_url), "resend": degraded_checks}
    alerts.emit(session, NODE_DEGRADED, data, resend_checks=degraded_checks)


def node_health_changed(
    session: Session, node: Node, old: str, new: str, reason: str, *, actor: str = "watcher"
) -> str | None:
    """Record ``node``'s change from ``old`` to ``new`` (in the caller's transaction, which also
    changes the node): an audit row always, an alert unless the node is under maintenance.
    Returns the event type, or ``None`` for a change that is no event."""
    event = event_type(old, new)
    if event is None or old == new:
        return None
    window = maintenance.active_for(session, node, utcnow())
    data = {
        "node_id": node.id,
        "name": node.name,
        "provider_id": node.provider_id,
        "labels": dict(node.labels or {}),
        "old_status": old,
        "new_status": new,
        "reason": reason[:500],
        "at": utcnow().isoformat(),
    }
    audit.record(
        session,
        actor=actor,
        action=event,
        target=f"node:{node.id}",
        outcome="silenced" if window is not None else "ok",
        detail={**data, "maintenance_id": window.id if window is not None else None},
    )
    if window is None:
        deliver(session, event, node, reason)
    return event
