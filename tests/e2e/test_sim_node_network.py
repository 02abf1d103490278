# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Every simulated node has a network of its own: its server's addresses on its own interface in
198.18.0.0/15, the other nodes of its simulator reachable, the host and everything else not."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcloud
import httpx
import pytest
import yaml
from hcloud.actions.domain import ActionFailedException
from hcloud.images import Image
from hcloud.server_types import ServerType
from hcloud.ssh_keys import SSHKey

from nodewright.sim.nodes import network as simnet
from nodewright.sim.server import SimServer
from tests.e2e.test_sim_ssh_nodes import create_node, host_keypair, ssh_any_host
from tests.fixtures.sim import fast_config, random_token, ssh_keypair, ssh_sim_server  # noqa: F401
from tests.support.system import require_binary

PROBE = """
import json, socket, sys, threading
results = {}
def probe(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            sock.connect((host, port))
            results[f"{host}:{port}"] = "open"
        except OSError as exc:
            results[f"{host}:{port}"] = type(exc).__name__
threads = [threading.Thread(target=probe, args=(h, int(p))) for h, p in
           (t.rsplit(":", 1) for t in sys.argv[1:])]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(results))
"""


@pytest.fixture
def node_sim(ssh_sim_server: SimServer) -> SimServer:
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    return ssh_sim_server


@pytest.fixture
def client(node_sim: SimServer) -> hcloud.Client:
    return hcloud.Client(
        token=random_token(), api_endpoint=node_sim.api_url, poll_interval=0.02, poll_max_retries=3000
    )  # 60 s: a first boot builds the node image


