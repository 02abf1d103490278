"""``watching.remediate``: one step of a degraded node's remediation ladder, as a job.

Decided by ``watching.remediation`` (in the check's transaction) and started
``policy.remediation_delay`` later. At its start it looks again: the node still degraded, no
maintenance pause, the fleet brake released (else the step is ``skipped`` or ``held`` and nothing
is done). Then:

- ``reboot``: the provider's reboot action (power on, for a server that is off), waited for;
- ``reprovision``: the connect, provision and verify stages again, on the same server;
- ``replace``: a new server with the node's spec (its own host key, a name with the step's id, the
  node's labels plus ``nodewright.io/replacement``), connected, provisioned and verified; only then
  does the node move onto it (server, address, host key) and the old server is released. A
  replacement that fails is deleted; the node keeps its old server.

The job's steps are checkpoints (a worker lost mid-step resumes); the node's resource key keeps it
apart from the node's checks, provision and release. Cancel it like any job: the step ends
``canceled`` (a replacement server not yet taken over is deleted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from nodewright import runtime
from nodewright.db.models import Node, NodeHealth, NodeRemediation, StoredSecret
from nodewright.db.types import utcnow
from nodewright.jobs.context import JobContext
from nodewright.jobs.errors import INTERNAL_ERROR, JobCanceled, JobError, LeaseLost
from nodewright.jobs.registry import job_handler
from nodewright.nodes import handlers, progress
from nodewright.nodes.reconcile import adapter_for
from nodewright.nodes.states import REMEDIATE_KIND, NodeStatus
from nodewright.providers.acquisition import (
    NodeServerSpec,
    acquire_server,
    generate_host_key,
    installation_id,
)
from nodewright.providers.base import LABEL_REPLACEMENT, HostKeyPair
from nodewright.providers.errors import ProviderError
from nodewright.provisioning.target import SshTarget
from nodewright.watching import brake, events, maintenance, remediation
from nodewright.watching.policy import policy_for
from nodewright.watching.remediation import MAX_ATTEMPTS

T = TypeVar("T")
REPLACEMENT_KEY_PURPOSE = "node_host_key"


class _Uncancelable:
    """The job's checkpoints for cleaning up after a cancel: the cleanup itself must not stop."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    @property
    def canceled(self) -> bool:
        return False

    @property
    def attempt(self) -> int:
        return self._ctx.attempt

    def step(self, name: str, fn: Callable[[], T]) -> T:
        return fn()

    def log(self, message: str, level: str = "info", **data: Any) -> int:
        return self._ctx.log(message, level, **data)


def replacement_name(name: str, remediation_id: int) -> str:
    """The replacement server's name (Hetzner names are unique per project): ``<name>-r<id>``."""
    suffix = f"-r{remediation_id}"
    return name[: 63 - len(suffix)].rstrip("-.") + suffix


def _load(ctx: JobContext, remediation_id: int) -> NodeRemediation:
    with ctx.database.session() as session:
        row = session.get(NodeRemediation, remediation_id)
        if row is None:
            raise JobError("not_found", f"remediation {remediation_id} does not exist")
        session.expunge(row)
        return row


def _begin(ctx: JobContext, node_id: int, remediation_id: int) -> str | None:
    """Look again before acting; ``None`` to go on, else why the step does nothing."""
    actor = f"job:{ctx.job_id}"
    with ctx.transaction() as session:
        row = session.get(NodeRemediation, remediation_id)
        node = session.get(Node, node_id)
        if row is None or node is None or row.state not in ("queued", "running"):
            return f"remediation {remediation_id} is {row.state if row else 'gone'}"
        now = utcnow()
        if row.state == "running":
            return None  # a resumed attempt: started already
        if node.status != NodeStatus.degraded.value:
            row.state, row.reason, row.finished_at = "skipped", f"the node is {node.status}", now
            return row.reason
        window = maintenance.active_for(session, node, now)
        if window is not None:
            row.state, row.finished_at = "skipped", now
            row.reason = f"maintenance {window.id} covers the node: {window.reason}"[:500]
            return row.reason
        if not policy_for(node.profile, runtime.settings()).remediation.enabled:
            # Turned off (or the profile no longer loads) since the step was decided.
            row.state, row.finished_at = "skipped", now
            row.reason = f"remediation is not enabled in profile {node.profile!r} any more"[:500]
            return row.reason
        fleet = brake.evaluate(session, node.provider_id, actor=actor)
        if fleet.engaged:
            row.state, row.finished_at = "held", now
            row.reason = f"held by the fleet brake: {fleet.reason}"[:500]
            return row.reason
        row.state, row.started_at = "running", now
        reason = f"{row.action} (step {row.attempt}): {row.reason}"
        events.remediation_event(session, node, events.REMEDIATION_STARTED, reason, remediation.summary(row),
                                 actor=actor)  # fmt: skip
    return None


