"""``nodes.provision`` and ``nodes.release``: the node's life as durable jobs.

node_provision runs four stages, each with its own deadline and failure code:
acquire (provider adapter: create -> poll actions -> fetch, checkpointed) -> connect (SSH with the
pinned host key) -> provision (ansible-runner, the node's profile) -> verify (readiness checks).
Stages a previous job finished (``evidence.stages``) are not run again: a retry resumes where the
node failed. After acquire, only the provider-agnostic SSH target is used.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nodewright import runtime
from nodewright.db.models import Node, ProviderConnection, StoredSecret
from nodewright.db.types import utcnow
from nodewright.jobs.context import JobContext
from nodewright.jobs.errors import DEADLINE_EXCEEDED, JobError
from nodewright.jobs.processes import MARKER_ENV
from nodewright.jobs.registry import job_handler
from nodewright.nodes import progress
from nodewright.nodes.states import PROVISION_KIND, RELEASE_KIND, NodeStatus, Stage
from nodewright.providers.acquisition import (
    NodeServerSpec,
    acquire_server,
    generate_host_key,
    installation_id,
    load_client_private_key,
)
from nodewright.providers.base import LABEL_NODE, HostKeyPair
from nodewright.providers.connections import connection_info
from nodewright.providers.errors import ProviderError
from nodewright.providers.registry import make_adapter
from nodewright.provisioning.agent import ssh_agent
from nodewright.provisioning.checks import run_checks
from nodewright.provisioning.profiles import ProfileError, get_profile
from nodewright.provisioning.runner import run_playbook
from nodewright.provisioning.ssh import HOST_KEY_MISMATCH, SSH_AUTH_FAILED, PinnedSsh
from nodewright.provisioning.target import SshTarget
from nodewright.security.redaction import redact
from nodewright.security.secret import Secret
from nodewright.security.text import clean_value
from nodewright.watching import events

HOST_KEY_PURPOSE = "node_host_key"


SSH_HINTS = {
    HOST_KEY_MISMATCH: "Something other than this node answers at its address: do not trust it. "
    "Release the node; if it repeats, check the provider's network.",
    SSH_AUTH_FAILED: "nodewright's key was refused: the image must install cloud-init SSH keys "
    "(Hetzner's images do). Pick another image or release the node.",
    "ssh_unreachable": "The server did not answer SSH in time: check its firewall and that the image "
    "starts sshd, then retry.",
}
# A stage that ran out of time on a node that let us in: the node, not nodewright, is the suspect.
NODE_DEADLINE_HINT = (
    "Look at the node: a login shell or rc file that prints without end or waits (~/.bashrc, "
    "/etc/profile.d, the login user's shell), or a process that keeps the SSH session open. "
    "Retried automatically; release the node if it repeats."
)


def _host_key(ctx: JobContext, node: Node) -> HostKeyPair:
    """The node's host key: made once, kept as a stored secret, the same on every retry."""
    box = runtime.secret_box()
    if node.host_key_secret_id is not None and node.host_public_key:
        with ctx.database.session() as session:
            private = box.load(session, node.host_key_secret_id)
        return HostKeyPair(private_openssh=private, public_openssh=node.host_public_key)
    pair = generate_host_key()
    target_fingerprint = SshTarget("127.0.0.1", 22, "root", pair.public_openssh).host_key_fingerprint
    with ctx.transaction() as session:
        stored = box.store(session, HOST_KEY_PURPOSE, pair.private_openssh)
        row = session.get(Node, node.id)
        assert row is not None
        row.host_key_secret_id = stored.id
        row.host_public_key = pair.public_openssh.strip()
        row.host_key_fingerprint = target_fingerprint
    return pair


def _target(node: Node) -> SshTarget:
    assert node.ssh_address and node.ssh_port and node.ssh_user and node.host_public_key
    return SshTarget(node.ssh_address, node.ssh_port, node.ssh_user, node.host_public_key)


def acquire(ctx: JobContext, node: Node) -> None:
    host_key = _host_key(ctx, node)
    spec = NodeServerSpec(
        connection_id=node.provider_id,
        node_id=node.id,
        server_name=node.name,
        location=node.location,
        server_type=node.server_type,
        image=node.image,
        labels=dict(node.labels),
    )
    started = time.monotonic()
    result = acquire_server(ctx, ctx.database, runtime.secret_box(), spec, host_key)
    if result.target.host_public_key.split()[:2] != host_key.public_openssh.split()[:2]:
        raise JobError(HOST_KEY_MISMATCH, "the provider reported a host key other than the one we injected")
    # Validated here: nothing past this point trusts the adapter's strings unchecked.
    target = SshTarget(**result.target.to_dict())
    evidence = result.evidence.to_dict()
    evidence["seconds"] = round(time.monotonic() - started, 3)
    progress.add_evidence(
        ctx,
        node.id,
        "acquisition",
        evidence,
        server_id=result.evidence.server_id,
        server_name=result.evidence.server_name,
        server_status="running",
        ssh_address=target.address,
        ssh_port=target.port,
        ssh_user=target.user,
    )