def wait_http(url: str) -> int:
    """The status of ``url`` once something listens there (a server started in the background)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=10).status_code
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def status(sim: SimServer) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(sim.base_url + "/_sim/status").json()
    return result


def probe_from(key: Path, tmp_path: Path, address: str, targets: list[str]) -> dict[str, str]:
    result = ssh_any_host(key, tmp_path, address, f"python3 -c '{PROBE}' " + " ".join(targets))
    assert result.returncode == 0, result.stderr
    probed: dict[str, str] = json.loads(result.stdout)
    return probed


def host_addresses() -> list[str]:
    """The host's own addresses outside loopback and outside the simulators' test range."""
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    found = []
    for link in json.loads(out):
        for info in link.get("addr_info", []):
            address = ipaddress.ip_address(info["local"])
            if address.is_loopback or address.is_link_local or address in simnet.TEST_NET:
                continue
            if info["local"].startswith(simnet.IPV6_BASE):
                continue
            found.append(info["local"])
    return found


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP service on all of the host's addresses (loopback included), accepting and closing."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", 0))
    sock.listen(16)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_node_reaches_its_peers_and_nothing_of_the_host(
    client: hcloud.Client,
    node_sim: SimServer,
    ssh_keypair: tuple[Path, str],
    tmp_path: Path,
    host_listener: int,
) -> None:
    key_path, public_key = ssh_keypair
    net = status(node_sim)["network"]
    assert net is not None and net["bridge"].startswith("nwb")
    first = create_node(client, "net-a", public_key)
    # A server of another project: all servers share the public network, as on Hetzner.
    other = hcloud.Client(
        token=random_token(), api_endpoint=node_sim.api_url, poll_interval=0.02, poll_max_retries=3000
    )  # 60 s: a first boot builds the node image
    peer = create_node(other, "net-b", public_key)
    a4, b4 = first.public_net.ipv4.ip, peer.public_net.ipv4.ip
    b6 = str(ipaddress.IPv6Network(peer.public_net.ipv6.ip)[1])
    for address in (a4, b4):
        assert ipaddress.ip_address(address) in ipaddress.ip_network(net["ipv4_range"])

    # The node sees its own addresses on its own interface, as a fact gatherer would.
    shown = ssh_any_host(key_path, tmp_path, a4, "ip -4 -o addr show dev eth0; ip route")
    assert shown.returncode == 0, shown.stderr
    assert f"inet {a4}/" in shown.stdout and f"default via {net['gateway']}" in shown.stdout

    api_port = httpx.URL(node_sim.base_url).port
    gateway6 = net["ipv6_prefix"].split("/")[0] + "1"
    blocked = [
        f"127.0.0.1:{api_port}",  # /_sim and /v1 of the simulator
        f"127.0.0.1:{host_listener}",  # a service on the host's loopback
        f"{net['gateway']}:{host_listener}",  # the host on the simulator's bridge
        f"{net['gateway']}:{api_port}",
        f"{gateway6}:{host_listener}",
        *(f"{address}:{host_listener}" for address in host_addresses()),
    ]
    results = probe_from(key_path, tmp_path, a4, [*blocked, f"{b4}:22", f"{b6}:22"])
    assert results[f"{b4}:22"] == "open" and results[f"{b6}:22"] == "open", results
    for target in blocked:
        assert results[target] != "open", (target, results)
    # The host itself reaches the service from the same addresses: the failures above are the
    # node's isolation, not a dead listener.
    with socket.create_connection(("127.0.0.1", host_listener), timeout=3):
        pass

    # The host reaches any port a node opens, at the address the API reports.
    opened = ssh_any_host(
        key_path, tmp_path, a4,
        "nohup python3 -m http.server 8080 --bind 0.0.0.0 >/dev/null 2>&1 & sleep 0.5; echo started",
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert wait_http(f"http://{a4}:8080/") == 200


def test_two_simulators_hand_out_disjoint_addresses_with_their_own_host_keys(
    node_sim: SimServer, client: hcloud.Client, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    _key_path, public_key = ssh_keypair
    config = fast_config()
    config.ssh_nodes = True
    second = SimServer(ssh_nodes=True, config=config).start()
    try:
        assert second.ssh_nodes, second.ssh_nodes_reason
        nets = [status(node_sim)["network"], status(second)["network"]]
        ranges = [ipaddress.ip_network(n["ipv4_range"]) for n in nets]
        assert not ranges[0].overlaps(ranges[1])
        other = hcloud.Client(
            token=random_token(), api_endpoint=second.api_url, poll_interval=0.02, poll_max_retries=3000
        )
        servers, keys = [], []
        for index, cloud in enumerate((client, other)):
            private, public = host_keypair()
            user_data = "#cloud-config\n" + yaml.safe_dump(
                {"ssh_keys": {"ed25519_private": private, "ed25519_public": public}}
            )
            servers.append(create_node(cloud, f"twin-{index}", public_key, user_data))
            keys.append(public.split()[1])
        v4 = [s.public_net.ipv4.ip for s in servers]
        v6 = [ipaddress.IPv6Network(s.public_net.ipv6.ip) for s in servers]
        assert ipaddress.ip_address(v4[0]) in ranges[0] and ipaddress.ip_address(v4[1]) in ranges[1]
        assert not v6[0].overlaps(v6[1])
        for address, key in zip(v4, keys, strict=True):
            scan = subprocess.run(
                [require_binary("ssh-keyscan"), "-t", "ed25519", address],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            assert scan.stdout.split()[2] == key
    finally:
        second.stop()
    assert not (simnet.NETNS_DIR / simnet.netns_name(int(nets[1]["bridge"][3:]), servers[1].id)).exists()


def test_a_node_whose_address_is_taken_fails_its_start(
    client: hcloud.Client, node_sim: SimServer, ssh_keypair: tuple[Path, str]
) -> None:
    _key_path, public_key = ssh_keypair
    key = client.ssh_keys.create(name="k", public_key=public_key)
    created = client.servers.create(
        "squatted", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
        ssh_keys=[SSHKey(id=key.id)], start_after_create=False,
    )  # fmt: skip
    created.action.wait_until_finished()
    address = created.server.public_net.ipv4.ip
    net = status(node_sim)["network"]
    # Another host on the simulator's network holds the address: a namespace of this test's own.
    space, veth = f"nwtest-{secrets.token_hex(3)}", f"nwt{secrets.token_hex(3)}"
    squatter: subprocess.Popen[bytes] | None = None
    try:
        for command in (
            ["ip", "netns", "add", space],
            ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", space],
            ["ip", "link", "set", veth, "master", net["bridge"], "up"],
            ["ip", "-n", space, "addr", "add", f"{address}/23", "dev", "eth0"],
            ["ip", "-n", space, "link", "set", "eth0", "up"],
        ):
            subprocess.run(command, check=True, capture_output=True)
        squatter = subprocess.Popen(
            ["ip", "netns", "exec", space, "python3", "-c",
             "import socket,time;s=socket.socket();s.bind(('0.0.0.0',22));s.listen();time.sleep(120)"],
        )  # fmt: skip
        server = client.servers.get_by_id(created.server.id)
        with pytest.raises(ActionFailedException) as failed:
            server.power_on().wait_until_finished()
        assert "already in use" in failed.value.action.error["message"]
        assert client.servers.get_by_id(server.id).status == "off"
    finally:
        if squatter is not None:
            squatter.kill()
            squatter.wait()
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", space], capture_output=True, check=False)


def slot_free(slot: int) -> bool:
    fd = simnet._try_lock(slot)
    if fd is None:
        return False
    os.close(fd)
    return True


def test_the_next_simulator_removes_a_killed_ones_network(ssh_sim_server: SimServer) -> None:
    """Leftovers of a slot whose lock nobody holds (its simulator was killed) are removed."""
    mine = int(status(ssh_sim_server)["network"]["bridge"][3:])
    slot = next(s for s in range(simnet.SLOTS) if s != mine and slot_free(s))
    bridge, space = simnet.bridge_name(slot), simnet.netns_name(slot, 4_200_001)
    try:
        subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "netns", "add", space], check=True)
        assert slot in simnet.reap_stale_networks()
        assert not (simnet.NETNS_DIR / space).exists()
        assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0
        # A running simulator's slot is never touched.
        assert mine not in simnet.reap_stale_networks()
        assert status(ssh_sim_server)["network"]["bridge"] == simnet.bridge_name(mine)
        assert (
            subprocess.run(["ip", "link", "show", simnet.bridge_name(mine)], capture_output=True).returncode
            == 0
        )
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", space], capture_output=True, check=False)


BROADCAST = """
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    try:
        sock.sendto(b"from the node", (sys.argv[1], int(sys.argv[2])))
    except OSError as exc:
        print(type(exc).__name__)
"""


def test_a_node_cannot_reach_the_hosts_udp_services_through_the_broadcast_address() -> None:
    """A host service bound to every address (DNS, syslog, NTP, on UDP) receives what is sent to
    the broadcast address of the bridge's subnet: the node must not be able to send there."""
    reason = simnet.probe_network()
    if reason is not None:
        pytest.skip(reason)
    net = simnet.SimNetwork()
    try:
        netns = net.attach(4_200_002, simnet.NodeAddresses(str(net.ipv4.network_address + 10)))
        for target in (net.ipv4.broadcast_address, net.ipv4.network_address):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host:
                host.bind(("0.0.0.0", 0))  # a host service bound to every address
                host.settimeout(1.0)
                port = str(host.getsockname()[1])
                subprocess.run(
                    ["nsenter", f"--net={netns}", "setpriv", "--bounding-set=-net_admin,-net_raw",
                     sys.executable, "-I", "-c", BROADCAST, str(target), port],
                    capture_output=True, text=True, timeout=30, check=True,
                )  # fmt: skip
                try:
                    received: tuple[bytes, Any] | None = host.recvfrom(64)
                except TimeoutError:
                    received = None
                assert received is None, f"the host received a datagram sent to {target}"
    finally:
        net.close()
