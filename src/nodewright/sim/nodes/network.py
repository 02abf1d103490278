"""A node's network: its own network namespace on the simulator's bridge, and nothing beyond.

Every simulator leases one sub-range (a ``/23``) of 198.18.0.0/15, the block RFC 2544 reserves
for network tests and that no machine routes, under a lock file held for the simulator's life:
two simulators on one machine never hand out the same address, and a killed one's lock is free
again, so the next lease of that slot removes its stale bridge and namespaces first.

The host holds the first address of the slot on a bridge (``nwb<slot>``); each node is a network
namespace (``nws<slot>-<server id>``) with its server's IPv4 (and the ``::1`` of its IPv6 /64) on
``eth0``, a veth whose other end is a port of the bridge. Nodes of one simulator reach each other
as servers do over the public network, the host reaches every port of every node at the address
the API reports, and a node reaches nothing else:

- an nftables table in the node's namespace drops every new connection to anything but the
  other nodes (the host's bridge address included, and the slot's broadcast address, which the
  host's sockets bound to every address would receive), set before the node's root loses
  ``CAP_NET_ADMIN`` so it cannot be undone from inside; its default route (via the host, as
  facts expect one) therefore carries nothing new, and the host does not forward anyway;
- ``127.0.0.1`` is the node's own loopback, not the host's.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TEST_NET = ipaddress.IPv4Network("198.18.0.0/15")
SLOT_PREFIX = 23
SLOTS = 2 ** (SLOT_PREFIX - TEST_NET.prefixlen)
IPV6_BASE = "2001:db8"  # RFC 3849 documentation prefix; the slot picks the third group
LOCK_DIR = Path("/run/nodewright-sim-net")
NETNS_DIR = Path("/run/netns")
TABLE = "nodewright"


class NetworkError(RuntimeError):
    """A node's network could not be made; the message says why."""


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(("-n", netns) if netns else ()), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result


