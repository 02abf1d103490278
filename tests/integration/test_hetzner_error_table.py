"""The Hetzner error table, row by row, at every lifecycle step (create, poll, fetch, delete).

Each row is injected into the simulator as the real answer (status, envelope or an HTML page) on the
request of that step, and driven through the real hcloud SDK inside the adapter; the test checks the
taxonomy code, the retryable flag and the hint that come out.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from nodewright.providers.base import AcquireRequest, ConnectionInfo
from nodewright.providers.errors import DEFAULT_HINTS, ErrorCode, ProviderError
from nodewright.providers.hetzner.adapter import HetznerAdapter, ownership_labels
from nodewright.providers.hetzner.errors import CODE_TABLE
from nodewright.providers.hetzner.poller import ActionPoller
from nodewright.providers.hetzner.transport import HetznerTransport
from nodewright.security.secret import Secret
from nodewright.sim.control_client import SimControl
from nodewright.sim.server import SimServer
from tests.fixtures.sim import sim, sim_server, sim_token  # noqa: F401
from tests.support.providers import acquire_request

E = ErrorCode
# (Hetzner code, HTTP status to send or None for the real one) -> (taxonomy code, retryable)
ROWS: list[tuple[str, int | None, ErrorCode, bool]] = [
    ("unauthorized", None, E.credentials_invalid, False),
    ("token_readonly", None, E.permission_denied, False),
    ("forbidden", None, E.permission_denied, False),
    ("maintenance", None, E.provider_unavailable, True),
    ("resource_limit_exceeded", None, E.quota_exceeded, False),
    ("not_found", None, E.not_found, False),
    ("uniqueness_error", None, E.name_conflict, False),
    ("conflict", None, E.provider_busy, True),
    ("locked", None, E.provider_busy, True),
    ("service_error", None, E.provider_busy, True),
    ("resource_unavailable", None, E.capacity_unavailable, False),
    ("placement_error", None, E.capacity_unavailable, False),
    ("invalid_input", None, E.invalid_combination, False),
    ("invalid_server_type", None, E.invalid_combination, False),
    ("json_error", None, E.provider_error, False),
    ("method_not_allowed", None, E.provider_error, False),
    ("unsupported_error", None, E.provider_error, False),
    ("deprecated_api_endpoint", None, E.provider_error, False),
    ("protected", None, E.provider_error, False),
    ("rate_limit_exceeded", None, E.rate_limited, True),
    ("limit_reached", 429, E.rate_limited, True),
    ("server_error", None, E.provider_unavailable, True),
    ("bad_gateway", None, E.provider_unavailable, True),
    ("unavailable", None, E.provider_unavailable, True),
    ("timeout", None, E.provider_unavailable, True),
    ("robot_unavailable", 503, E.provider_unavailable, True),
    ("unknown_error", None, E.provider_unavailable, True),
    # Codes outside the table fall back to their HTTP status: a 5xx stays transient.
    ("brand_new_code", 503, E.provider_unavailable, True),
    ("another_new_code", 418, E.provider_error, False),
]
# Answers without the JSON envelope (a load balancer's page): by status. A 404 page is NOT "gone".
HTML_ROWS: list[tuple[int, ErrorCode, bool]] = [
    (502, E.provider_unavailable, True),
    (503, E.provider_unavailable, True),
    (504, E.provider_unavailable, True),
    (404, E.provider_unavailable, True),
    (429, E.rate_limited, True),
]
STEPS = ["create", "poll", "fetch", "delete"]
STEP_REQUEST = {
    "create": ("POST", "/v1/servers"),
    "poll": ("GET", "/v1/actions"),
    "fetch": ("GET", "/v1/servers/*"),
    "delete": ("DELETE", "/v1/servers/*"),
}


def test_every_table_code_has_a_row() -> None:
    assert set(CODE_TABLE) <= {row[0] for row in ROWS}


@pytest.fixture
def adapter(sim: SimServer, sim_token: str) -> Iterator[HetznerAdapter]:  # noqa: F811
    info = ConnectionInfo(1, "hetzner", Secret(sim_token), sim.base_url + "/v1")
    # Known timings (the simulator's actions take 0.1 s each here): the first poll comes early.
    poller = ActionPoller(HetznerTransport(info), learned={"create:table": 0.2})
    a = HetznerAdapter(info, poller=poller, action_timeout=30)
    try:
        yield a
    finally:
        a.close()


def _request(adapter: HetznerAdapter) -> AcquireRequest:
    return acquire_request(adapter.connection, node_id=1, name="table-node")


def _run_step(step: str, adapter: HetznerAdapter, control: SimControl) -> object:
    """Reach the step without faults, then arm ``control``'s pending fault and run the step."""
    request = _request(adapter)
    labels = ownership_labels(request.installation_id, request.node_id)
    key_id = adapter.ensure_client_key(request.client_key, "table-key")
    if step == "create":
        _arm(control)
        return adapter.create_server(request, key_id, labels)
    server_id, action_ids = adapter.create_server(request, key_id, labels)
    if step == "poll":
        _arm(control)
        return adapter.wait_actions(action_ids, "create:table")
    adapter.wait_actions(action_ids, "create:table")
    _arm(control)
    if step == "fetch":
        return adapter.fetch_server(server_id)
    return adapter.delete_server(server_id)


