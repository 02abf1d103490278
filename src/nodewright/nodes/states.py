"""Node statuses, the stages of ``node_provision``, and the versioned create contract."""

from __future__ import annotations

from enum import StrEnum


class NodeStatus(StrEnum):
    pending = "pending"
    acquiring = "acquiring"
    provisioning = "provisioning"
    verifying = "verifying"
    ready = "ready"
    degraded = "degraded"  # ready, but the watcher's checks keep failing (watching.health)
    failed = "failed"
    releasing = "releasing"
    released = "released"
    lost = "lost"


class Stage(StrEnum):
    acquire = "acquire"
    connect = "connect"
    provision = "provision"
    verify = "verify"
    release = "release"


PROVISION_STAGES = (Stage.acquire, Stage.connect, Stage.provision, Stage.verify)

# The status a node shows while a stage runs.
STAGE_STATUS = {
    Stage.acquire: NodeStatus.acquiring,
    Stage.connect: NodeStatus.provisioning,
    Stage.provision: NodeStatus.provisioning,
    Stage.verify: NodeStatus.verifying,
    Stage.release: NodeStatus.releasing,
}

IN_PROGRESS = frozenset(
    {NodeStatus.pending, NodeStatus.acquiring, NodeStatus.provisioning, NodeStatus.verifying}
)
RETRYABLE_FROM = frozenset({NodeStatus.failed})
RELEASABLE_FROM = frozenset(
    {
        *IN_PROGRESS,
        NodeStatus.ready,
        NodeStatus.degraded,
        NodeStatus.failed,
        NodeStatus.lost,
        NodeStatus.releasing,
    }
)
# The statuses the watcher checks: a node at rest with its server (degraded goes back to ready).
WATCHED = frozenset({NodeStatus.ready, NodeStatus.degraded})

# The create contract: what POST /api/nodes accepts. A deployment pins the versions it accepts
# (NODEWRIGHT_NODE_CONTRACTS), which is the seed's rollback step 3.
CONTRACT_PROVIDER_V1 = "provider/v1"
CONTRACTS = (CONTRACT_PROVIDER_V1,)

PROVISION_KIND = "nodes.provision"
RELEASE_KIND = "nodes.release"
RECONCILE_KIND = "nodes.reconcile"
REMEDIATE_KIND = "watching.remediate"  # a remediation step (watching.remediate)


def resource_key(node_id: int) -> str:
    return f"node:{node_id}"
