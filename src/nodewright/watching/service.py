"""Reads for the API, the dashboard and the CLI: a node's health at a glance, its history."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewright.db.models import MaintenanceWindow, Node, NodeHealth
from nodewright.db.types import utcnow
from nodewright.nodes.states import WATCHED, NodeStatus
from nodewright.watching import maintenance


class HealthFilter(StrEnum):
    unknown = "unknown"
    passing = "passing"
    failing = "failing"
    degraded = "degraded"
    paused = "paused"  # under a maintenance pause, whatever the health
    unwatched = "unwatched"  # not ready (provisioning, failed, lost...)


@dataclass(frozen=True)
class HealthView:
    health: str  # unknown | passing | failing | degraded | unwatched
    consecutive_failures: int
    consecutive_successes: int
    last_check_at: dt.datetime | None
    next_check_at: dt.datetime | None
    failing_since: dt.datetime | None
    degraded_since: dt.datetime | None
    last_failure: list[dict[str, Any]]
    maintenance: MaintenanceWindow | None


def _view(node: Node, row: NodeHealth | None, window: MaintenanceWindow | None) -> HealthView:
    watched = NodeStatus(node.status) in WATCHED
    health = "unwatched" if not watched else (row.health if row is not None else "unknown")
    if node.status == NodeStatus.degraded.value:
        health = "degraded"
    return HealthView(
        health=health,
        consecutive_failures=row.consecutive_failures if row else 0,
        consecutive_successes=row.consecutive_successes if row else 0,
        last_check_at=row.last_check_at if row else None,
        next_check_at=row.next_check_at if row and watched else None,
        failing_since=row.failing_since if row else None,
        degraded_since=row.degraded_since if row else None,
        last_failure=list(row.last_failure or []) if row and health in ("failing", "degraded") else [],
        maintenance=window,
    )


def health_of(session: Session, nodes: Iterable[Node]) -> dict[int, HealthView]:
    nodes = list(nodes)
    ids = [n.id for n in nodes]
    rows = {h.node_id: h for h in session.scalars(select(NodeHealth).where(NodeHealth.node_id.in_(ids)))}
    windows = maintenance.active_windows(session, utcnow())
    return {n.id: _view(n, rows.get(n.id), maintenance.covering(windows, n)) for n in nodes}


def node_ids_with_health(session: Session, wanted: Collection[str]) -> set[int]:
    """Ids of the nodes whose health (or ``paused``) is one of ``wanted``."""
    nodes = list(session.scalars(select(Node).where(Node.status != NodeStatus.released.value)))
    views = health_of(session, nodes)
    return {
        node_id
        for node_id, view in views.items()
        if view.health in wanted or ("paused" in wanted and view.maintenance is not None)
    }
