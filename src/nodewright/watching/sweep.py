"""The watcher's jobs: a periodic tick, one sweep per provider connection, one check per node.

- ``watching.tick`` (periodic singleton, every ``TICK_SECONDS``) enqueues one ``watching.sweep``
  per connection that has watched nodes (dedup per connection), forgets the health of nodes no
  longer watched, and prunes the watcher's own finished jobs (history lives in ``node_checks``).
- ``watching.sweep`` lists the connection's servers by this installation's ownership label at most
  once per interval (the shortest interval of its nodes' policies): watching N nodes costs the
  provider O(1) calls per interval, not O(N). It records each server's status on its node and
  enqueues a check for every node that is due (spread, jittered, backed off when failing for long).
- ``watching.check`` checks one node (``runner``) and writes the outcome (``outcome``). Its dedup
  key is per node, so checks of one node never overlap; its resource key is the node's, so a check
  never runs beside the node's provision or release job.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from typing import Any

from sqlalchemy import delete, select

from nodewright import runtime
from nodewright.db.models import (
    Job,
    JobEvent,
    JobStep,
    Node,
    NodeCheck,
    NodeHealth,
    RemediationBrake,
    WatchSweep,
)
from nodewright.db.types import utcnow
from nodewright.jobs.context import JobContext
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.registry import job_handler, registry
from nodewright.jobs.states import TERMINAL
from nodewright.nodes import progress
from nodewright.nodes.reconcile import adapter_for
from nodewright.nodes.states import WATCHED, NodeStatus, resource_key
from nodewright.providers.acquisition import installation_id
from nodewright.providers.errors import ProviderError
from nodewright.watching import brake, remediation, runner
from nodewright.watching.outcome import apply_result, new_health
from nodewright.watching.policy import JITTER, TICK_SECONDS, effective_interval, policy_for, spread

TICK_KIND = "watching.tick"
SWEEP_KIND = "watching.sweep"
CHECK_KIND = "watching.check"
WATCH_KINDS = (TICK_KIND, SWEEP_KIND, CHECK_KIND)
JOB_RETENTION = dt.timedelta(hours=1)
PRUNE_BATCH = 2000
WATCHED_VALUES = [s.value for s in WATCHED]


def sweep_dedup(provider_id: int) -> str:
    return f"watch:sweep:{provider_id}"


def check_dedup(node_id: int) -> str:
    return f"watch:check:{node_id}"


def prune_watch_jobs(session: Any, before: dt.datetime, limit: int = PRUNE_BATCH) -> int:
    ids = list(
        session.scalars(
            select(Job.id)
            .where(Job.kind.in_(WATCH_KINDS), Job.state.in_(list(TERMINAL)), Job.finished_at < before)
            .order_by(Job.id)
            .limit(limit)
        )
    )
    if ids:
        session.execute(delete(JobEvent).where(JobEvent.job_id.in_(ids)))
        session.execute(delete(JobStep).where(JobStep.job_id.in_(ids)))
        session.execute(delete(Job).where(Job.id.in_(ids)))
    return len(ids)


@job_handler(TICK_KIND, max_attempts=1)
def tick(ctx: JobContext) -> dict[str, Any]:
    with ctx.transaction() as session:
        ids = list(
            session.scalars(
                select(Node.provider_id)
                .where(Node.status.in_(WATCHED_VALUES))
                .distinct()
                .order_by(Node.provider_id)
            )
        )
        for provider_id in ids:
            enqueue(session, SWEEP_KIND, {"provider_id": provider_id}, dedup_key=sweep_dedup(provider_id),
                    max_attempts=1, created_by="watcher")  # fmt: skip
        # A connection left without watched nodes has no sweep: its brake is released here.
        for stale in session.scalars(
            select(RemediationBrake.provider_id).where(
                RemediationBrake.engaged.is_(True), RemediationBrake.provider_id.not_in(ids)
            )
        ).all():
            brake.evaluate(session, stale)
        closed = remediation.close_unwatched(session, utcnow())
        unwatched = select(Node.id).where(Node.status.not_in(WATCHED_VALUES))
        session.execute(delete(NodeHealth).where(NodeHealth.node_id.in_(unwatched)))
        released = select(Node.id).where(Node.status == NodeStatus.released.value)
        session.execute(delete(NodeCheck).where(NodeCheck.node_id.in_(released)))
        pruned = prune_watch_jobs(session, utcnow() - JOB_RETENTION)
    return {"connections": len(ids), "pruned_jobs": pruned, "closed_steps": closed}


def _list_statuses(ctx: JobContext, provider_id: int) -> tuple[dict[int, str] | None, str | None]:
    """One batched list of the connection's servers (by our ownership label): {server id: status}."""
    try:
        adapter = adapter_for(ctx, provider_id)
    except LookupError:
        return None, "connection deleted"
    try:
        servers = adapter.list_owned(installation_id(ctx.database))
    except ProviderError as error:
        return None, f"{error.code.value}: {error.message}"[:500]
    finally:
        adapter.close()
    return {s.id: s.status for s in servers}, None


