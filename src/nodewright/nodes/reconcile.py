"""Reconcile: compare what the provider has with what nodewright believes, per connection.

- A node whose server is gone at the provider becomes ``lost`` (confirmed by a direct lookup, so a
  server missing from one listing page is never taken for gone); a server that is off is shown.
- A node left in an in-progress status by a job that ended without saying so (a worker lost for good)
  is settled to ``failed`` with that job's error.
- Servers carrying this installation's labels that no live node holds are orphans: listed in
  ``GET /api/orphans`` and on ``/providers``, to delete or adopt.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodewright import runtime
from nodewright.db.models import Job, Node, NodeRemediation, OrphanServer, ProviderConnection
from nodewright.db.types import utcnow
from nodewright.jobs.context import JobContext
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.errors import JobError
from nodewright.jobs.registry import job_handler, registry
from nodewright.jobs.states import TERMINAL
from nodewright.nodes.states import IN_PROGRESS, RECONCILE_KIND, NodeStatus
from nodewright.providers.acquisition import installation_id
from nodewright.providers.base import LABEL_NODE, LABEL_REPLACEMENT, ProviderAdapter, ServerInfo
from nodewright.providers.connections import connection_info
from nodewright.providers.errors import ProviderError
from nodewright.providers.registry import make_adapter
from nodewright.watching import events

RECONCILE_ALL_KIND = "nodes.reconcile_all"
ORPHAN_DELETE_KIND = "nodes.orphan_delete"
RECONCILE_INTERVAL_SECONDS = 300.0
# Only a node at rest can be lost; one in a job is that job's to settle.
LOSABLE = (NodeStatus.ready.value, NodeStatus.degraded.value, NodeStatus.failed.value)
LOST_HINT = "The server was deleted outside nodewright. Release the node to clear it, then create a new one."


def adapter_for(ctx: JobContext, provider_id: int) -> ProviderAdapter:
    with ctx.database.session() as session:
        row = session.get(ProviderConnection, provider_id)
        if row is None:
            raise LookupError(provider_id)
        info = connection_info(runtime.secret_box(), session, row)
    return make_adapter(info, database=ctx.database)


@job_handler(RECONCILE_ALL_KIND, max_attempts=3)
def reconcile_all(ctx: JobContext) -> dict[str, Any]:
    """The periodic entry: one reconcile job per connection (each a singleton of its own)."""
    with ctx.transaction() as session:
        ids = list(session.scalars(select(ProviderConnection.id).order_by(ProviderConnection.id)))
        for provider_id in ids:
            enqueue(
                session,
                RECONCILE_KIND,
                {"provider_id": provider_id},
                dedup_key=f"reconcile:{provider_id}",
                created_by="reconcile",
            )
    return {"connections": len(ids)}


def _settle_stuck(session: Any, node: Node) -> bool:
    """An in-progress node whose job ended without updating it (the job ran out of attempts after its
    worker was lost): it is failed, with the job's own error."""
    if NodeStatus(node.status) not in IN_PROGRESS or node.job_id is None:
        return False
    job = session.get(Job, node.job_id)
    if job is None or job.state not in TERMINAL or job.state == "succeeded":
        return False
    error = job.error or {}
    node.status = NodeStatus.failed.value
    node.error_code = str(error.get("code") or job.state)
    node.error_message = str(error.get("message") or f"its job {job.id} ended {job.state}")
    node.error_hint = error.get("hint") or "Retry the node; it resumes from the stage that failed."
    node.error_retryable = False
    return True


def _orphans(servers: list[ServerInfo], nodes: list[Node], replacing: set[str]) -> list[ServerInfo]:
    held = {n.server_id for n in nodes if n.server_id is not None and n.status != NodeStatus.released.value}
    # A node still acquiring may have a server it has not recorded yet: not an orphan.
    acquiring = {str(n.id) for n in nodes if n.server_id is None and NodeStatus(n.status) in IN_PROGRESS}
    return [
        s
        for s in servers
        if s.id not in held
        and s.labels.get(LABEL_NODE) not in acquiring
        # A replacement being made for a node (watching.remediate) is that step's, not an orphan.
        and s.labels.get(LABEL_REPLACEMENT) not in replacing
    ]


def replacing_steps(session: Session, provider_id: int) -> set[str]:
    """Ids (as label values) of the connection's replace steps still under way: their job has not
    ended (a step left ``running`` by a job that died must not hide its server for ever)."""
    rows = session.scalars(
        select(NodeRemediation.id)
        .join(Job, Job.id == NodeRemediation.job_id)
        .where(
            NodeRemediation.provider_id == provider_id,
            NodeRemediation.action == "replace",
            NodeRemediation.state.in_(("queued", "running")),
            Job.state.not_in(TERMINAL),
        )
    )
    return {str(r) for r in rows}


