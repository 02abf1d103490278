# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""The official hcloud Python SDK drives the simulator end to end, including every error class
that the product has to handle (reproduced with the simulator's fault injection)."""

from __future__ import annotations

import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hcloud
import httpx
import pytest
from hcloud.actions import ActionFailedException
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import BoundServer
from hcloud.ssh_keys import SSHKey

from nodewright.sim.errors import STATUS_BY_CODE
from nodewright.sim.server import SimServer
from tests.fixtures.sim import (  # noqa: F401
    fast_config,
    hcloud_client,
    random_token,
    sim,
    sim_control,
    sim_server,
    sim_token,
)

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnTGBbBWHhQFvu2DRhR+0/l8dAvJHfZb0bkk0R+DUhn test@example"


def fast_retries(client: hcloud.Client) -> hcloud.Client:
    """The SDK backs off 1-16 s between retries; tests only care that it retries."""
    client._client._retry_interval_func = lambda _retries: 0.01
    return client


def create(client: hcloud.Client, name: str, **kwargs: Any) -> Any:
    return client.servers.create(
        name,
        server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"),
        **kwargs,
    )


def wait_all(result: Any) -> None:
    result.action.wait_until_finished()
    for action in result.next_actions:
        action.wait_until_finished()


def test_full_scenario(hcloud_client: hcloud.Client) -> None:
    key = hcloud_client.ssh_keys.create(name="ops", public_key=PUBLIC_KEY, labels={"team": "ops"})
    assert hcloud_client.ssh_keys.get_by_fingerprint(key.fingerprint).id == key.id
    result = create(
        hcloud_client,
        "web-1",
        ssh_keys=[SSHKey(name="ops")],
        location=Location(name="nbg1"),
        labels={"managed-by": "nodewright", "role": "web"},
    )
    assert result.root_password is None
    assert result.server.status == "initializing"
    assert [a.command for a in [result.action, *result.next_actions]] == ["create_server", "start_server"]
    wait_all(result)
    create(
        hcloud_client, "db-1", labels={"managed-by": "nodewright", "role": "db"}
    ).action.wait_until_finished()
    server = hcloud_client.servers.get_by_id(result.server.id)
    assert server.status == "running"
    assert ipaddress.ip_address(server.public_net.ipv4.ip) in ipaddress.ip_network("198.18.0.0/15")
    assert server.location.name == "nbg1"
    assert server.server_type.name == "cx23"
    assert server.image.name == "ubuntu-24.04"
    assert [s.name for s in hcloud_client.servers.get_all(label_selector="role==web")] == ["web-1"]
    selected = hcloud_client.servers.get_all(label_selector="managed-by=nodewright,role in (db, web)")
    assert sorted(s.name for s in selected) == ["db-1", "web-1"]
    assert [s.name for s in hcloud_client.servers.get_all(label_selector="role notin (web)")] == ["db-1"]
    assert hcloud_client.servers.get_by_name("web-1").id == server.id
    server = server.update(labels={"role": "web", "stage": "prod"})
    assert server.labels == {"role": "web", "stage": "prod"}
    server.power_off().wait_until_finished()
    assert hcloud_client.servers.get_by_id(server.id).status == "off"
    server.power_on().wait_until_finished()
    assert hcloud_client.servers.get_by_id(server.id).status == "running"
    server.reboot().wait_until_finished()
    server.reset().wait_until_finished()
    assert hcloud_client.servers.get_by_id(server.id).status == "running"
    server.shutdown().wait_until_finished()
    assert hcloud_client.servers.get_by_id(server.id).status == "off"
    server.power_on().wait_until_finished()
    actions = hcloud_client.servers.get_actions_list(server).actions
    assert {a.command for a in actions} >= {
        "create_server",
        "start_server",
        "stop_server",
        "reboot_server",
        "reset_server",
        "shutdown_server",
    }
    server.delete().wait_until_finished()
    with pytest.raises(hcloud.APIException) as excinfo:
        hcloud_client.servers.get_by_id(server.id)
    assert excinfo.value.code == "not_found"
    assert [s.name for s in hcloud_client.servers.get_all()] == ["db-1"]


def test_catalog(hcloud_client: hcloud.Client) -> None:
    types = {t.name: t for t in hcloud_client.server_types.get_all()}
    assert {"cx23", "cpx11", "cax11", "ccx13"} <= set(types)
    assert types["cax11"].architecture == "arm"
    assert "cx11" not in types and "cx22" not in types  # past their deprecation: no longer listed
    assert all(loc.deprecation is not None for loc in hcloud_client.server_types.get_by_id(104).locations)
    cpx11 = {loc.location.name: loc for loc in types["cpx11"].locations}
    assert cpx11["fsn1"].deprecation is not None and cpx11["fsn1"].available is False
    assert cpx11["ash"].deprecation is None and cpx11["ash"].available is True
    cpx11_sin = next(loc for loc in types["cpx11"].locations if loc.location.name == "sin")
    assert cpx11_sin.available is False
    assert {loc.name for loc in hcloud_client.locations.get_all()} == {
        "fsn1",
        "nbg1",
        "hel1",
        "ash",
        "hil",
        "sin",
    }
    arm = hcloud_client.images.get_all(architecture=["arm"])
    assert arm and all(i.architecture == "arm" for i in arm)
    assert not [i for i in hcloud_client.images.get_all() if i.name == "ubuntu-20.04"]
    deprecated = hcloud_client.images.get_all(name="ubuntu-20.04", include_deprecated=True)
    assert deprecated and deprecated[0].deprecation is not None
    assert hcloud_client.images.get_by_name_and_architecture("debian-12", "arm").architecture == "arm"


def test_arm_server_gets_the_arm_image(hcloud_client: hcloud.Client) -> None:
    result = hcloud_client.servers.create(
        "arm-1", server_type=ServerType(name="cax11"), image=Image(name="debian-12")
    )
    assert result.server.image.architecture == "arm"
    assert result.root_password


def _api_error(call: Any) -> hcloud.APIException:
    with pytest.raises(hcloud.APIException) as excinfo:
        call()
    return excinfo.value


def test_protection_backup_rdns_iso_and_console(hcloud_client: hcloud.Client) -> None:
    result = create(hcloud_client, "web-1")
    wait_all(result)
    server = hcloud_client.servers.get_by_id(result.server.id)
    ipv4 = server.public_net.ipv4.ip

    hcloud_client.servers.change_protection(server, delete=True, rebuild=True).wait_until_finished()
    server.reload()
    assert (server.protection["delete"], server.protection["rebuild"]) == (True, True)
    error = _api_error(lambda: hcloud_client.servers.delete(server))
    assert error.code == "protected"

    action = hcloud_client.servers.enable_backup(server)
    assert action.command == "enable_backup"
    action.wait_until_finished()
    server.reload()
    assert server.backup_window
    hcloud_client.servers.disable_backup(server).wait_until_finished()
    server.reload()
    assert server.backup_window is None

    hcloud_client.servers.change_dns_ptr(server, ipv4, "web-1.example.com").wait_until_finished()
    server.reload()
    assert server.public_net.ipv4.dns_ptr == "web-1.example.com"
    error = _api_error(lambda: hcloud_client.servers.change_dns_ptr(server, "192.0.2.1", "x.example.com"))
    assert error.code == "invalid_input"

    iso = hcloud_client.isos.get_by_name("virtio-win-0.1.271.iso")
    assert iso is not None
    hcloud_client.servers.attach_iso(server, iso).wait_until_finished()
    server.reload()
    assert server.iso is not None and server.iso.name == iso.name
    hcloud_client.servers.detach_iso(server).wait_until_finished()
    server.reload()
    assert server.iso is None

    error = _api_error(lambda: hcloud_client.servers.request_console(server))
    assert (error.code, "not simulated" in error.message) == ("unsupported_error", True)

    # Resize: refused while running; off -> change_type -> running again on the new type.
    bigger = hcloud_client.server_types.get_by_name("cx33")
    assert bigger is not None
    error = _api_error(lambda: hcloud_client.servers.change_type(server, bigger, upgrade_disk=False))
    assert error.code == "server_not_stopped"
    hcloud_client.servers.power_off(server).wait_until_finished()
    hcloud_client.servers.change_type(server, bigger, upgrade_disk=False).wait_until_finished()
    for _ in range(500):
        server.reload()
        if server.status == "running" and not server.locked:
            break
        time.sleep(0.01)
    assert (server.server_type.name, server.primary_disk_size, server.status) == ("cx33", 40, "running")

    hcloud_client.servers.change_protection(server, delete=False, rebuild=False).wait_until_finished()
    hcloud_client.servers.delete(server).wait_until_finished()
    assert hcloud_client.servers.get_by_name("web-1") is None


def test_create_fields_the_simulator_does_not_model_are_refused_by_name(
    hcloud_client: hcloud.Client, sim: SimServer, sim_token: str
) -> None:
    """Networks, volumes, firewalls, placement groups and primary IPs would be silently missing
    from the server; the SDK's own request shapes are refused with the field named."""
    from hcloud.firewalls import Firewall
    from hcloud.networks import Network
    from hcloud.placement_groups import PlacementGroup
    from hcloud.primary_ips import PrimaryIP
    from hcloud.servers import ServerCreatePublicNetwork
    from hcloud.volumes import Volume

    cases: list[tuple[dict[str, Any], str]] = [
        ({"networks": [Network(id=1)]}, "networks"),
        ({"volumes": [Volume(id=2)]}, "volumes"),
        ({"firewalls": [Firewall(id=3)]}, "firewalls"),
        ({"placement_group": PlacementGroup(id=4)}, "placement_group"),
        ({"public_net": ServerCreatePublicNetwork(ipv4=PrimaryIP(id=5))}, "public_net.ipv4"),
        ({"public_net": ServerCreatePublicNetwork(ipv6=PrimaryIP(id=6))}, "public_net.ipv6"),
    ]
    for kwargs, field in cases:
        error = _api_error(lambda kwargs=kwargs: create(hcloud_client, "refused", **kwargs))
        assert error.code == "invalid_input", field
        assert [f["name"] for f in error.details["fields"]] == [field]
    assert hcloud_client.servers.get_all() == []  # nothing half-made
    raw = httpx.post(
        sim.api_url + "/servers",
        headers={"Authorization": f"Bearer {sim_token}"},
        json={"name": "plain", "server_type": "cx23", "image": "ubuntu-24.04", "networks": [], "volumes": []},
    )
    assert raw.status_code == 201, raw.text  # empty lists ask for nothing


def test_client_errors(hcloud_client: hcloud.Client, sim: SimServer, sim_control: httpx.Client) -> None:
    create(hcloud_client, "web-1").action.wait_until_finished()
    error = _api_error(lambda: create(hcloud_client, "web-1"))
    assert error.code == "uniqueness_error"
    assert error.correlation_id
    error = _api_error(lambda: create(hcloud_client, "not a hostname", labels={"bad key!": "x"}))
    assert error.code == "invalid_input"
    assert {f["name"] for f in error.details["fields"]} == {"name", "labels"}
    error = _api_error(lambda: hcloud_client.servers.create("x", server_type=ServerType(name="cx23"),
                                                             image=Image(name="ubuntu-24.04"),
                                                             user_data="#" * 40000))  # fmt: skip
    assert error.code == "invalid_input"
    assert _api_error(lambda: hcloud_client.servers.get_by_id(1)).code == "not_found"
    assert _api_error(lambda: hcloud_client.servers.get_all(label_selector="a=(")).code == "invalid_input"
    sim_control.post("/config", json={"create_duration": 60})
    busy = create(hcloud_client, "busy-1").server
    error = _api_error(lambda: hcloud_client.servers.delete(busy))
    assert (error.code, error.message) == ("locked", "cannot perform operation because server is locked")
    sim_control.post("/limits", json={"max_servers": 2})
    error = _api_error(lambda: create(hcloud_client, "web-3"))
    assert error.code == "resource_limit_exceeded"
    assert error.details["limits"]
    sim_control.post("/limits", json={"max_servers": None})
    sim_control.post("/capacity", json={"server_type": "cx23", "location": "fsn1"})
    error = _api_error(lambda: create(hcloud_client, "web-3", location=Location(name="fsn1")))
    assert error.code == "resource_unavailable"
    assert create(hcloud_client, "web-3", location=Location(name="hel1")).server.location.name == "hel1"


def test_token_errors(sim: SimServer, sim_control: httpx.Client) -> None:
    readonly, revoked = random_token(), random_token()
    sim_control.post("/tokens", json={"token": readonly, "mode": "read_only"}).raise_for_status()
    sim_control.post("/tokens", json={"token": revoked, "mode": "revoked"}).raise_for_status()
    ro = hcloud.Client(token=readonly, api_endpoint=sim.api_url)
    assert ro.servers.get_all() == []
    assert _api_error(lambda: create(ro, "x")).code == "token_readonly"
    gone = hcloud.Client(token=revoked, api_endpoint=sim.api_url)
    assert _api_error(gone.servers.get_all).code == "unauthorized"
    assert _api_error(hcloud.Client(token="x" * 10, api_endpoint=sim.api_url).locations.get_all).code == (
        "unauthorized"
    )


def test_projects_are_isolated(sim: SimServer, sim_control: httpx.Client) -> None:
    a, b, b2 = random_token(), random_token(), random_token()
    sim_control.post("/tokens", json={"token": b, "project": "shared"})
    sim_control.post("/tokens", json={"token": b2, "project": "shared"})
    ca, cb, cb2 = (hcloud.Client(token=t, api_endpoint=sim.api_url) for t in (a, b, b2))
    create(ca, "same-name")
    create(cb, "same-name")
    assert [s.name for s in cb2.servers.get_all()] == ["same-name"]
    assert len(ca.servers.get_all()) == 1


def test_retried_errors(hcloud_client: hcloud.Client, sim_control: httpx.Client) -> None:
    client = fast_retries(hcloud_client)
    for fault in (
        {
            "kind": "error",
            "code": "rate_limit_exceeded",
            "message": "limit of 3600 requests per hour reached",
        },
        {"kind": "error", "code": "conflict"},
        {"kind": "non_json", "status": 502},
        {"kind": "non_json", "status": 504},
        {"kind": "error", "code": "timeout"},
        {"kind": "slow", "delay": 0.2},
    ):
        sim_control.post("/faults", json={"method": "GET", "path": "/v1/locations", "count": 2, **fault})
        assert len(client.locations.get_all()) == 6
    sim_control.post("/config", json={"rate_limit_capacity": 3, "rate_limit_refill_per_second": 0.001})
    error = _api_error(lambda: [client.locations.get_all() for _ in range(4)])
    assert error.code == "rate_limit_exceeded"
    log = sim_control.get("/requests").json()["requests"]
    assert sum(1 for r in log if r["error_code"] == "rate_limit_exceeded") >= 6


def test_non_retried_server_errors(hcloud_client: hcloud.Client, sim_control: httpx.Client) -> None:
    sim_control.post("/faults", json={"kind": "non_json", "status": 503, "path": "/v1/servers"})
    assert _api_error(hcloud_client.servers.get_all).code == 503
    sim_control.post("/faults", json={"kind": "error", "code": "server_error", "path": "/v1/servers"})
    assert _api_error(hcloud_client.servers.get_all).code == "server_error"


def test_a_simulator_bug_still_answers_the_error_envelope(
    hcloud_client: hcloud.Client, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_query: Any) -> Any:
        raise RuntimeError("simulated bug")

    assert sim.runtime is not None
    monkeypatch.setattr(sim.runtime.state, "list_locations", broken)
    error = _api_error(hcloud_client.locations.get_all)
    assert (error.code, error.correlation_id is not None) == ("server_error", True)


def test_lost_create_response_is_adoptable(hcloud_client: hcloud.Client, sim_control: httpx.Client) -> None:
    """The create takes effect, its answer is lost, the SDK retries the POST and meets its own server."""
    client = fast_retries(hcloud_client)
    sim_control.post("/faults", json={"kind": "lost_response", "method": "POST", "path": "/v1/servers"})
    assert _api_error(lambda: create(client, "not a hostname")).code == "invalid_input"  # nothing to lose
    error = _api_error(lambda: create(client, "node-1", labels={"owner": "me"}))
    assert error.code == "uniqueness_error"
    adopted = client.servers.get_all(label_selector="owner=me")
    assert [s.name for s in adopted] == ["node-1"]


def test_failed_create_action_leaves_the_server(
    hcloud_client: hcloud.Client, sim_control: httpx.Client
) -> None:
    sim_control.post("/faults", json={"kind": "action_error", "method": "POST", "path": "/v1/servers"})
    result = create(hcloud_client, "broken-1")
    with pytest.raises(ActionFailedException) as excinfo:
        result.action.wait_until_finished()
    assert excinfo.value.action.error["code"] == "unknown_error"
    server = hcloud_client.servers.get_by_name("broken-1")
    assert isinstance(server, BoundServer)
    assert server.status == "off"
    server.delete().wait_until_finished()


def test_outcome_faults_wait_for_a_create(hcloud_client: hcloud.Client, sim_control: httpx.Client) -> None:
    """Unscoped ``action_error``/``left_off`` faults are not spent on the lookups before a create."""
    sim_control.post("/faults", json={"kind": "action_error"}).raise_for_status()
    sim_control.post("/faults", json={"kind": "left_off"}).raise_for_status()
    assert hcloud_client.images.get_by_name_and_architecture("ubuntu-24.04", "x86") is not None
    assert hcloud_client.servers.get_all() == []
    result = create(hcloud_client, "doomed-1")
    with pytest.raises(ActionFailedException):
        result.action.wait_until_finished()


def test_server_left_off(hcloud_client: hcloud.Client, sim_control: httpx.Client) -> None:
    sim_control.post("/faults", json={"kind": "left_off", "method": "POST", "path": "/v1/servers"})
    result = create(hcloud_client, "sleepy-1")
    wait_all(result)
    server = hcloud_client.servers.get_by_id(result.server.id)
    assert server.status == "off"
    server.power_on().wait_until_finished()
    assert hcloud_client.servers.get_by_id(server.id).status == "running"


def test_out_of_band_changes(hcloud_client: hcloud.Client, sim_control: httpx.Client) -> None:
    wait_all(create(hcloud_client, "victim-1"))
    wait_all(create(hcloud_client, "victim-2"))
    listed = {s["name"]: s for s in sim_control.get("/servers").json()["servers"]}
    assert listed["victim-1"]["status"] == "running"
    assert ipaddress.ip_address(listed["victim-1"]["ssh"]["host"]) in ipaddress.ip_network("198.18.0.0/15")
    sim_control.post(f"/servers/{listed['victim-1']['id']}/poweroff").raise_for_status()
    assert hcloud_client.servers.get_by_name("victim-1").status == "off"
    sim_control.delete(f"/servers/{listed['victim-2']['id']}").raise_for_status()
    assert hcloud_client.servers.get_by_name("victim-2") is None
    assert sim_control.get("/requests", params={"limit": "many"}).status_code == 400
    log = sim_control.get("/requests").json()["requests"]
    assert log and {"method", "path", "status", "error_code", "correlation_id", "time"} <= set(log[0])
    assert all("token" not in str(entry).lower() for entry in log)


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "sim-state.json"
    token = random_token()
    with SimServer(ssh_nodes=False, state_file=state_file, config=fast_config()) as first:
        client = hcloud.Client(token=token, api_endpoint=first.api_url, poll_interval=0.02)
        client.ssh_keys.create(name="k", public_key=PUBLIC_KEY)
        wait_all(create(client, "keeper-1", labels={"keep": "yes"}))
    assert token not in state_file.read_text()
    with SimServer(ssh_nodes=False, state_file=state_file, config=fast_config()) as second:
        client = hcloud.Client(token=token, api_endpoint=second.api_url, poll_interval=0.02)
        [server] = client.servers.get_all(label_selector="keep=yes")
        assert (server.name, server.status) == ("keeper-1", "running")
        assert client.ssh_keys.get_by_name("k") is not None
        assert create(client, "keeper-2").server.id > server.id


def test_concurrent_clients_get_unique_servers(sim: SimServer) -> None:
    token = random_token()

    def worker(index: int) -> list[int]:
        client = hcloud.Client(token=token, api_endpoint=sim.api_url, poll_interval=0.02)
        return [create(client, f"c-{index}-{n}").server.id for n in range(5)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = [i for batch in pool.map(worker, range(8)) for i in batch]
    assert len(set(ids)) == 40
    client = hcloud.Client(token=token, api_endpoint=sim.api_url)
    servers = client.servers.get_all()
    assert len(servers) == 40
    assert len({s.public_net.ipv4.ip for s in servers}) == 40


def test_runs_without_ssh_nodes_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the nodes' network cannot be made (here: no nftables on the PATH), the API still works
    and says why."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for directory in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for tool in Path(directory).glob("*") if Path(directory).is_dir() else ():
            if tool.name != "nft" and not (tools / tool.name).exists():
                (tools / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(tools))
    with SimServer(ssh_nodes=True, config=fast_config()) as sim:
        assert not sim.ssh_nodes
        assert sim.ssh_nodes_reason
        assert "nft" in sim.ssh_nodes_reason
        status = httpx.get(sim.base_url + "/_sim/status").json()
        assert status["ssh_nodes"] is False and status["ssh_nodes_reason"] == sim.ssh_nodes_reason
        assert status["network"] is None
        client = hcloud.Client(token=random_token(), api_endpoint=sim.api_url, poll_interval=0.02)
        result = create(client, "plain-1")
        wait_all(result)
        assert client.servers.get_by_id(result.server.id).status == "running"


RETRIED_BY_SDK = {"rate_limit_exceeded", "conflict", "bad_gateway", "timeout"}


@pytest.mark.parametrize("code", sorted(set(STATUS_BY_CODE) - RETRIED_BY_SDK))
def test_every_error_code_reaches_the_sdk_with_its_status(
    hcloud_client: hcloud.Client, sim_control: httpx.Client, code: str
) -> None:
    sim_control.post("/faults", json={"kind": "error", "code": code, "path": "/v1/server_types"})
    with pytest.raises(hcloud.APIException) as excinfo:
        hcloud_client.server_types.get_all()
    assert excinfo.value.code == code
    [entry] = [r for r in sim_control.get("/requests").json()["requests"] if r["error_code"] == code]
    assert entry["status"] == STATUS_BY_CODE[code]
    assert entry["correlation_id"] == excinfo.value.correlation_id


def test_anonymous_requests_are_rate_limited_too(sim: SimServer, sim_control: httpx.Client) -> None:
    sim_control.post("/config", json={"rate_limit_capacity": 2, "rate_limit_refill_per_second": 0.001})
    answers = [httpx.get(sim.api_url + "/servers").json()["error"]["code"] for _ in range(3)]
    assert answers == ["unauthorized", "unauthorized", "rate_limit_exceeded"]


def test_create_that_outlives_the_client_timeout(sim: SimServer, sim_control: httpx.Client) -> None:
    client = fast_retries(hcloud.Client(token=random_token(), api_endpoint=sim.api_url, timeout=0.3))
    fault = {"kind": "lost_response", "method": "POST", "path": "/v1/servers", "delay": 0.6}
    sim_control.post("/faults", json=fault)
    error = _api_error(lambda: create(client, "slowpoke-1"))
    assert error.code == "uniqueness_error"
    assert client.servers.get_by_name("slowpoke-1") is not None


def test_typed_control_client(sim: SimServer) -> None:
    token = random_token()
    client = fast_retries(hcloud.Client(token=token, api_endpoint=sim.api_url, poll_interval=0.02))
    with sim.control() as control:
        project = control.register_token(token, project="team-a")
        assert project == "team-a"
        fault = control.add_fault("error", method="GET", path="/v1/locations", code="maintenance")
        assert fault["code"] == "maintenance" and control.faults()[0]["id"] == fault["id"]
        assert _api_error(client.locations.get_all).code == "maintenance"
        control.add_fault("slow", path="/v1/locations", delay=0.05, count=None)
        control.clear_faults()
        assert control.faults() == []
        control.add_capacity_rule(location="hel1")
        assert _api_error(lambda: create(client, "x", location=Location(name="hel1"))).code == (
            "resource_unavailable"
        )
        control.clear_capacity()
        control.set_server_limit(1, token=token)
        wait_all(create(client, "only-1"))
        assert _api_error(lambda: create(client, "only-2")).code == "resource_limit_exceeded"
        control.set_server_limit(None, token=token)
        [entry] = control.servers()
        assert (entry["name"], entry["project"], entry["status"]) == ("only-1", "team-a", "running")
        control.power_off(entry["id"])
        assert client.servers.get_by_id(entry["id"]).status == "off"
        control.delete_server(entry["id"])
        assert control.servers() == []
        assert control.configure(create_duration=0.2)["create_duration"] == 0.2
        assert control.requests(limit=2)[-1]["path"] == f"/v1/servers/{entry['id']}"
        control.clear_requests()
        assert control.requests() == []
        assert control.status()["ssh_nodes"] is False
        control.reset()
        assert control.status()["servers"] == 0
