"""One check of one node: the server's status at the provider (from the sweep's batched list),
then over SSH with the pinned host key the readiness checks ``verify`` runs and the profile's
``watch.checks``, all ended at the policy's timeout: in ONE remote command over one connection
(``provisioning.check_batch``), with the installation's ``watch_ssh_kex_algorithms``."""

from __future__ import annotations

import time

from nodewright import runtime
from nodewright.db.models import Node
from nodewright.jobs.context import JobContext
from nodewright.nodes.handlers import ssh_session
from nodewright.provisioning.check_batch import run_batched
from nodewright.provisioning.checks import CheckResult
from nodewright.watching.policy import WatchPolicy

PROVIDER_CHECK = "server running at the provider"
# Statuses of a server at the provider that SSH cannot help with.
NOT_RUNNING = {"off", "stopping", "deleting", "missing", "gone", "migrating", "rebuilding"}


def provider_check(node: Node) -> CheckResult | None:
    status = node.server_status
    if status in (None, "", "kept", "deleted"):
        return None  # not known yet: the sweep has not listed the connection
    if status == "running":
        return CheckResult(PROVIDER_CHECK, True, "running")
    if status == "missing":
        return CheckResult(PROVIDER_CHECK, False, "not in the provider's listing of our servers")
    return CheckResult(PROVIDER_CHECK, False, f"status {status}")


def run(ctx: JobContext, node: Node, policy: WatchPolicy) -> list[CheckResult]:
    results: list[CheckResult] = []
    provider = provider_check(node)
    if provider is not None:
        results.append(provider)
        if not provider.ok and node.server_status in NOT_RUNNING:
            return results  # SSH to a server that is off only waits for the timeout
    if policy.profile is None:
        return [*results, CheckResult("profile", False, f"profile {node.profile!r} cannot be loaded")]
    if not (node.ssh_address and node.ssh_port and node.ssh_user and node.host_public_key):
        return [*results, CheckResult("ssh with the pinned host key", False, "the node has no SSH target")]
    deadline = time.monotonic() + policy.timeout_seconds
    kex = runtime.settings().watch_ssh_kex_algorithms
    with ssh_session(ctx, node, kex_algorithms=kex) as (ssh, _key):
        ssh.connect_timeout = max(1, min(ssh.connect_timeout, int(policy.timeout_seconds)))
        found = run_batched(
            ssh, node_id=node.id, profile=policy.profile, watch_checks=policy.checks, deadline=deadline
        )
    return [*results, *found]