def _reboot(ctx: JobContext, node: Node, _row: NodeRemediation) -> dict[str, Any]:
    if node.server_id is None:
        raise JobError("not_found", "the node has no server to reboot")
    adapter = adapter_for(ctx, node.provider_id)
    try:
        adapter.reboot(node.server_id, ctx)
    except ProviderError as error:
        raise error.to_job_error() from None
    finally:
        adapter.close()
    return {"server_id": node.server_id}


def _reprovision(ctx: JobContext, node: Node, _row: NodeRemediation) -> dict[str, Any]:
    started = time.monotonic()
    for stage in (handlers.connect, handlers.provision, handlers.verify):
        stage(ctx, node)
        ctx.check_canceled()
    return {"server_id": node.server_id, "seconds": round(time.monotonic() - started, 3)}


def _replacement_key(ctx: JobContext, remediation_id: int) -> HostKeyPair:
    """The replacement's host key: made once per step, kept as a stored secret across attempts."""
    box = runtime.secret_box()

    def make() -> dict[str, Any]:
        pair = generate_host_key()
        with ctx.transaction() as session:
            stored = box.store(session, REPLACEMENT_KEY_PURPOSE, pair.private_openssh)
            row = session.get(NodeRemediation, remediation_id)
            assert row is not None
            row.detail = {**(row.detail or {}), "host_key_secret_id": stored.id}
        return {"secret_id": stored.id, "public_key": pair.public_openssh.strip()}

    made = ctx.step("replace.host_key", make)
    with ctx.database.session() as session:
        private = box.load(session, int(made["secret_id"]))
    return HostKeyPair(private_openssh=private, public_openssh=str(made["public_key"]))


