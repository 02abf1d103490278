"""Remediation decisions: which step of the ladder a degraded node gets next, within its budget.

A profile turns remediation on (``remediation:`` in profile.yml, off by default). The ladder is
``reboots`` x ``reboot`` (the provider's reboot action, then the grace period), then
``reprovisions`` x ``reprovision`` (provision + verify again on the same server), then ``replaces`` x
``replace`` (a new server with the same spec, provisioned and verified, then the old one released:
never released first). Limits: at most ``max_attempts`` attempts within ``window_seconds`` (over
all episodes), and the ladder itself per episode (an episode starts when the node becomes
degraded). Nothing starts while the connection's fleet brake is engaged (``watching.brake``) or a
maintenance pause covers the node (no check has consequences then).

Everything here runs in the transaction of the check that decided (``outcome.apply_result``): a
step is a ``node_remediations`` row and a ``watching.remediate`` job enqueued
``policy.remediation_delay`` later (so nodes that fail together are all degraded, and the brake
engaged, before any acts), which
looks at the brake again when it starts. When the step's job is done the node gets a grace period;
the checks after it decide: ``successes_before_ready`` passes -> the step succeeded (the node is
``ready``), ``failures_before_degraded`` failures -> it failed, and the next step is decided.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nodewright.db.models import Job, Node, NodeHealth, NodeRemediation, StoredSecret
from nodewright.db.types import iso
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.states import TERMINAL
from nodewright.nodes.states import REMEDIATE_KIND, WATCHED, NodeStatus, resource_key
from nodewright.security.redaction import redact_text
from nodewright.security.text import clean_line
from nodewright.watching import brake, events
from nodewright.watching.policy import WatchPolicy, remediation_delay

ACTIONS = ("reboot", "reprovision", "replace")
EXHAUSTED = "exhausted"
# States of a step still under way: at most one per node.
ACTIVE = ("queued", "running", "waiting")
# States that spent an attempt (held and skipped steps did nothing).
SPENT = ("running", "waiting", "succeeded", "failed", "canceled")
# Job attempts per action: reboot and replace resume from their checkpoints; a reprovision runs
# the playbook again, once more at most.
MAX_ATTEMPTS = {"reboot": 3, "reprovision": 2, "replace": 4}


def safe_reason(text: str) -> str:
    return clean_line(redact_text(text))[:500]


def as_dict(row: NodeRemediation) -> dict[str, Any]:
    return {
        "id": row.id,
        "action": row.action,
        "attempt": row.attempt,
        "state": row.state,
        "reason": row.reason,
        "job_id": row.job_id,
        "old_server_id": row.old_server_id,
        "new_server_id": row.new_server_id,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
    }


def summary(row: NodeRemediation) -> dict[str, Any]:
    """What an alert says about a step."""
    return {"id": row.id, "action": row.action, "attempt": row.attempt, "state": row.state}


def history(session: Session, node_id: int, limit: int = 50) -> list[NodeRemediation]:
    return list(
        session.scalars(
            select(NodeRemediation)
            .where(NodeRemediation.node_id == node_id)
            .order_by(NodeRemediation.id.desc())
            .limit(limit)
        )
    )


def active(session: Session, node_id: int) -> NodeRemediation | None:
    return session.scalar(
        select(NodeRemediation)
        .where(NodeRemediation.node_id == node_id, NodeRemediation.state.in_(ACTIVE))
        .order_by(NodeRemediation.id.desc())
        .limit(1)
    )


def finish(
    session: Session,
    node: Node,
    row: NodeRemediation,
    state: str,
    reason: str,
    *,
    actor: str,
    now: dt.datetime,
) -> None:
    """End a step: ``succeeded`` or ``failed`` (or ``canceled``) fire their event; others do not.
    ``reason`` may carry what the node printed (a failed check's output): redacted and cleaned."""
    reason = safe_reason(reason)
    row.state, row.reason, row.finished_at = state, reason, now
    if state == "succeeded":
        events.remediation_event(
            session, node, events.REMEDIATION_SUCCEEDED, reason, summary(row), actor=actor
        )
    elif state in ("failed", "canceled"):
        events.remediation_event(session, node, events.REMEDIATION_FAILED, reason, summary(row), actor=actor)


def restart_grace(health: NodeHealth, policy: WatchPolicy, now: dt.datetime) -> None:
    """After a step acted on the node: no consequences of checks for the grace period, and the
    counting starts afresh (the node stays degraded until it passes)."""
    health.grace_until = now + dt.timedelta(seconds=max(policy.grace_seconds, policy.interval_seconds))
    health.consecutive_failures = health.consecutive_successes = 0
    health.next_check_at = health.grace_until


def on_recovered(session: Session, node: Node, now: dt.datetime) -> None:
    """The node passed its checks: a step waiting for the verdict succeeded; one still queued is
    not needed any more."""
    row = active(session, node.id)
    if row is None:
        return
    if row.state == "waiting":
        finish(session, node, row, "succeeded", f"the node recovered after the {row.action}", actor="watcher",
               now=now)  # fmt: skip
    elif row.state == "queued":
        finish(session, node, row, "skipped", "the node recovered before the step started", actor="watcher",
               now=now)  # fmt: skip
    elif (ended := _job_ended(session, row)) is not None:  # running, but its job died for good
        abandon(session, row)
        reason = f"its job {row.job_id} ended ({ended}) without a result; the node recovered"
        finish(session, node, row, "failed", reason, actor="watcher", now=now)


def abandon(session: Session, row: NodeRemediation) -> None:
    """A step whose job ended without settling it: the replacement's host key (never taken over)
    goes with it. Its server, if one was made, is listed by reconcile as an orphan."""
    detail = dict(row.detail or {})
    secret_id = detail.get("host_key_secret_id")
    if secret_id is not None and not detail.get("swapped"):
        secret = session.get(StoredSecret, int(secret_id))
        if secret is not None:
            session.delete(secret)
        row.detail = {**detail, "host_key_secret_id": None}


def close_unwatched(session: Session, now: dt.datetime) -> int:
    """Steps queued or waiting on nodes no longer watched (released, lost, failed): nothing will
    settle them any more. Marked ``skipped``; returns how many."""
    unwatched = select(Node.id).where(Node.status.not_in([s.value for s in WATCHED]))
    rows = list(
        session.scalars(
            select(NodeRemediation).where(
                NodeRemediation.state.in_(("queued", "waiting")), NodeRemediation.node_id.in_(unwatched)
            )
        )
    )
    for row in rows:
        row.state, row.finished_at = "skipped", now
        row.reason = safe_reason(f"the node is no longer watched; {row.reason}")
    return len(rows)


def after_failed_check(
    session: Session, node: Node, health: NodeHealth, policy: WatchPolicy, now: dt.datetime
) -> NodeRemediation | None:
    """A degraded node failed a check that counts (no pause, past any grace). Settles a step whose
    verdict is in, and decides the next one once ``failures_before_degraded`` failures are counted.
    Returns the step started, if any."""
    if (
        node.status != NodeStatus.degraded.value
        or health.consecutive_failures < policy.failures_before_degraded
    ):
        return None
    current = active(session, node.id)
    if current is not None:
        if current.state == "waiting":
            finish(session, node, current, "failed",
                   f"still failing {health.consecutive_failures} checks after the {current.action}",
                   actor="watcher", now=now)  # fmt: skip
        elif (ended := _job_ended(session, current)) is not None:
            abandon(session, current)
            reason = f"its job {current.job_id} ended ({ended}) without a result"
            finish(session, node, current, "failed", reason, actor="watcher", now=now)
        else:
            return None  # queued or running: its job decides
    if not policy.remediation.enabled:
        return None
    return start_next(session, node, health, policy, now)


def _job_ended(session: Session, row: NodeRemediation) -> str | None:
    """The state its job ended in (``None`` while it has not ended)."""
    job = session.get(Job, row.job_id) if row.job_id is not None else None
    if job is None:
        return "gone"
    return job.state if job.state in TERMINAL else None


def _spent(session: Session, node_id: int, since: dt.datetime) -> int:
    return int(
        session.scalar(
            select(func.count(NodeRemediation.id)).where(
                NodeRemediation.node_id == node_id,
                NodeRemediation.action.in_(ACTIONS),
                NodeRemediation.state.in_(SPENT),
                NodeRemediation.created_at >= since,
            )
        )
        or 0
    )


def start_next(
    session: Session, node: Node, health: NodeHealth, policy: WatchPolicy, now: dt.datetime
) -> NodeRemediation | None:
    spec = policy.remediation
    fleet = brake.evaluate(session, node.provider_id)
    if fleet.engaged:
        return None  # shown loudly on the brake; the step is decided again once it is released
    episode_start = health.degraded_since or now
    in_episode = _spent(session, node.id, episode_start)
    in_window = _spent(session, node.id, now - dt.timedelta(seconds=spec.window_seconds))
    ladder = spec.ladder
    if in_episode >= len(ladder) or in_window >= spec.budget:
        _exhausted(session, node, episode_start, now, ladder_done=in_episode >= len(ladder),
                   in_window=in_window, budget=spec.budget, window=spec.window_seconds)  # fmt: skip
        return None
    action = ladder[in_episode]
    row = NodeRemediation(
        node_id=node.id,
        provider_id=node.provider_id,
        action=action,
        attempt=in_episode + 1,
        state="queued",
        reason=f"degraded since {episode_start.isoformat(timespec='seconds')}; step {in_episode + 1} of "
        f"{len(ladder)}",
        old_server_id=node.server_id,
        detail={},
        created_at=now,
    )
    session.add(row)
    session.flush()
    job = enqueue(
        session,
        REMEDIATE_KIND,
        {"node_id": node.id, "remediation_id": row.id},
        resource_key=resource_key(node.id),
        dedup_key=f"remediate:{node.id}",
        run_after=now + dt.timedelta(seconds=remediation_delay(policy)),
        max_attempts=MAX_ATTEMPTS[action],
        created_by="watcher",
    )
    row.job_id = job.id
    node.job_id = job.id
    return row


def _exhausted(
    session: Session,
    node: Node,
    episode_start: dt.datetime,
    now: dt.datetime,
    *,
    ladder_done: bool,
    in_window: int,
    budget: int,
    window: float,
) -> None:
    """Said once per episode: the node stays degraded, an operator's turn."""
    said = session.scalar(
        select(func.count(NodeRemediation.id)).where(
            NodeRemediation.node_id == node.id,
            NodeRemediation.action == EXHAUSTED,
            NodeRemediation.created_at >= episode_start,
        )
    )
    if said:
        return
    reason = (
        "every step of the remediation ladder was tried"
        if ladder_done
        else f"the remediation budget is spent: {in_window} attempts within {window:g} s (at most {budget})"
    ) + "; the node stays degraded: look at it, release it, or pause it"
    row = NodeRemediation(
        node_id=node.id, provider_id=node.provider_id, action=EXHAUSTED, attempt=0, state=EXHAUSTED,
        reason=reason[:500], detail={}, created_at=now, finished_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    events.remediation_event(session, node, events.REMEDIATION_FAILED, reason, summary(row), actor="watcher")