def job_tag(ctx: JobContext) -> dict[str, str]:
    """The one environment entry that marks a subprocess (and its descendants) as this job's, so the
    engine kills whatever a lost or canceled attempt left running (ssh-agent, ssh, ansible-playbook)."""
    return {MARKER_ENV: ctx.process_env()[MARKER_ENV]}


@contextmanager
def ssh_session(
    ctx: JobContext, node: Node, *, multiplex: bool = False, kex_algorithms: str = ""
) -> Iterator[tuple[PinnedSsh, Secret]]:
    """A private agent holding the connection's client key and a pinned SSH client for the node
    (``multiplex``: its commands share one master connection, ended with the session;
    ``kex_algorithms``: OpenSSH's ``KexAlgorithms``, empty for its default)."""
    key = load_client_private_key(ctx.database, runtime.secret_box(), node.provider_id)
    workdir = Path(tempfile.mkdtemp(prefix="nw-ssh-"))
    tag = job_tag(ctx)
    try:
        with ssh_agent(key, directory=workdir, tag=tag) as socket:
            ssh = PinnedSsh(
                _target(node), socket, workdir, tag=tag, multiplex=multiplex, kex_algorithms=kex_algorithms
            )
            try:
                yield ssh, key
            finally:
                ssh.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _ServerWatch:
    """While connect waits for SSH, asks the provider now and then whether the server still exists:
    one deleted behind our back (in the provider's console, or a simulator that restarted empty)
    ends the stage at once instead of at the connect deadline. A provider error is no verdict."""

    def __init__(self, ctx: JobContext, node: Node, deadline_seconds: float) -> None:
        self.ctx, self.node = ctx, node
        self.every = max(2.0, min(15.0, deadline_seconds / 4))
        self.next_look = time.monotonic() + self.every
        self.gone = False

    def should_stop(self) -> bool:
        if self.ctx.canceled or self.gone:
            return True
        if self.node.server_id is None or time.monotonic() < self.next_look:
            return False
        self.next_look = time.monotonic() + self.every
        from nodewright.nodes.reconcile import adapter_for

        try:
            adapter = adapter_for(self.ctx, self.node.provider_id)
            try:
                self.gone = adapter.inspect(self.node.server_id) is None
            finally:
                adapter.close()
        except (ProviderError, LookupError):
            return False
        return self.gone


def connect(ctx: JobContext, node: Node) -> None:
    deadline_seconds = runtime.settings().node_connect_deadline
    started = time.monotonic()
    watch = _ServerWatch(ctx, node, deadline_seconds)
    with ssh_session(ctx, node) as (ssh, _key):
        tries, failure = ssh.wait_until_reachable(
            deadline=started + deadline_seconds, should_stop=watch.should_stop
        )
    ctx.check_canceled()
    if watch.gone:
        from nodewright.nodes.reconcile import LOST_HINT

        raise JobError(
            "server_gone",
            f"server {node.server_id} no longer exists at the provider (after {tries} SSH tries)",
            retryable=False,
            hint=LOST_HINT,
        )
    seconds = round(time.monotonic() - started, 3)
    if failure is not None:
        if failure.code == DEADLINE_EXCEEDED:
            raise JobError(
                DEADLINE_EXCEEDED,
                f"connect ran past its {deadline_seconds:g} s deadline ({tries} tries): {failure.message}",
                retryable=True,
                hint=NODE_DEADLINE_HINT,
            )
        message = (
            failure.message
            if failure.code != "ssh_unreachable"
            else (f"no SSH answer within {deadline_seconds:g} s ({tries} tries): {failure.message}")
        )
        raise JobError(failure.code, message, retryable=False, hint=SSH_HINTS.get(failure.code))
    progress.add_evidence(
        ctx,
        node.id,
        "connect",
        {"tries": tries, "seconds": seconds, "host_key_fingerprint": ssh.target.host_key_fingerprint},
    )


def _profile(node: Node) -> Any:
    try:
        return get_profile(node.profile, runtime.settings().resolved_profiles_dir)
    except ProfileError as exc:
        raise JobError(
            "provisioning_failed", str(exc), hint="Fix or restore the profile, then retry."
        ) from None