@job_handler(SWEEP_KIND, max_attempts=1)
def sweep(ctx: JobContext) -> dict[str, Any]:
    provider_id = int(ctx.args["provider_id"])
    settings = runtime.settings()
    with ctx.database.session() as session:
        rows = session.execute(
            select(Node.id, Node.profile).where(
                Node.provider_id == provider_id, Node.status.in_(WATCHED_VALUES), Node.server_id.is_not(None)
            )
        ).all()
        state = session.get(WatchSweep, provider_id)
        listed_at = state.listed_at if state is not None else None
    if not rows:
        return {"provider_id": provider_id, "nodes": 0}
    policies = {profile: policy_for(profile, settings) for profile in {r.profile for r in rows}}
    list_interval = min(p.interval_seconds for p in policies.values())
    now = utcnow()
    statuses: dict[int, str] | None = None
    list_error: str | None = None
    listed = listed_at is None or (now - listed_at).total_seconds() >= list_interval
    if listed:
        statuses, list_error = _list_statuses(ctx, provider_id)
        now = utcnow()
    due: list[int] = []
    with ctx.transaction() as session:
        if listed:
            state = session.get(WatchSweep, provider_id)
            if state is None:
                state = WatchSweep(provider_id=provider_id, servers=0)
                session.add(state)
            state.listed_at, state.list_error = now, list_error
            if statuses is not None:
                state.servers = len(statuses)
        ids = [r.id for r in rows]
        nodes = {n.id: n for n in session.scalars(select(Node).where(Node.id.in_(ids)))}
        healths = {
            h.node_id: h for h in session.scalars(select(NodeHealth).where(NodeHealth.node_id.in_(ids)))
        }
        for node_id, node in nodes.items():
            if node.status not in WATCHED_VALUES or node.server_id is None:
                continue
            if statuses is not None:
                status = statuses.get(node.server_id, "missing")
                if node.server_status != status:
                    node.server_status = status
            policy = policies.get(node.profile) or policy_for(node.profile, settings)
            health = healths.get(node_id)
            if health is None:
                start = max(now, (node.ready_at or now) + dt.timedelta(seconds=policy.grace_seconds))
                first = start + dt.timedelta(seconds=spread(node_id, policy.interval_seconds))
                health = new_health(node_id, first)
                session.add(health)
            if health.next_check_at is None or health.next_check_at <= now:
                interval = effective_interval(policy, health.consecutive_failures)
                jitter = 1 + random.uniform(-JITTER, JITTER)
                health.next_check_at = now + dt.timedelta(seconds=interval * jitter)
                due.append(node_id)
        if listed:
            # Last: a check's transaction holds its node's rows and then takes the brake's lock;
            # taking the brake's first and the nodes' after would deadlock with it (PostgreSQL).
            brake.evaluate(session, provider_id)
        for node_id in due:
            enqueue(session, CHECK_KIND, {"node_id": node_id}, dedup_key=check_dedup(node_id),
                    resource_key=resource_key(node_id), max_attempts=1, created_by="watcher")  # fmt: skip
    if list_error:
        ctx.log(f"listing the connection's servers failed: {list_error}", "warning")
    return {"provider_id": provider_id, "nodes": len(rows), "listed": listed, "list_error": list_error,
            "checks": len(due)}  # fmt: skip


@job_handler(CHECK_KIND, max_attempts=1)
def check(ctx: JobContext) -> dict[str, Any]:
    node_id = int(ctx.args["node_id"])
    try:
        node = progress.load(ctx, node_id)
    except progress.NodeGone:
        return {"node_id": node_id, "skipped": "node gone"}
    if node.status not in WATCHED_VALUES:
        return {"node_id": node_id, "skipped": f"node is {node.status}"}
    policy = policy_for(node.profile, runtime.settings())
    started = time.monotonic()
    results = runner.run(ctx, node, policy)
    seconds = time.monotonic() - started
    with ctx.transaction() as session:
        outcome = apply_result(session, node_id, results, seconds=seconds, policy=policy, now=utcnow())
    if outcome.transition:
        ctx.log(
            f"node {node_id}: {outcome.transition}", "warning" if outcome.transition == "degraded" else "info"
        )
    return {"node_id": node_id, "ok": outcome.ok, "health": outcome.health, "transition": outcome.transition,
            "paused": outcome.paused, "skipped": outcome.skipped, "seconds": round(seconds, 3)}  # fmt: skip


registry.periodic(TICK_KIND, TICK_SECONDS)
