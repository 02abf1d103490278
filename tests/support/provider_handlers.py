"""A job handler that acquires a server the way ``node_provision`` will: from inside a job, with
its checkpoints as job steps. ``BOX`` is set by the test (a worker gets it from its AppContext)."""

from __future__ import annotations

from typing import Any

from nodewright.jobs.context import JobContext
from nodewright.jobs.registry import Registry
from nodewright.providers.acquisition import NodeServerSpec, acquire_server, generate_host_key
from nodewright.providers.errors import ProviderError
from nodewright.security.secretbox import SecretBox

REGISTRY = Registry()
BOX: list[SecretBox] = []


class SimulatedCrash(Exception):
    """Stands for a worker dying right after the server step's checkpoint."""


@REGISTRY.handler("test.provider_acquire", max_attempts=4, backoff_base=0.05, backoff_cap=0.1)
def provider_acquire(ctx: JobContext) -> dict[str, Any]:
    args = ctx.args
    if args.get("crash_after_server") and ctx.attempt == 1:
        original = ctx.step

        def step(name: str, fn: Any) -> Any:
            value = original(name, fn)
            if name.startswith("provider.server."):
                raise SimulatedCrash(name)
            return value

        ctx.step = step  # type: ignore[method-assign]
    spec = NodeServerSpec(
        connection_id=int(args["connection_id"]),
        node_id=int(args["node_id"]),
        server_name=str(args["name"]),
        location="fsn1",
        server_type="cx23",
        image="ubuntu-24.04",
    )
    try:
        result = acquire_server(ctx, ctx.database, BOX[0], spec, generate_host_key())
    except ProviderError as error:
        raise error.to_job_error() from None
    return {"target": result.target.to_dict(), "evidence": result.evidence.to_dict()}