def provision(ctx: JobContext, node: Node) -> None:
    profile = _profile(node)

    def run() -> dict[str, Any]:
        # Ansible's events reach the job log in batches (one commit each), not one write per event.
        with ssh_session(ctx, node) as (ssh, key), ctx.buffered_log() as sink:
            outcome = run_playbook(
                target=ssh.target,
                client_key=key,
                playbook=profile.playbook,
                extravars={
                    "nw_node_id": node.id,
                    "nw_node_name": node.name,
                    "nw_profile": profile.name,
                    "nw_profile_version": profile.full_version,
                    "nw_admin_keys": list(node.ssh_authorized_keys),
                },
                sink=sink,
                should_cancel=lambda: ctx.canceled,
                timeout_seconds=profile.timeout_seconds,
                tag=ssh.tag,
            )
        if outcome.status == "canceled":
            ctx.check_canceled()
        if outcome.status == "timeout":
            where = f" (during task '{outcome.last_task}')" if outcome.last_task else ""
            raise JobError(
                DEADLINE_EXCEEDED,
                f"the playbook ran past the profile's {profile.timeout_seconds:g} s deadline{where}; "
                "its processes were ended",
                retryable=True,
                hint=NODE_DEADLINE_HINT + " If the profile is just slow, raise its timeout_seconds.",
            )
        failed = outcome.failed
        if not outcome.ok and failed is None and outcome.status == "failed":
            # ansible-playbook ended without reporting a failed task (killed, crashed): not the
            # profile's fault, so another attempt may well succeed.
            raise JobError(
                "provisioning_failed",
                f"ansible-playbook ended without a result (exit {outcome.rc})",
                retryable=True,
                hint="Retried automatically; if it repeats, see the server log.",
            )
        if not outcome.ok:
            if failed is not None and failed.unreachable:
                raise JobError("ssh_unreachable", f"lost the node during '{failed.task}': {failed.message}",
                               retryable=True, hint=SSH_HINTS["ssh_unreachable"])  # fmt: skip
            where = (
                f"task '{failed.task}' failed: {failed.message}" if failed else f"ansible exited {outcome.rc}"
            )
            raise JobError("provisioning_failed", where, hint="See the job log for the failing task; fix the "
                           "profile or the node, then retry.")  # fmt: skip
        return {
            "profile": profile.name,
            "profile_version": profile.full_version,
            "recap": outcome.recap,
            "tasks": outcome.tasks,
            "seconds": round(outcome.seconds, 3),
        }

    # A checkpoint: an attempt resuming after a crash does not run the playbook again.
    summary = ctx.step("provision.playbook", run)
    progress.add_evidence(ctx, node.id, "provision", summary)


def verify(ctx: JobContext, node: Node) -> None:
    profile = _profile(node)
    deadline_seconds = runtime.settings().node_verify_deadline
    deadline = time.monotonic() + deadline_seconds
    with ssh_session(ctx, node, multiplex=True) as (ssh, _key):
        results = run_checks(ssh, node_id=node.id, profile=profile, deadline=deadline)
    checks = [r.as_dict() for r in results]
    progress.add_evidence(ctx, node.id, "checks", checks)
    for result in results:
        ctx.log(f"check {'ok' if result.ok else 'FAILED'}: {result.name}: {result.detail}",
                "info" if result.ok else "error")  # fmt: skip
    failed = [r for r in results if not r.ok]
    if failed and failed[0].timed_out:
        raise JobError(
            DEADLINE_EXCEEDED,
            f"check '{failed[0].name}' was still running at the {deadline_seconds:g} s verify deadline",
            retryable=True,
            hint=NODE_DEADLINE_HINT,
        )
    if failed:
        raise JobError(
            "readiness_failed",
            f"check '{failed[0].name}' failed: {failed[0].detail}",
            hint="The node is reachable but not as the profile expects; see the checks in its evidence.",
        )


def _refresh_login(ctx: JobContext, node: Node) -> None:
    """The SSH port and user come from the connection (the operator fixes them there, then retries);
    the address comes from the server."""
    if node.ssh_address is None:
        return
    with ctx.database.session() as session:
        connection = session.get(ProviderConnection, node.provider_id)
        login = (connection.ssh_port, connection.ssh_user) if connection is not None else None
    if login is not None and login != (node.ssh_port, node.ssh_user):
        ctx.log(f"SSH login now {login[1]}@…:{login[0]} (from the provider connection)")
        progress.update(ctx, node.id, ssh_port=login[0], ssh_user=login[1])


STAGES = (
    (Stage.acquire, acquire),
    (Stage.connect, connect),
    (Stage.provision, provision),
    (Stage.verify, verify),
)


