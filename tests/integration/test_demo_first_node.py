"""The demo's first node is made once per data directory: not when its record is there, not when a
node named demo-1 exists in any status; its token replaces the previous start's; the reconcile it
queues at start is the periodic one's (never a second at once)."""

from __future__ import annotations

import stat

from sqlalchemy import select

from nodewright.context import AppContext
from nodewright.db.models import ApiToken, Job, Node, ProviderConnection
from nodewright.demo import access, first_node
from nodewright.providers import connections
from nodewright.security.accounts import bootstrap_admin_once
from nodewright.security.api_tokens import resolve_token
from nodewright.security.secret import Secret


def add_connection(ctx: AppContext) -> int:
    with ctx.database.session(write=True) as session:
        secret = ctx.box.store(session, connections.TOKEN_PURPOSE, Secret("s" * 64))
        row = ProviderConnection(kind="hetzner", name="simulator", token_secret_id=secret.id,
                                 token_fingerprint="sha256:s", api_endpoint="http://127.0.0.1:9/v1",
                                 ssh_port=22, ssh_user="root", status="ok",
                                 created_by="system:demo")  # fmt: skip
        session.add(row)
        session.flush()
        return int(row.id)


def add_node(ctx: AppContext, provider_id: int, name: str, status: str) -> int:
    with ctx.database.session(write=True) as session:
        node = Node(name=name, contract="provider/v1", provider_id=provider_id, location="fsn1",
                    server_type="cx23", image="ubuntu-24.04", labels={}, profile="baseline",
                    ssh_authorized_keys=[], status=status, evidence={}, created_by="system:demo")  # fmt: skip
        session.add(node)
        session.flush()
        return int(node.id)


def test_demo_1_is_made_once_per_data_directory(app_context: AppContext) -> None:
    data_dir = app_context.settings.data_dir
    assert first_node.existing(app_context) is None
    first_node.write_record(data_dir, node_id=7, job_id=9)
    assert stat.S_IMODE(first_node.record_path(data_dir).stat().st_mode) == 0o600
    assert first_node.existing(app_context) == first_node.Existing(7, None)
    first_node.record_path(data_dir).write_text("{half")  # damaged: still says a node was made
    assert first_node.existing(app_context) == first_node.Existing(None, None)

    first_node.record_path(data_dir).unlink()  # record lost: the node itself says so, released or not
    provider_id = add_connection(app_context)
    add_node(app_context, provider_id, "other", "ready")
    node_id = add_node(app_context, provider_id, first_node.NODE_NAME, "released")
    assert first_node.existing(app_context) == first_node.Existing(node_id, "released")


def test_each_start_has_one_demo_token_and_one_reconcile(app_context: AppContext) -> None:
    assert bootstrap_admin_once(app_context.database) is not None
    first, username, role = access.demo_token(app_context)
    second, _, _ = access.demo_token(app_context)
    assert (username, role) == ("admin", "admin")
    with app_context.database.session() as session:
        assert resolve_token(session, first.reveal()) is None  # revoked by the next start
        found = resolve_token(session, second.reveal())
        assert found is not None and found[1].username == "admin"
        names = session.scalars(select(ApiToken.name).where(ApiToken.revoked_at.is_(None))).all()
        assert names == [access.TOKEN_NAME]

    provider_id = add_connection(app_context)
    job_id = first_node.queue_reconcile(app_context, provider_id)
    assert first_node.queue_reconcile(app_context, provider_id) == job_id
    with app_context.database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.kind, job.args, job.state) == (
            "nodes.reconcile",
            {"provider_id": provider_id},
            "queued",
        )