def _batch(commands: list[str], netns: str | None = None) -> None:
    argv = ["ip", *(("-n", netns) if netns else ()), "-batch", "-"]
    script = "\n".join(commands) + "\n"
    result = subprocess.run(argv, input=script, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {result.stderr.strip()}")


def slot_ipv4(slot: int) -> ipaddress.IPv4Network:
    base = int(TEST_NET.network_address) + slot * 2 ** (32 - SLOT_PREFIX)
    return ipaddress.IPv4Network((base, SLOT_PREFIX))


def slot_ipv6_prefix(slot: int) -> str:
    """The /48 a slot's servers take their /64s from: ``2001:db8:<slot>::/48``."""
    return f"{IPV6_BASE}:{slot + 1:x}"


def bridge_name(slot: int) -> str:
    return f"nwb{slot}"


def netns_name(slot: int, server_id: int) -> str:
    return f"nws{slot}-{server_id}"


def veth_name(slot: int, server_id: int) -> str:
    return f"nw{slot}-{server_id}"[:15]


def _slot_leftovers(slot: int) -> tuple[bool, list[str]]:
    bridge = _ip("link", "show", bridge_name(slot), check=False).returncode == 0
    prefix = f"nws{slot}-"
    spaces = sorted(p.name for p in NETNS_DIR.glob(prefix + "*")) if NETNS_DIR.is_dir() else []
    return bridge, spaces


def _clean_slot(slot: int) -> bool:
    """Remove a slot's bridge and namespaces; the caller holds the slot's lock."""
    bridge, spaces = _slot_leftovers(slot)
    for space in spaces:
        _ip("netns", "del", space, check=False)
    if bridge:
        _ip("link", "del", bridge_name(slot), check=False)
    return bridge or bool(spaces)


def _try_lock(slot: int) -> int | None:
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(LOCK_DIR / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def reap_stale_networks() -> list[int]:
    """Clean the slots of killed simulators: leftovers whose slot lock nobody holds."""
    cleaned = []
    slots = set()
    if NETNS_DIR.is_dir():
        for path in NETNS_DIR.glob("nws*-*"):
            head = path.name[3:].split("-", 1)[0]
            if head.isdigit():
                slots.add(int(head))
    listing = _ip("-o", "link", "show", "type", "bridge", check=False).stdout
    for line in listing.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith("nwb") and name[3:].isdigit():
            slots.add(int(name[3:]))
    for slot in sorted(slots):
        fd = _try_lock(slot)
        if fd is None:
            continue  # its simulator is alive
        try:
            if _clean_slot(slot):
                log.warning("removed the network leftovers of a killed simulator (slot %s)", slot)
                cleaned.append(slot)
        finally:
            os.close(fd)
    return cleaned


@dataclass
class NodeAddresses:
    ipv4: str
    ipv6_net: str | None = None


class SimNetwork:
    """One simulator's slot of the test network: its bridge, its lock and its nodes' namespaces."""

    def __init__(self) -> None:
        reap_stale_networks()
        start = secrets.randbelow(SLOTS)
        for offset in range(SLOTS):
            slot = (start + offset) % SLOTS
            fd = _try_lock(slot)
            if fd is not None:
                break
        else:
            raise NetworkError("every slot of 198.18.0.0/15 is held by a running simulator")
        self.slot = slot
        self._lock_fd: int | None = fd
        self.ipv4 = slot_ipv4(slot)
        self.gateway = str(self.ipv4.network_address + 1)
        self.ipv6_prefix = slot_ipv6_prefix(slot)
        self.bridge = bridge_name(slot)
        try:
            _clean_slot(slot)
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/{SLOT_PREFIX}", "dev", self.bridge)
            _ip("-6", "addr", "add", f"{self.ipv6_prefix}::1/48", "dev", self.bridge, "nodad")
            _ip("link", "set", self.bridge, "up")
        except NetworkError:
            self.close()
            raise

    @property
    def address_range(self) -> str:
        return str(self.ipv4)

    def attach(self, server_id: int, addresses: NodeAddresses) -> str:
        """Create the node's namespace with its addresses and firewall; returns the netns path.

        Two ``ip -batch`` runs and one ``nft``: a node's network costs three processes."""
        name = netns_name(self.slot, server_id)
        veth = veth_name(self.slot, server_id)
        host_side = [
            f"netns add {name}",
            f"link add {veth} type veth peer name eth0 netns {name}",
            f"link set {veth} master {self.bridge} up",
        ]
        node_side = [
            "link set lo up",
            f"addr add {addresses.ipv4}/{SLOT_PREFIX} dev eth0",
            "link set eth0 up",
            # A default route as on a server (facts such as ansible_default_ipv4 rely on it); the
            # firewall below lets no new connection through it.
            f"route add default via {self.gateway}",
        ]
        if addresses.ipv6_net:
            node6 = ipaddress.IPv6Network(addresses.ipv6_net, strict=False).network_address + 1
            node_side += [
                f"addr add {node6}/64 dev eth0 nodad",
                f"route add {self.ipv6_prefix}::/48 dev eth0",
            ]
        try:
            _batch(host_side)
            _batch(node_side, netns=name)
            self._firewall(name)
        except NetworkError:
            self.detach(server_id)
            raise
        return str(NETNS_DIR / name)

    def _firewall(self, name: str) -> None:
        rules = f"""
table inet {TABLE} {{
  chain output {{
    type filter hook output priority 0; policy drop;
    oif "lo" accept
    ct state established,related accept
    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept
    ip daddr {{ {self.gateway}, {self.ipv4.broadcast_address}, {self.ipv4.network_address} }} drop
    ip daddr {self.ipv4} accept
    ip6 daddr {{ {self.ipv6_prefix}::1, {self.ipv6_prefix}:: }} drop
    ip6 daddr {self.ipv6_prefix}::/48 accept
  }}
}}
"""
        result = subprocess.run(
            ["nsenter", f"--net={NETNS_DIR / name}", "nft", "-f", "-"],
            input=rules, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise NetworkError(f"nft in {name}: {result.stderr.strip()}")

    def detach(self, server_id: int) -> None:
        # The link first: deleting it takes the node's end along at once, while a namespace is
        # torn down asynchronously and would answer at the address a little longer.
        veth = veth_name(self.slot, server_id)
        if Path("/sys/class/net", veth).exists():
            _ip("link", "del", veth, check=False)
        name = netns_name(self.slot, server_id)
        if (NETNS_DIR / name).exists():
            _ip("netns", "del", name, check=False)

    def close(self) -> None:
        """Remove the bridge and every namespace of this slot, then give the slot back."""
        if self._lock_fd is None:
            return
        _clean_slot(self.slot)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        self._lock_fd = None


def probe_network() -> str | None:
    """Why nodes cannot have networks of their own here, or None when they can."""
    for tool in ("ip", "nft", "nsenter"):
        if shutil.which(tool) is None:
            package = {"ip": "iproute2", "nft": "nftables", "nsenter": "util-linux"}[tool]
            return f"{tool}(8) not found (install {package})"
    name = f"nwprobe-{os.getpid()}"
    try:
        _ip("netns", "add", name)
        result = subprocess.run(
            ["ip", "netns", "exec", name, "nft", "add", "table", "inet", TABLE],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return f"nftables unavailable in a network namespace: {result.stderr.strip()}"
    except NetworkError as exc:
        return f"cannot create network namespaces: {exc}"
    finally:
        _ip("netns", "del", name, check=False)
    return None
