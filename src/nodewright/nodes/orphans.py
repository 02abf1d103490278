"""Orphaned servers (our labels, no live node): list, delete through a job, or adopt.

Adopting gives the server back to the node its ownership label names, when that node still exists
without a server and nodewright still holds the host key it generated for it (so the first SSH
connection can be pinned); the node then resumes provisioning from the connect stage. A server
nodewright cannot pin is not adopted: delete it instead.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewright.context import AppContext
from nodewright.db.models import Job, Node, OrphanServer, ProviderConnection
from nodewright.jobs.enqueue import enqueue
from nodewright.nodes.reconcile import ORPHAN_DELETE_KIND, orphan_holder
from nodewright.nodes.service import release_pending, start_node_job
from nodewright.nodes.states import PROVISION_KIND, NodeStatus, Stage
from nodewright.provisioning.target import plain_address
from nodewright.security import audit


class OrphanNotFound(LookupError):
    pass


class CannotAdopt(Exception):
    pass


class OrphanHeld(Exception):
    """The listed server is held by a node again (the list is reconcile's last snapshot)."""


def list_orphans(session: Session, provider_id: int | None = None) -> list[OrphanServer]:
    stmt = select(OrphanServer).order_by(OrphanServer.provider_id, OrphanServer.server_id)
    if provider_id is not None:
        stmt = stmt.where(OrphanServer.provider_id == provider_id)
    return list(session.scalars(stmt))


def _get(session: Session, orphan_id: int) -> OrphanServer:
    orphan = session.get(OrphanServer, orphan_id)
    if orphan is None:
        raise OrphanNotFound(orphan_id)
    return orphan


def delete_orphan(app: AppContext, orphan_id: int, *, actor: str) -> Job:
    with app.database.session(write=True) as session:
        orphan = _get(session, orphan_id)
        label = str(orphan.node_id) if orphan.node_id is not None else None
        holder = orphan_holder(session, orphan.provider_id, orphan.server_id, label)
        if holder is not None:
            raise OrphanHeld(
                f"node {holder.id} holds server {orphan.server_id} now ({holder.status}): it is no orphan; "
                "release the node to delete it"
            )
        job = enqueue(
            session,
            ORPHAN_DELETE_KIND,
            {"provider_id": orphan.provider_id, "server_id": orphan.server_id},
            resource_key=f"server:{orphan.provider_id}:{orphan.server_id}",
            dedup_key=f"orphan-delete:{orphan.provider_id}:{orphan.server_id}",
            created_by=actor,
        )
        audit.record(
            session,
            actor=actor,
            action="orphan.delete",
            target=f"server:{orphan.provider_id}:{orphan.server_id}",
            outcome="ok",
            detail={"name": orphan.name, "job_id": job.id},
        )
        session.flush()
        session.expunge(job)
        return job


def adopt_orphan(app: AppContext, orphan_id: int, *, actor: str) -> tuple[Node, Job]:
    with app.database.session(write=True) as session:
        orphan = _get(session, orphan_id)
        node = session.get(Node, orphan.node_id) if orphan.node_id is not None else None
        connection = session.get(ProviderConnection, orphan.provider_id)
        if node is None or node.provider_id != orphan.provider_id or connection is None:
            raise CannotAdopt("no node of this installation claims this server: delete it instead")
        if node.status == NodeStatus.released.value or node.server_id not in (None, orphan.server_id):
            raise CannotAdopt(f"node {node.id} is {node.status} with another server: delete this one instead")
        if NodeStatus(node.status) not in (NodeStatus.failed, NodeStatus.lost):
            raise CannotAdopt(f"node {node.id} is {node.status}: wait until it has failed, then adopt")
        if release_pending(session, node):
            raise CannotAdopt(f"node {node.id} is being released: delete this server instead")
        if node.host_key_secret_id is None or not node.host_public_key or not orphan.ipv4:
            raise CannotAdopt(
                "nodewright does not hold this server's host key, so it cannot be pinned: delete it"
            )
        try:
            address = plain_address(orphan.ipv4)
        except ValueError:
            raise CannotAdopt(f"server address {orphan.ipv4[:64]!r} is not a plain IP address") from None
        node.server_id, node.server_name, node.server_status = orphan.server_id, orphan.name, orphan.status
        node.ssh_address, node.ssh_port, node.ssh_user = address, connection.ssh_port, connection.ssh_user
        evidence = dict(node.evidence or {})
        stages = dict(evidence.get("stages") or {})
        stages[Stage.acquire.value] = {"ok": True, "adopted": True}
        stages.pop(Stage.provision.value, None)
        evidence["stages"] = stages
        evidence["acquisition"] = {
            **dict(evidence.get("acquisition") or {}),
            "adopted_orphan": orphan.server_id,
        }
        node.evidence = evidence
        node.status, node.stage = NodeStatus.pending.value, Stage.connect.value
        node.error_code = node.error_message = node.error_hint = None
        node.error_retryable = None
        job = start_node_job(
            session, node, PROVISION_KIND, {"adopted": orphan.server_id}, actor=actor, action="orphan.adopt",
            target=f"server:{orphan.provider_id}:{orphan.server_id}", detail={"node_id": node.id},
        )  # fmt: skip
        session.delete(orphan)
        session.flush()
        session.expunge_all()
        return node, job
