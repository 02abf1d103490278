# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""What a failing stage writes on the node row is redacted like the job's own error: the node's
error message is shown by the API, the dashboard and the CLI."""

from __future__ import annotations

import secrets

from fastapi.testclient import TestClient

from nodewright.context import AppContext
from nodewright.db.models import Job, Node
from nodewright.jobs.context import JobContext
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.errors import JobError
from nodewright.jobs.registry import Registry
from nodewright.nodes import progress
from nodewright.nodes.states import Stage
from nodewright.security.roles import Role
from nodewright.security.secret import Secret
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import RoleUser
from tests.support.jobs import run_next

SECRET = Secret("nw-test-" + secrets.token_hex(16))


def failing_verify(ctx: JobContext) -> None:
    def check() -> None:
        # A check's output comes from the node: it may echo anything the node holds.
        raise JobError("readiness_failed", f"check 'x' failed: {SECRET.reveal()}", hint=SECRET.reveal())

    progress.run_stage(ctx, int(ctx.args["node_id"]), Stage.verify, check)


def test_a_stage_failure_reaches_the_node_redacted(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    connection = client.post(
        "/api/providers",
        json={"kind": "hetzner", "name": "sim", "token": random_token(), "api_endpoint": sim.api_url},
        headers=role_users[Role.admin].headers,
    )
    assert connection.status_code == 201, connection.text
    registry = Registry()
    registry.register("test.failing_verify", failing_verify, max_attempts=1)
    with app_context.database.session(write=True) as session:
        node = Node(
            name="leaky", contract="provider/v1", provider_id=connection.json()["id"], location="fsn1",
            server_type="cx23", image="ubuntu-24.04", labels={}, profile="baseline", ssh_authorized_keys=[],
            status="verifying", evidence={}, created_by="test",
        )  # fmt: skip
        session.add(node)
        session.flush()
        job = enqueue(session, "test.failing_verify", {"node_id": node.id})
        node.job_id = job.id
        node_id, job_id = node.id, job.id
    assert run_next(app_context.database, registry=registry) == "failed"
    with app_context.database.session() as session:
        row, job_row = session.get(Node, node_id), session.get(Job, job_id)
        assert row is not None and job_row is not None
        assert row.status == "failed" and row.error_code == "readiness_failed"
        assert SECRET.reveal() not in str(job_row.error)
        assert SECRET.reveal() not in (row.error_message or "") + (row.error_hint or "")
    shown = client.get(f"/api/nodes/{node_id}", headers=role_users[Role.viewer].headers)
    assert shown.status_code == 200 and SECRET.reveal() not in shown.text
