"""Check history: every check of a node, the last ``HISTORY_KEEP`` kept, plus a daily roll-up
(passes, failures, seconds per UTC day) that outlives them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodewright.db.models import NodeCheck, NodeCheckDay

HISTORY_KEEP = 500


def record(
    session: Session,
    *,
    node_id: int,
    at: dt.datetime,
    ok: bool,
    seconds: float,
    paused: bool,
    health: str,
    results: list[dict[str, Any]],
) -> NodeCheck:
    row = NodeCheck(
        node_id=node_id,
        at=at,
        ok=ok,
        seconds=round(seconds, 3),
        paused=paused,
        health=health,
        results=results,
    )
    session.add(row)
    day = at.astimezone(dt.UTC).date().isoformat()
    rollup = session.scalar(
        select(NodeCheckDay).where(NodeCheckDay.node_id == node_id, NodeCheckDay.day == day)
    )
    if rollup is None:
        rollup = NodeCheckDay(node_id=node_id, day=day, passed=0, failed=0, seconds=0.0)
        session.add(rollup)
    rollup.passed += int(ok)
    rollup.failed += int(not ok)
    rollup.seconds = round(rollup.seconds + seconds, 3)
    session.flush()
    trim(session, node_id)
    return row


def trim(session: Session, node_id: int, keep: int = HISTORY_KEEP) -> int:
    """Drop all but the newest ``keep`` checks of the node."""
    cutoff = session.scalar(
        select(NodeCheck.id)
        .where(NodeCheck.node_id == node_id)
        .order_by(NodeCheck.id.desc())
        .offset(keep)
        .limit(1)
    )
    if cutoff is None:
        return 0
    result = session.execute(delete(NodeCheck).where(NodeCheck.node_id == node_id, NodeCheck.id <= cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def recent(session: Session, node_id: int, limit: int = 100) -> list[NodeCheck]:
    return list(
        session.scalars(
            select(NodeCheck).where(NodeCheck.node_id == node_id).order_by(NodeCheck.id.desc()).limit(limit)
        )
    )


def days(session: Session, node_id: int, limit: int = 90) -> list[NodeCheckDay]:
    return list(
        session.scalars(
            select(NodeCheckDay)
            .where(NodeCheckDay.node_id == node_id)
            .order_by(NodeCheckDay.day.desc())
            .limit(limit)
        )
    )