def _replace(ctx: JobContext, node: Node, row: NodeRemediation) -> dict[str, Any]:
    done = row.detail or {}
    if done.get("swapped"):
        # A resumed attempt after the swap: the node is on the new server already; only the old
        # server's release is left (``node.server_id`` is the NEW server now: never release that).
        old, new = done.get("old_server_id", row.old_server_id), row.new_server_id
        ctx.log(f"node {node.id} is on server {new} already; releasing server {old}")
        if old is not None and old != node.server_id:
            _release(ctx, node.provider_id, int(old), ctx)
        return {"old_server_id": old, "new_server_id": new}
    host_key = _replacement_key(ctx, row.id)
    spec = NodeServerSpec(
        connection_id=node.provider_id,
        node_id=node.id,
        server_name=replacement_name(node.name, row.id),
        location=node.location,
        server_type=node.server_type,
        image=node.image,
        labels={**dict(node.labels), LABEL_REPLACEMENT: str(row.id)},
    )
    try:
        result = acquire_server(ctx, ctx.database, runtime.secret_box(), spec, host_key)
    except ProviderError as error:
        raise error.to_job_error() from None
    if result.target.host_public_key.split()[:2] != host_key.public_openssh.split()[:2]:
        raise JobError("host_key_mismatch", "the provider reported a host key other than the one we injected")
    target = SshTarget(**result.target.to_dict())
    new_server_id = result.evidence.server_id
    with ctx.transaction() as session:
        stored = session.get(NodeRemediation, row.id)
        assert stored is not None
        stored.new_server_id = new_server_id
    # The new server, seen as the node: the stages write their evidence on the node itself.
    view = Node(
        id=node.id, name=node.name, provider_id=node.provider_id, profile=node.profile,
        ssh_address=target.address, ssh_port=target.port, ssh_user=target.user,
        host_public_key=host_key.public_openssh.strip(), ssh_authorized_keys=list(node.ssh_authorized_keys),
        server_id=new_server_id,
    )  # fmt: skip
    for stage in (handlers.connect, handlers.provision, handlers.verify):
        stage(ctx, view)
        ctx.check_canceled()

    def swap() -> dict[str, Any]:
        with ctx.transaction() as session:
            current = session.get(Node, node.id)
            stored = session.get(NodeRemediation, row.id)
            assert current is not None and stored is not None
            if (stored.detail or {}).get("swapped"):  # committed by an attempt lost before its checkpoint
                return {"old_server_id": stored.detail.get("old_server_id"), "new_server_id": new_server_id}
            old_server_id = current.server_id
            old_secret = current.host_key_secret_id
            current.server_id = new_server_id
            current.server_name = result.evidence.server_name
            current.server_status = "running"
            current.ssh_address, current.ssh_port, current.ssh_user = target.address, target.port, target.user
            current.host_public_key = host_key.public_openssh.strip()
            current.host_key_fingerprint = target.host_key_fingerprint
            current.host_key_secret_id = int((stored.detail or {})["host_key_secret_id"])
            evidence = dict(current.evidence or {})
            evidence["acquisition"] = result.evidence.to_dict()
            evidence["replacements"] = [
                *list(evidence.get("replacements") or []),
                {"remediation_id": row.id, "old_server_id": old_server_id, "new_server_id": new_server_id,
                 "at": utcnow().isoformat()},
            ]  # fmt: skip
            current.evidence = evidence
            stored.detail = {**(stored.detail or {}), "swapped": True, "old_server_id": old_server_id}
            if old_secret is not None and old_secret != current.host_key_secret_id:
                secret = session.get(StoredSecret, old_secret)
                if secret is not None:
                    session.delete(secret)
        return {"old_server_id": old_server_id, "new_server_id": new_server_id}

    swapped = ctx.step("replace.swap", swap)
    old_server_id = swapped["old_server_id"]
    ctx.log(f"node {node.id} moved to server {new_server_id}; releasing server {old_server_id}")
    if old_server_id is not None:
        _release(ctx, node.provider_id, old_server_id, ctx)
    return {"old_server_id": old_server_id, "new_server_id": new_server_id}


def _release(ctx: JobContext, provider_id: int, server_id: int, checkpoints: Any) -> None:
    adapter = adapter_for(ctx, provider_id)
    try:
        adapter.release(server_id, checkpoints)
    except ProviderError as error:
        raise error.to_job_error() from None
    finally:
        adapter.close()


def _clean_up_replacement(ctx: JobContext, remediation_id: int) -> str:
    """A replacement that will not be taken over: delete its server and its host key."""
    row = _load(ctx, remediation_id)
    detail = row.detail or {}
    if detail.get("swapped"):
        return ""
    note = ""
    server_id = row.new_server_id
    if server_id is None:
        # Created but not recorded (a crash, a cancel mid-acquire): find it by the step's label.
        adapter = adapter_for(ctx, row.provider_id)
        try:
            found = [
                s for s in adapter.list_owned(installation_id(ctx.database))
                if s.labels.get(LABEL_REPLACEMENT) == str(remediation_id)
            ]  # fmt: skip
        except ProviderError:
            found = []
        finally:
            adapter.close()
        server_id = found[0].id if found else None
    if server_id is not None:
        try:
            _release(ctx, row.provider_id, server_id, _Uncancelable(ctx))
            note = f"; replacement server {server_id} deleted"
        except JobError as error:
            note = f"; replacement server {server_id} could not be deleted ({error.message}): see orphans"
    secret_id = detail.get("host_key_secret_id")
    with ctx.transaction() as session:
        if secret_id is not None:
            secret = session.get(StoredSecret, int(secret_id))
            if secret is not None:
                session.delete(secret)
        stored = session.get(NodeRemediation, remediation_id)
        if stored is not None:
            stored.detail = {**(stored.detail or {}), "host_key_secret_id": None, "cleaned_up": True}
    return note