_pending: dict[str, object] = {}


def _arm(control: SimControl) -> None:
    spec = _pending.pop("spec")
    assert isinstance(spec, dict)
    control.add_fault(**spec)


def _expected_hint(code: ErrorCode, hetzner_code: str | None) -> str | None:
    rule = CODE_TABLE.get(hetzner_code or "")
    if rule is not None and rule.hint is not None:
        return rule.hint
    return DEFAULT_HINTS[code]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(("hcode", "status", "code", "retryable"), ROWS, ids=[r[0] for r in ROWS])
def test_error_row(
    step: str,
    hcode: str,
    status: int | None,
    code: ErrorCode,
    retryable: bool,
    sim: SimServer,  # noqa: F811
    adapter: HetznerAdapter,
) -> None:
    method, path = STEP_REQUEST[step]
    control = SimControl(sim.base_url)
    _pending["spec"] = {
        "kind": "error",
        "method": method,
        "path": path,
        "code": hcode,
        "status": status,
        "count": 1,
    }
    if step == "delete" and hcode == "not_found":
        assert _run_step(step, adapter, control) is None  # already gone counts as done
        return
    with pytest.raises(ProviderError) as caught:
        _run_step(step, adapter, control)
    error = caught.value
    assert (error.code, error.retryable) == (code, retryable)
    assert error.provider_code == hcode
    if code is ErrorCode.rate_limited:
        assert error.hint is not None and error.hint.startswith("Rate limited until ")
        assert error.retry_after is not None and error.retry_after >= 1
    else:
        assert error.hint == _expected_hint(code, hcode)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(("status", "code", "retryable"), HTML_ROWS, ids=[f"html-{r[0]}" for r in HTML_ROWS])
def test_html_answer_row(
    step: str,
    status: int,
    code: ErrorCode,
    retryable: bool,
    sim: SimServer,  # noqa: F811
    adapter: HetznerAdapter,
) -> None:
    method, path = STEP_REQUEST[step]
    control = SimControl(sim.base_url)
    _pending["spec"] = {"kind": "non_json", "method": method, "path": path, "status": status, "count": 1}
    with pytest.raises(ProviderError) as caught:
        _run_step(step, adapter, control)
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert caught.value.code is not ErrorCode.not_found


@pytest.mark.parametrize("step", STEPS)
def test_network_error_row(step: str, sim: SimServer, sim_token: str) -> None:  # noqa: F811
    """Nothing listens at the endpoint: provider_unavailable, retryable, at every step."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = HetznerAdapter(ConnectionInfo(1, "hetzner", Secret(sim_token), f"http://127.0.0.1:{port}/v1"))
    request = _request(dead)
    labels = ownership_labels(request.installation_id, request.node_id)
    calls = {
        "create": lambda: dead.create_server(request, 1, labels),
        "poll": lambda: dead.wait_actions([1], "x"),
        "fetch": lambda: dead.fetch_server(1),
        "delete": lambda: dead.delete_server(1),
    }
    with pytest.raises(ProviderError) as caught:
        calls[step]()
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.provider_unavailable, True)
    assert caught.value.hint == DEFAULT_HINTS[ErrorCode.provider_unavailable]


def test_action_error_row(sim: SimServer, adapter: HetznerAdapter) -> None:  # noqa: F811
    """A create action that ends in ``error``: action_failed, retryable (after cleaning up)."""
    control = SimControl(sim.base_url)
    control.add_fault("action_error", method="POST", path="/v1/servers")
    request = _request(adapter)
    key_id = adapter.ensure_client_key(request.client_key, "table-key")
    _server_id, action_ids = adapter.create_server(request, key_id, ownership_labels("i", 1))
    with pytest.raises(ProviderError) as caught:
        adapter.wait_actions(action_ids, "create:table")
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.action_failed, True)
    assert caught.value.hint == DEFAULT_HINTS[ErrorCode.action_failed]