# Attempts are spent by retryable provider errors and by lost workers (a crash, kill -9, a lost
# lease): every stage resumes from its checkpoints, so a node outlives many of them; the cap on the
# backoff keeps a long outage from pushing the next try out by hours.
@job_handler(PROVISION_KIND, max_attempts=12, backoff_cap=120.0)
def node_provision(ctx: JobContext) -> dict[str, Any]:
    node_id = int(ctx.args["node_id"])
    node = progress.load(ctx, node_id)
    if NodeStatus(node.status) in (NodeStatus.releasing, NodeStatus.released, NodeStatus.lost):
        ctx.log(f"node is {node.status}: nothing to provision")
        return {"node_id": node_id, "status": node.status}
    progress.update(ctx, node_id, error_code=None, error_message=None, error_hint=None, error_retryable=None)
    _refresh_login(ctx, node)
    for stage, run in STAGES:
        node = progress.load(ctx, node_id)
        if stage in (Stage.acquire, Stage.provision) and progress.stage_done(node, stage):
            ctx.log(f"stage {stage.value} already done: skipped", stage=stage.value)
            continue
        progress.run_stage(ctx, node_id, stage, functools.partial(run, ctx, node))
    with ctx.transaction() as session:
        row = session.get(Node, node_id)
        assert row is not None
        previous = row.status
        row.status, row.stage, row.ready_at = NodeStatus.ready.value, None, utcnow()
        session.flush()
        events.node_health_changed(
            session, row, previous, row.status, "provisioned and verified", actor=f"job:{ctx.job_id}"
        )
    ctx.log("node ready")
    return {"node_id": node_id, "status": NodeStatus.ready.value}


def _owned_server(ctx: JobContext, node: Node, adapter: Any) -> int | None:
    """The node's server: the recorded id, else one carrying our labels (a crash before we wrote it)."""
    if node.server_id is not None:
        return node.server_id
    owned = [
        s
        for s in adapter.list_owned(installation_id(ctx.database))
        if s.labels.get(LABEL_NODE) == str(node.id)
    ]
    if len(owned) > 1:
        ctx.log(
            f"{len(owned)} servers carry this node's labels; releasing {owned[0].id}, "
            "reconcile lists the rest",
            "warning",
        )
    return owned[0].id if owned else None


def _release_server(ctx: JobContext, node: Node) -> dict[str, Any]:
    box = runtime.secret_box()
    with ctx.database.session() as session:
        row = session.get(ProviderConnection, node.provider_id)
        if row is None:
            raise JobError("not_found", f"provider connection {node.provider_id} is gone")
        info = connection_info(box, session, row)
    adapter = make_adapter(info, database=ctx.database)
    try:
        server_id = _owned_server(ctx, node, adapter)
        if server_id is None:
            ctx.log("no server to delete (it was never created)")
            return {"server_id": None, "deleted": False}
        evidence = adapter.release(server_id, ctx)
        return {"server_id": server_id, "deleted": True, **evidence.to_dict()}
    finally:
        adapter.close()


@job_handler(RELEASE_KIND, max_attempts=12, backoff_cap=120.0)
def node_release(ctx: JobContext) -> dict[str, Any]:
    node_id = int(ctx.args["node_id"])
    keep_server = bool(ctx.args.get("keep_server"))
    node = progress.load(ctx, node_id)
    if node.status == NodeStatus.released.value:
        return {"node_id": node_id, "status": node.status}

    def release() -> dict[str, Any]:
        if keep_server:
            ctx.log(f"detached: server {node.server_id} is kept at the provider")
            return {"server_id": node.server_id, "deleted": False, "detached": True}
        return _release_server(ctx, node)

    outcome = progress.run_stage(ctx, node_id, Stage.release, release)
    with ctx.transaction() as session:
        row = session.get(Node, node_id)
        assert row is not None
        previous = row.status
        row.status = NodeStatus.released.value
        reason = "released, server kept" if keep_server else "released, server deleted"
        events.node_health_changed(session, row, previous, row.status, reason, actor=f"job:{ctx.job_id}")
        row.stage = None
        row.released_at = utcnow()
        row.server_status = "kept" if keep_server else "deleted"
        row.error_code = row.error_message = row.error_hint = None
        row.error_retryable = None
        evidence = dict(row.evidence or {})
        # Provider text (error codes, correlation ids) is stored as the other stages' evidence is.
        evidence["release"] = clean_value(redact(outcome))
        row.evidence = evidence
        # The host key's private half is of no use once the server is gone (or no longer ours).
        if row.host_key_secret_id is not None:
            secret = session.get(StoredSecret, row.host_key_secret_id)
            row.host_key_secret_id = None
            if secret is not None:
                session.delete(secret)
        session.flush()
    ctx.log("node released")
    # The job's result says what happened; the calls and actions are in the node's evidence.
    summary = {k: v for k, v in outcome.items() if k in ("server_id", "deleted", "detached")}
    return {"node_id": node_id, "status": NodeStatus.released.value, **summary}
