"""Writing one check's outcome: history, counters, and the node's ready <-> degraded transition,
all in the caller's transaction (the check job's, fenced)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from nodewright.db.models import Node, NodeHealth
from nodewright.nodes.states import WATCHED, NodeStatus
from nodewright.provisioning.checks import CheckResult
from nodewright.security.redaction import redact_text
from nodewright.security.text import clean
from nodewright.watching import events, history, maintenance, remediation
from nodewright.watching.health import Counters, Health, Transition, paused, step
from nodewright.watching.policy import WatchPolicy


@dataclass(frozen=True)
class Outcome:
    ok: bool
    health: str
    transition: str | None
    paused: bool
    skipped: str | None = None


def new_health(node_id: int, next_check_at: dt.datetime | None) -> NodeHealth:
    return NodeHealth(
        node_id=node_id,
        health=Health.unknown.value,
        consecutive_failures=0,
        consecutive_successes=0,
        last_failure=[],
        next_check_at=next_check_at,
        degraded_checks=0,
    )


def _reason(failed: list[dict[str, str]]) -> str:
    return "; ".join(f"{f['name']}: {f['detail']}" for f in failed) or "checks failed"


def _safe(text: str) -> str:
    return clean(redact_text(text))[:300]


def apply_result(
    session: Session,
    node_id: int,
    results: list[CheckResult],
    *,
    seconds: float,
    policy: WatchPolicy,
    now: dt.datetime,
) -> Outcome:
    node = session.get(Node, node_id)
    if node is None or NodeStatus(node.status) not in WATCHED:
        return Outcome(
            False, Health.unknown.value, None, False, skipped=f"node is {node.status if node else 'gone'}"
        )
    row = session.get(NodeHealth, node_id)
    if row is None:
        row = new_health(node_id, None)
        session.add(row)
    ok = bool(results) and all(r.ok for r in results)
    failed = [{"name": _safe(r.name), "detail": _safe(r.detail)} for r in results if not r.ok]
    # A node already degraded (by an earlier run of the watcher) counts from its status.
    current = Counters(
        Health.degraded if node.status == NodeStatus.degraded.value else Health(row.health),
        row.consecutive_failures,
        row.consecutive_successes,
    )
    window = maintenance.active_for(session, node, now)
    in_grace = row.grace_until is not None and row.grace_until > now
    transition: Transition | None = None
    if window is not None or in_grace:
        counters = paused(current)
    else:
        counters, transition = step(
            current,
            ok,
            failures_before_degraded=policy.failures_before_degraded,
            successes_before_ready=policy.successes_before_ready,
        )
    if not ok and current.failures == 0 and window is None:
        row.failing_since = now
    if ok:
        row.failing_since = None
    else:
        row.last_failure = failed
    row.health = counters.health.value
    row.consecutive_failures, row.consecutive_successes = counters.failures, counters.successes
    row.last_check_at, row.last_ok = now, ok
    if transition is Transition.degraded:
        row.degraded_since, row.degraded_checks = now, 0
        node.status = NodeStatus.degraded.value
        reason = _reason(failed)
        events.node_health_changed(session, node, NodeStatus.ready.value, NodeStatus.degraded.value,
                                   f"{counters.failures} failed checks in a row: {reason}")  # fmt: skip
    elif transition is Transition.recovered:
        row.degraded_since, row.degraded_checks = None, 0
        node.status = NodeStatus.ready.value
        events.node_health_changed(session, node, NodeStatus.degraded.value, NodeStatus.ready.value,
                                   f"{counters.successes} passing checks in a row")  # fmt: skip
        remediation.on_recovered(session, node, now)
    elif not ok and window is None and not in_grace and node.status == NodeStatus.degraded.value:
        row.degraded_checks = (row.degraded_checks or 0) + 1
        events.resend_degraded(session, node, f"still degraded: {_reason(failed)}", row.degraded_checks)
    if not ok and window is None and not in_grace and node.status == NodeStatus.degraded.value:
        remediation.after_failed_check(session, node, row, policy, now)
    history.record(
        session,
        node_id=node_id,
        at=now,
        ok=ok,
        seconds=seconds,
        paused=window is not None,
        health=row.health,
        results=[{**r.as_dict(), "name": _safe(r.name), "detail": _safe(r.detail)} for r in results],
    )
    return Outcome(ok, row.health, transition.value if transition else None, window is not None)