ACTIONS: dict[str, Callable[[JobContext, Node, NodeRemediation], dict[str, Any]]] = {
    "reboot": _reboot,
    "reprovision": _reprovision,
    "replace": _replace,
}


def _settle(ctx: JobContext, node_id: int, remediation_id: int, state: str, reason: str) -> None:
    """End the step's job: ``waiting`` (acted; the checks after the grace decide), or ``failed`` /
    ``canceled``. Either way the node gets a grace period and counting starts afresh."""
    with ctx.transaction() as session:
        row = session.get(NodeRemediation, remediation_id)
        node = session.get(Node, node_id)
        if row is None or node is None:
            return
        now = utcnow()
        if state == "waiting":
            row.state, row.reason, row.finished_at = "waiting", remediation.safe_reason(reason), now
        else:
            remediation.finish(session, node, row, state, reason, actor=f"job:{ctx.job_id}", now=now)
        # The node's evidence keeps its last step (the full list is GET /api/nodes/{id}/health).
        last = {**remediation.summary(row), "reason": row.reason, "job_id": ctx.job_id, "at": now.isoformat()}
        node.evidence = {**(node.evidence or {}), "remediation": last}
        health = session.get(NodeHealth, node_id)
        if health is not None and node.status == NodeStatus.degraded.value:
            remediation.restart_grace(health, policy_for(node.profile, runtime.settings()), now)


@job_handler(REMEDIATE_KIND, max_attempts=max(MAX_ATTEMPTS.values()), backoff_cap=60.0)
def remediate(ctx: JobContext) -> dict[str, Any]:
    node_id, remediation_id = int(ctx.args["node_id"]), int(ctx.args["remediation_id"])
    why_not = _begin(ctx, node_id, remediation_id)
    if why_not is not None:
        ctx.log(f"nothing done: {why_not}")
        return {"node_id": node_id, "remediation_id": remediation_id, "done": False, "reason": why_not}
    row = _load(ctx, remediation_id)
    node = progress.load(ctx, node_id)
    ctx.log(f"{row.action} of node {node_id} (step {row.attempt})")
    try:
        outcome = ACTIONS[row.action](ctx, node, row)
    except LeaseLost:
        raise
    except JobCanceled:
        if (_load(ctx, remediation_id).detail or {}).get("swapped"):
            # The node is on its new server already: only the old one's release was cut short.
            _settle(ctx, node_id, remediation_id, "waiting",
                    "replaced; canceled before the old server was released: see orphans")  # fmt: skip
            raise
        note = _clean_up_replacement(ctx, remediation_id) if row.action == "replace" else ""
        _settle(ctx, node_id, remediation_id, "canceled", f"the {row.action} was canceled{note}")
        raise
    except Exception as exc:
        error = (
            exc
            if isinstance(exc, JobError)
            else JobError(INTERNAL_ERROR, f"{row.action} failed unexpectedly", retryable=True)
        )
        final = not error.retryable or ctx.attempt >= ctx.max_attempts
        if final:
            swapped = bool((_load(ctx, remediation_id).detail or {}).get("swapped"))
            if swapped:  # on the new server already: only the old one's release failed
                reason = f"replaced; the old server could not be released ({error.message}): see orphans"
                _settle(ctx, node_id, remediation_id, "waiting", reason)
                return {"node_id": node_id, "remediation_id": remediation_id, "done": True, "orphaned": True}
            note = _clean_up_replacement(ctx, remediation_id) if row.action == "replace" else ""
            _settle(ctx, node_id, remediation_id, "failed", f"the {row.action} failed: {error.code}: "
                    f"{error.message}{note}")  # fmt: skip
        if exc is error:
            raise
        raise error from exc
    _settle(
        ctx,
        node_id,
        remediation_id,
        "waiting",
        f"{row.action} done; the checks decide after the grace period",
    )
    ctx.log(f"{row.action} done: {outcome}")
    return {"node_id": node_id, "remediation_id": remediation_id, "done": True, **outcome}
