"""Snapshots of a node's server: a golden image made from a node that is set up as wanted.

``POST /api/nodes/{id}/snapshot`` enqueues ``nodes.snapshot``, which asks the provider for an image
of the server's disk (Hetzner's ``create_image``, type snapshot) and waits for it. The job holds the
node's resource key, so it never overlaps the node's provisioning, release or a remediation step;
it is not the node's current job (the node's status and stage stay what they are). The image is the
operator's: it outlives the node and is never swept as an orphan. A node created with the image's
id as its image starts from that disk (cloud-init runs again: new host keys, nodewright's own).
"""

from __future__ import annotations

from typing import Any

from nodewright.context import AppContext
from nodewright.db.models import Job, Node
from nodewright.jobs.context import JobContext
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.errors import JobError
from nodewright.jobs.registry import job_handler
from nodewright.nodes.reconcile import adapter_for
from nodewright.nodes.service import NodeStateConflict, get_node, release_pending
from nodewright.nodes.states import NodeStatus, resource_key
from nodewright.providers.connections import forget_catalog
from nodewright.providers.errors import ProviderError
from nodewright.security import audit
from nodewright.security.text import clean_value

SNAPSHOT_KIND = "nodes.snapshot"
SNAPSHOT_FROM = frozenset({NodeStatus.ready, NodeStatus.degraded})
DESCRIPTION_LIMIT = 200


def snapshot_node(app: AppContext, node_id: int, *, actor: str, description: str | None) -> tuple[Node, Job]:
    """Enqueue the snapshot of a ready (or degraded) node's server."""
    with app.database.session(write=True) as session:
        node = get_node(session, node_id)
        if NodeStatus(node.status) not in SNAPSHOT_FROM or node.server_id is None:
            raise NodeStateConflict(
                node, f"node {node.id} is {node.status}; only a ready node is snapshotted"
            )
        if release_pending(session, node):
            raise NodeStateConflict(node, f"node {node.id} is being released")
        text = description or f"{node.name} (node {node.id})"
        job = enqueue(
            session,
            SNAPSHOT_KIND,
            {"node_id": node.id, "description": text},
            resource_key=resource_key(node.id),
            dedup_key=f"{SNAPSHOT_KIND}:{node.id}",
            created_by=actor,
        )
        audit.record(
            session,
            actor=actor,
            action="node.snapshot",
            target=f"node:{node.id}",
            outcome="ok",
            detail={"job_id": job.id, "server_id": node.server_id},
        )
        session.flush()
        session.expunge_all()
        return node, job


@job_handler(SNAPSHOT_KIND, max_attempts=5, backoff_cap=60.0)
def node_snapshot(ctx: JobContext) -> dict[str, Any]:
    node_id = int(ctx.args["node_id"])
    with ctx.database.session() as session:
        node = session.get(Node, node_id)
        if node is None:
            raise JobError("not_found", f"node {node_id} does not exist")
        session.expunge(node)
    if node.server_id is None or NodeStatus(node.status) not in SNAPSHOT_FROM:
        raise JobError("conflict", f"node {node_id} is {node.status}; it is not snapshotted")
    adapter = adapter_for(ctx, node.provider_id)
    try:
        image = adapter.snapshot(node.server_id, str(ctx.args["description"]), ctx)
    except ProviderError as error:
        raise error.to_job_error() from None
    finally:
        adapter.close()
    forget_catalog(ctx.database, node.provider_id)  # the new image is a choice at create now
    size = f"{image.size_gb:g} GB" if image.size_gb is not None else "size not reported"
    ctx.log(f"image {image.id} made from server {node.server_id} ({size}): {clean_value(image.description)}")
    return {"node_id": node_id, "server_id": node.server_id, **image.to_dict()}
