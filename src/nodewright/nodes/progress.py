"""Writing a node's progress from inside its job: fenced updates, stage evidence, failures.

Every write goes through ``ctx.transaction()``: an attempt that lost its lease cannot overwrite what
the attempt that took over wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from nodewright.db.models import Node
from nodewright.db.types import utcnow
from nodewright.jobs.context import JobContext
from nodewright.jobs.errors import INTERNAL_ERROR, JobCanceled, JobError, LeaseLost
from nodewright.nodes.states import STAGE_STATUS, NodeStatus, Stage
from nodewright.providers.errors import ProviderError
from nodewright.security.redaction import redact, redact_text
from nodewright.security.text import clean, clean_value
from nodewright.watching import events

T = TypeVar("T")


class NodeGone(Exception):
    """The node row disappeared (it never should: nodes are released, not deleted)."""


def load(ctx: JobContext, node_id: int) -> Node:
    with ctx.database.session() as session:
        node = session.get(Node, node_id)
        if node is None:
            raise NodeGone(node_id)
        session.expunge(node)
        return node


def update(ctx: JobContext, node_id: int, **fields: Any) -> None:
    with ctx.transaction() as session:
        node = session.get(Node, node_id)
        if node is None:
            raise NodeGone(node_id)
        old = node.status
        for key, value in fields.items():
            setattr(node, key, value)
        if node.status != old:  # node.ready, node.failed: fired with the change, in its transaction
            reason = (node.error_message or "") if node.status == NodeStatus.failed.value else ""
            events.node_health_changed(session, node, old, node.status, reason, actor=f"job:{ctx.job_id}")


def add_evidence(ctx: JobContext, node_id: int, key: str, value: Any, **fields: Any) -> None:
    with ctx.transaction() as session:
        node = session.get(Node, node_id)
        if node is None:
            raise NodeGone(node_id)
        evidence = dict(node.evidence or {})
        evidence[key] = clean_value(redact(value))  # check output is node text
        node.evidence = evidence  # reassigned: JSON columns do not track in-place changes
        for name, field_value in fields.items():
            setattr(node, name, field_value)


def _stage_record(ctx: JobContext, node_id: int, stage: Stage, record: dict[str, Any]) -> None:
    with ctx.transaction() as session:
        node = session.get(Node, node_id)
        if node is None:
            raise NodeGone(node_id)
        evidence = dict(node.evidence or {})
        stages = dict(evidence.get("stages") or {})
        stages[stage.value] = record
        evidence["stages"] = stages
        node.evidence = evidence


def stage_done(node: Node, stage: Stage) -> bool:
    record = ((node.evidence or {}).get("stages") or {}).get(stage.value) or {}
    return bool(record.get("ok"))


def fail(ctx: JobContext, node_id: int, stage: Stage, error: JobError) -> None:
    """Record ``error`` on the node; the node shows ``failed`` when no further attempt will come."""
    final = not error.retryable or ctx.attempt >= ctx.max_attempts
    fields: dict[str, Any] = {
        "error_code": error.code,
        # Redacted and cleaned as the job's own error is: a message may carry what a node or
        # provider echoed, control characters included.
        "error_message": clean(redact_text(error.message)) if error.message is not None else None,
        "error_hint": clean(redact_text(error.hint)) if error.hint is not None else None,
        "error_retryable": error.retryable and not final,
        "stage": stage.value,
    }
    if not final:
        update(ctx, node_id, **fields)
        return
    fields["status"] = NodeStatus.failed.value
    with ctx.transaction() as session:
        node = session.get(Node, node_id)
        if node is None:
            raise NodeGone(node_id)
        was = node.status
        for key, value in fields.items():
            setattr(node, key, value)
        session.flush()
        reason = f"{error.code}: {fields['error_message']}"
        events.node_health_changed(session, node, was, node.status, reason, actor=f"job:{ctx.job_id}")


def run_stage(ctx: JobContext, node_id: int, stage: Stage, fn: Callable[[], T]) -> T:
    """Run one stage: status and timing on the node, every failure mapped to a ``JobError``."""
    update(ctx, node_id, status=STAGE_STATUS[stage].value, stage=stage.value)
    started_at, started = utcnow(), time.monotonic()
    ctx.log(f"stage {stage.value} started", stage=stage.value)
    try:
        value = fn()
    except LeaseLost:
        raise  # no longer ours: touch nothing
    except JobCanceled:
        fail(ctx, node_id, stage, JobError("canceled", f"canceled during {stage.value}", retryable=False))
        raise
    except ProviderError as exc:
        error = exc.to_job_error()
        fail(ctx, node_id, stage, error)
        raise error from None
    except JobError as exc:
        fail(ctx, node_id, stage, exc)
        raise
    except Exception:
        fail(
            ctx,
            node_id,
            stage,
            JobError(INTERNAL_ERROR, f"{stage.value} failed unexpectedly", retryable=True),
        )
        raise
    seconds = round(time.monotonic() - started, 3)
    _stage_record(ctx, node_id, stage, {"ok": True, "started_at": started_at.isoformat(), "seconds": seconds})
    ctx.log(f"stage {stage.value} done in {seconds:g} s", stage=stage.value, seconds=seconds)
    return value
