"""Acquire against the simulator: lost answers, foreign names, failed actions, a 50-server burst.

The burst runs through the shared batched poller and the database-backed rate budget, on SQLite and
PostgreSQL, with the real hcloud SDK underneath.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import hcloud
import pytest
from hcloud.images import Image
from hcloud.server_types import ServerType

from nodewright.context import AppContext
from nodewright.providers import connections
from nodewright.providers.acquisition import NodeServerSpec, acquire_server, generate_host_key
from nodewright.providers.base import ConnectionInfo
from nodewright.providers.errors import ErrorCode, ProviderError
from nodewright.providers.hetzner.adapter import HetznerAdapter
from nodewright.security.secret import Secret
from nodewright.sim.control_client import SimControl
from nodewright.sim.server import SimServer
from tests.fixtures.sim import hcloud_client, sim, sim_server, sim_token  # noqa: F401
from tests.support.providers import acquire_request

T = TypeVar("T")


class StepLog:
    """Checkpoints kept in memory for adapter-level tests (the job engine's own semantics: a step
    that completed is not run again; one that raised is)."""

    canceled = False
    attempt = 1

    def __init__(self) -> None:
        self.completed_steps: dict[str, Any] = {}

    def step(self, name: str, fn: Callable[[], T]) -> T:
        if name in self.completed_steps:
            value: T = self.completed_steps[name]
            return value
        value = fn()
        self.completed_steps[name] = value
        return value

    def log(self, message: str, level: str = "info", **data: Any) -> int:
        return 0


def _adapter(sim: SimServer, token: str) -> HetznerAdapter:  # noqa: F811
    return HetznerAdapter(
        ConnectionInfo(1, "hetzner", Secret(token), sim.base_url + "/v1"), action_timeout=60
    )


def test_lost_create_response_ends_with_one_adopted_server(
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
    hcloud_client: hcloud.Client,  # noqa: F811
) -> None:
    control = SimControl(sim.base_url)
    control.add_fault("lost_response", method="POST", path="/v1/servers")
    adapter = _adapter(sim, sim_token)
    result = adapter.acquire(acquire_request(adapter.connection, node_id=5, name="lost-1"), StepLog())
    servers = hcloud_client.servers.get_all()
    assert [s.name for s in servers] == ["lost-1"]
    assert result.evidence.adopted is True
    assert result.evidence.server_id == servers[0].id
    assert result.target.address == servers[0].public_net.ipv4.ip
    statuses = [c.status for c in result.evidence.calls]
    assert 504 in statuses  # the lost answer is in the evidence


@pytest.mark.parametrize(
    "attempt", [1, 2], ids=["new-job-adopts-on-uniqueness", "resumed-job-looks-up-labels"]
)
def test_server_made_by_an_earlier_run_is_adopted(
    attempt: int,
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
    hcloud_client: hcloud.Client,  # noqa: F811
) -> None:
    """A run created the server and died before its checkpoint. A resumed attempt finds it by its
    labels before creating; a new job (attempt 1) meets uniqueness_error and adopts it because the
    labels are ours. Either way: one server."""
    adapter = _adapter(sim, sim_token)
    request = acquire_request(adapter.connection, node_id=6, name="crash-1")
    key_id = adapter.ensure_client_key(request.client_key, "k")
    labels = {"nodewright.io/installation": request.installation_id, "nodewright.io/node": "6"}
    adapter.create_server(request, key_id, labels)  # ... and the worker is killed here
    steps = StepLog()
    steps.attempt = attempt
    result = adapter.acquire(request, steps)
    assert result.evidence.adopted is True
    assert len(hcloud_client.servers.get_all()) == 1
    posts = [c for c in result.evidence.calls if c.method == "POST" and c.endpoint == "/servers"]
    assert len(posts) == (1 if attempt == 1 else 0)


def test_foreign_server_with_the_same_name_is_a_name_conflict(
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
    hcloud_client: hcloud.Client,  # noqa: F811
) -> None:
    hcloud_client.servers.create(
        name="taken-1", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04")
    )
    adapter = _adapter(sim, sim_token)
    with pytest.raises(ProviderError) as caught:
        adapter.acquire(acquire_request(adapter.connection, node_id=7, name="taken-1"), StepLog())
    assert caught.value.code is ErrorCode.name_conflict
    assert caught.value.retryable is False
    servers = hcloud_client.servers.get_all()
    assert len(servers) == 1 and servers[0].labels == {}  # the foreign server is untouched


def test_failed_create_action_is_cleaned_up_and_the_retry_makes_one_server(
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
    hcloud_client: hcloud.Client,  # noqa: F811
) -> None:
    SimControl(sim.base_url).add_fault("action_error", method="POST", path="/v1/servers")
    adapter = _adapter(sim, sim_token)
    request = acquire_request(adapter.connection, node_id=8, name="fails-1")
    steps = StepLog()
    with pytest.raises(ProviderError) as caught:
        adapter.acquire(request, steps)
    assert caught.value.code is ErrorCode.action_failed and caught.value.retryable
    assert "provider.cleanup.1" in steps.completed_steps
    result = adapter.acquire(request, steps)  # the job engine's retry
    servers = hcloud_client.servers.get_all()
    assert [s.id for s in servers] == [result.evidence.server_id]
    assert "provider.server.2" in steps.completed_steps


def test_release_confirms_gone_and_tolerates_already_gone(
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
    hcloud_client: hcloud.Client,  # noqa: F811
) -> None:
    """The evidence of both, calls in the order they were made: POST /servers first (by the steps'
    names, "provider.fetch" sorts before "provider.server"), DELETE first and the confirming 404 last."""
    adapter = _adapter(sim, sim_token)
    result = adapter.acquire(acquire_request(adapter.connection, node_id=9, name="rel-1"), StepLog())
    server_id = result.evidence.server_id
    assert server_id is not None
    acquired = [(c.method, c.endpoint) for c in result.evidence.calls]
    assert acquired[acquired.index(("POST", "/servers")) :][-1] == ("GET", f"/servers/{server_id}")
    starts = [c.started_at for c in result.evidence.calls]
    assert starts == sorted(starts)
    released = adapter.release(server_id, StepLog())
    assert hcloud_client.servers.get_all() == []
    assert [(c.method, c.endpoint, c.status) for c in released.calls] == [
        ("DELETE", f"/servers/{server_id}", 200),
        ("GET", f"/servers/{server_id}", 404),
    ]
    assert all(c.correlation_id for c in released.calls)
    assert [a["command"] for a in released.actions] == ["delete_server"]
    assert released.to_dict()["call_count"] == 2
    again = adapter.release(server_id, StepLog())  # already gone: done
    assert [(c.method, c.status) for c in again.calls] == [("DELETE", 404), ("GET", 404)]
    assert again.actions == []


def test_fifty_concurrent_acquisitions_stay_under_the_rate_limit(
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
    app_context: AppContext,
) -> None:
    """50 acquisitions at once against a project limited to 3600 requests per hour (bucket of
    200 requests here, refilled by one per second): no 429, and the calls per server recorded."""
    control = SimControl(sim.base_url)
    control.configure(create_duration=1.0, start_duration=0.5, rate_limit_capacity=200)
    control.register_token(sim_token)
    row = connections.create_connection(
        app_context.database,
        app_context.box,
        actor="test",
        kind="hetzner",
        name="burst",
        token=Secret(sim_token),
        api_endpoint=sim.base_url + "/v1",
    )
    control.clear_requests()
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def one(node_id: int) -> None:
        try:
            results[node_id] = acquire_server(
                StepLog(),
                app_context.database,
                app_context.box,
                NodeServerSpec(row.id, node_id, f"burst-{node_id}", "fsn1", "cx23", "ubuntu-24.04"),
                generate_host_key(),
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, 51)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    assert len(results) == 50
    log = SimControl(sim.base_url).requests(limit=5000)  # a new connection: the old one idled out
    assert [r for r in log if r["status"] == 429] == []
    per_server = len(log) / 50
    print(f"requests per acquired server in a 50-server burst: {per_server:.2f}")
    assert per_server <= 4  # the target for a 50-server burst


@pytest.mark.parametrize(
    ("location", "server_type", "image", "code", "field"),
    [
        ("fsn1", "cx11", "ubuntu-24.04", ErrorCode.invalid_combination, "server_type"),  # deprecated
        ("ash", "cx23", "ubuntu-24.04", ErrorCode.invalid_combination, "server_type"),  # not sold there
        ("fsn1", "cx23", "ubuntu-20.04", ErrorCode.invalid_combination, "image"),  # deprecated image
        ("fsn1", "cx23", "windows-95", ErrorCode.invalid_combination, "image"),
        ("mars1", "cx23", "ubuntu-24.04", ErrorCode.invalid_combination, "location"),
        ("fsn1", "cx99", "ubuntu-24.04", ErrorCode.invalid_combination, "server_type"),
        ("sin", "cpx11", "ubuntu-24.04", ErrorCode.capacity_unavailable, "location"),  # out of stock
        ("fsn1", "cpx11", "ubuntu-24.04", ErrorCode.invalid_combination, "server_type"),  # deprecated here
        (
            "fsn1",
            "cx22",
            "ubuntu-24.04",
            ErrorCode.invalid_combination,
            "server_type",
        ),  # deprecated everywhere
    ],
)
def test_preflight_refuses_a_bad_combination_before_any_create(
    location: str,
    server_type: str,
    image: str,
    code: ErrorCode,
    field: str,
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
    app_context: AppContext,
) -> None:
    row = connections.create_connection(
        app_context.database,
        app_context.box,
        actor="test",
        kind="hetzner",
        name="pre",
        token=Secret(sim_token),
        api_endpoint=sim.base_url + "/v1",
    )
    with pytest.raises(ProviderError) as caught:
        acquire_server(
            StepLog(),
            app_context.database,
            app_context.box,
            NodeServerSpec(row.id, 1, "pre-1", location, server_type, image),
            generate_host_key(),
        )
    assert (caught.value.code, caught.value.field, caught.value.retryable) == (code, field, False)
    log = SimControl(sim.base_url).requests(limit=500)
    assert not [r for r in log if r["method"] == "POST" and r["path"] == "/v1/servers"]


def test_a_type_deprecated_in_one_location_is_still_ordered_where_it_is_sold(
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
) -> None:
    """cpx11 is deprecated in fsn1 (past its date) but sold in ash: the catalog says so per location
    and preflight lets the ash order through."""
    from nodewright.providers.acquisition import preflight

    catalog = _adapter(sim, sim_token).catalog()
    cpx11 = next(st for st in catalog.server_types if st.name == "cpx11")
    assert not cpx11.deprecated
    assert set(cpx11.deprecated_in) == {"fsn1", "nbg1", "hel1"} and "ash" in cpx11.available_in
    preflight(catalog, "ash", "cpx11", "ubuntu-24.04")
    cx22 = next((st for st in catalog.server_types if st.name == "cx22"), None)
    assert cx22 is None  # unlisted once its type-wide deprecation has passed


def test_preflight_refuses_an_image_without_a_build_for_the_architecture() -> None:
    from nodewright.providers.acquisition import preflight
    from nodewright.providers.base import Catalog, CatalogImage, CatalogLocation, CatalogServerType

    catalog = Catalog(
        locations=(CatalogLocation("fsn1", "", "DE", "", "eu-central"),),
        server_types=(
            CatalogServerType("cax11", "", 2, 4.0, 40, "arm", False, ("fsn1",), ("fsn1",), (), ()),
        ),
        images=(CatalogImage("only-x86", "", "x86", "ubuntu", False),),
    )
    with pytest.raises(ProviderError) as caught:
        preflight(catalog, "fsn1", "cax11", "only-x86")
    assert (caught.value.code, caught.value.field) == (ErrorCode.invalid_combination, "image")


def test_a_small_bucket_makes_acquisitions_wait_instead_of_hitting_429(
    sim: SimServer,  # noqa: F811
    sim_token: str,  # noqa: F811
    app_context: AppContext,
) -> None:
    """A bucket of 12 requests refilled by 4 per second, 15 acquisitions at once (about 40
    requests): the shared budget spreads them out; the provider never answers 429."""
    control = SimControl(sim.base_url)
    control.configure(
        create_duration=0.3, start_duration=0.2, rate_limit_capacity=12, rate_limit_refill_per_second=4
    )
    control.register_token(sim_token)
    row = connections.create_connection(
        app_context.database,
        app_context.box,
        actor="test",
        kind="hetzner",
        name="small-bucket",
        token=Secret(sim_token),
        api_endpoint=sim.base_url + "/v1",
    )
    errors: list[BaseException] = []

    def one(node_id: int) -> None:
        try:
            acquire_server(
                StepLog(),
                app_context.database,
                app_context.box,
                NodeServerSpec(row.id, node_id, f"small-{node_id}", "fsn1", "cx23", "ubuntu-24.04"),
                generate_host_key(),
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, 16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    log = SimControl(sim.base_url).requests(limit=5000)
    assert [r for r in log if r["status"] == 429] == []
    assert len(log) > 12  # more than the bucket held: the budget had to wait for refills
