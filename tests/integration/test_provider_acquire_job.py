"""Acquire inside a real job: checkpoints are job steps, a resumed attempt does not create again,
provider errors become the job's taxonomy error, and nothing secret lands in steps or results."""

from __future__ import annotations

import hcloud
from sqlalchemy import select

from nodewright.context import AppContext
from nodewright.db.models import JobStep
from nodewright.jobs.enqueue import enqueue
from nodewright.providers import connections
from nodewright.security.secret import Secret
from nodewright.sim.control_client import SimControl
from nodewright.sim.server import SimServer
from tests.fixtures.sim import hcloud_client, sim, sim_server, sim_token  # noqa: F401
from tests.support import provider_handlers
from tests.support.jobs import job_row, make_due, run_next
from tests.support.provider_handlers import REGISTRY


def _connection(ctx: AppContext, sim: SimServer, token: str) -> int:  # noqa: F811
    provider_handlers.BOX[:] = [ctx.box]
    row = connections.create_connection(
        ctx.database,
        ctx.box,
        actor="test",
        kind="hetzner",
        name="jobs",
        token=Secret(token),
        api_endpoint=sim.base_url + "/v1",
    )
    return row.id


def _enqueue(ctx: AppContext, **args: object) -> int:
    with ctx.database.session(write=True) as session:
        job = enqueue(session, "test.provider_acquire", args, registry=REGISTRY)
        session.flush()
        return int(job.id)


def test_a_resumed_attempt_continues_with_the_checkpointed_server(
    app_context: AppContext,
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
    hcloud_client: hcloud.Client,  # noqa: F811
) -> None:
    pid = _connection(app_context, sim, sim_token)
    job_id = _enqueue(app_context, connection_id=pid, node_id=11, name="job-node-11", crash_after_server=True)
    assert run_next(app_context.database, registry=REGISTRY) == "retry_wait"
    make_due(app_context.database, job_id)
    assert run_next(app_context.database, registry=REGISTRY) == "succeeded"
    job = job_row(app_context.database, job_id)
    assert job.result is not None
    servers = hcloud_client.servers.get_all()
    assert [s.id for s in servers] == [job.result["evidence"]["server_id"]]
    posts = [
        r
        for r in SimControl(sim.base_url).requests(limit=500)
        if r["method"] == "POST" and r["path"] == "/v1/servers"
    ]
    assert len(posts) == 1  # the second attempt read the server id back from its checkpoint
    assert job.result["evidence"]["adopted"] is False
    assert job.result["target"]["user"] == "root" and job.result["target"]["host_public_key"].startswith(
        "ssh-ed25519 "
    )
    with app_context.database.session() as session:
        names = set(session.scalars(select(JobStep.name).where(JobStep.job_id == job_id)))
    assert {"provider.client_key", "provider.server.1", "provider.actions.1", "provider.fetch.1"} <= names


def test_a_provider_error_fails_the_job_with_its_taxonomy_code(
    app_context: AppContext,
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
) -> None:
    pid = _connection(app_context, sim, sim_token)
    SimControl(sim.base_url).add_capacity_rule(location="fsn1", server_type="cx23")
    job_id = _enqueue(app_context, connection_id=pid, node_id=12, name="job-node-12")
    assert run_next(app_context.database, registry=REGISTRY) == "failed"
    error = job_row(app_context.database, job_id).error
    assert error is not None
    assert error["code"] == "capacity_unavailable"
    assert error["retryable"] is False
    assert error["hint"] == "Pick another location or server type."