@job_handler(RECONCILE_KIND, max_attempts=3)
def reconcile(ctx: JobContext) -> dict[str, Any]:
    provider_id = int(ctx.args["provider_id"])
    try:
        adapter = adapter_for(ctx, provider_id)
    except LookupError:
        return {"provider_id": provider_id, "skipped": "connection deleted"}
    try:
        servers = adapter.list_owned(installation_id(ctx.database))
        by_id = {s.id: s for s in servers}
        with ctx.database.session() as session:
            nodes = list(session.scalars(select(Node).where(Node.provider_id == provider_id)))
            replacing = replacing_steps(session, provider_id)
            session.expunge_all()
        # Absent from the listing is not proof: look each such server up before calling it gone.
        gone = {
            n.id
            for n in nodes
            if n.server_id is not None
            and n.server_id not in by_id
            and n.status in LOSABLE
            and adapter.inspect(n.server_id) is None
        }
    except ProviderError as error:
        raise error.to_job_error() from None
    finally:
        adapter.close()
    now = utcnow()
    lost, settled, changed = [], [], []
    orphans = _orphans(servers, nodes, replacing)
    with ctx.transaction() as session:
        for snapshot in nodes:
            node = session.get(Node, snapshot.id)
            if node is None:
                continue
            was = node.status
            if _settle_stuck(session, node):
                session.flush()
                reason = f"{node.error_code}: {node.error_message}"
                events.node_health_changed(session, node, was, node.status, reason, actor="reconcile")
                settled.append(node.id)
            # Decided from a snapshot: a node released, retried or adopted since keeps its state.
            if node.id in gone and node.status in LOSABLE and node.server_id == snapshot.server_id:
                previous = node.status
                node.status = NodeStatus.lost.value
                reason = f"server {node.server_id} no longer exists at the provider"
                events.node_health_changed(session, node, previous, node.status, reason, actor="reconcile")
                node.server_status = "gone"
                node.error_code = "server_gone"
                node.error_message = f"server {node.server_id} no longer exists at the provider"
                node.error_hint = LOST_HINT
                node.error_retryable = False
                session.flush()
                lost.append(node.id)
            elif node.server_id in by_id and node.status != NodeStatus.released.value:
                status = by_id[node.server_id].status
                if node.server_status != status:
                    node.server_status = status
                    changed.append(node.id)
        seen = {s.id for s in orphans}
        session.execute(
            delete(OrphanServer).where(
                OrphanServer.provider_id == provider_id, OrphanServer.server_id.not_in(seen)
            )
        )
        existing = {
            o.server_id: o
            for o in session.scalars(select(OrphanServer).where(OrphanServer.provider_id == provider_id))
        }
        for server in orphans:
            label = server.labels.get(LABEL_NODE)
            row = existing.get(server.id)
            if row is None:
                row = OrphanServer(provider_id=provider_id, server_id=server.id, first_seen_at=now)
                session.add(row)
            row.name, row.status, row.labels, row.ipv4 = (
                server.name[:63],
                server.status,
                dict(server.labels),
                server.ipv4,
            )
            row.node_id = int(label) if label and label.isdigit() else None
            row.last_seen_at = now
    for node_id in lost:
        ctx.log(f"node {node_id}: server gone at the provider -> lost", "warning", node_id=node_id)
    for node_id in settled:
        ctx.log(f"node {node_id}: its job had ended -> failed", "warning", node_id=node_id)
    if orphans:
        ctx.log(f"{len(orphans)} orphaned server(s): {', '.join(s.name for s in orphans)}", "warning")
    return {"provider_id": provider_id, "servers": len(servers), "lost": lost, "settled": settled,
            "server_status_changed": changed, "orphans": len(orphans)}  # fmt: skip


def orphan_holder(session: Session, provider_id: int, server_id: int, label: str | None) -> Node | None:
    """The node that holds (or is acquiring) this server, which makes it no orphan (any more): one
    that recorded it, or the node its label names while that node is in progress without a server
    (a retried acquire adopts a server by its labels)."""
    held = session.scalar(
        select(Node).where(
            Node.provider_id == provider_id,
            Node.server_id == server_id,
            Node.status != NodeStatus.released.value,
        )
    )
    if held is not None or not (label and label.isdigit()):
        return held
    node = session.get(Node, int(label))
    if (
        node is not None
        and node.provider_id == provider_id
        and node.server_id is None
        and NodeStatus(node.status) in IN_PROGRESS
    ):
        return node
    return None


@job_handler(ORPHAN_DELETE_KIND, max_attempts=8)
def orphan_delete(ctx: JobContext) -> dict[str, Any]:
    provider_id, server_id = int(ctx.args["provider_id"]), int(ctx.args["server_id"])
    adapter = adapter_for(ctx, provider_id)
    try:
        # The orphan list is a snapshot: look again, at the provider and at the nodes, before deleting.
        server = adapter.inspect(server_id)
        with ctx.database.session() as session:
            holder = orphan_holder(
                session, provider_id, server_id, server.labels.get(LABEL_NODE) if server else None
            )
            holder_id = holder.id if holder is not None else None
        if holder_id is not None:
            raise JobError(
                "conflict",
                f"server {server_id} belongs to node {holder_id} again: not deleted",
                retryable=False,
                hint="Release the node to delete its server.",
            )
        adapter.release(server_id, ctx)
    except ProviderError as error:
        raise error.to_job_error() from None
    finally:
        adapter.close()
    with ctx.transaction() as session:
        session.execute(
            delete(OrphanServer).where(
                OrphanServer.provider_id == provider_id, OrphanServer.server_id == server_id
            )
        )
    ctx.log(f"orphaned server {server_id} deleted")
    return {"provider_id": provider_id, "server_id": server_id, "deleted": True}


registry.periodic(RECONCILE_ALL_KIND, RECONCILE_INTERVAL_SECONDS)
