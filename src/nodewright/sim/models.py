"""The simulated cloud's records: servers, SSH keys, capacity rules, request-log entries.

Plain data with their wire rendering; the rules that change them live in :mod:`state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodewright.sim import catalog
from nodewright.sim.actions import iso
from nodewright.sim.nodes.cloudinit import parse_user_data

JSON = dict[str, Any]


@dataclass
class SshKey:
    id: int
    project: str
    name: str
    public_key: str
    fingerprint: str
    labels: dict[str, str]
    created: float

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "labels": dict(self.labels),
            "created": iso(self.created),
        }


@dataclass
class Server:
    id: int
    project: str
    name: str
    status: str
    created: float
    server_type: str
    image_id: int
    location: str
    labels: dict[str, str]
    ipv4: str | None
    ipv4_id: int | None
    ipv6_net: str | None
    ipv6_id: int | None
    user_data: str | None = None
    authorized_keys: list[str] = field(default_factory=list)
    # Handed to the node's cloud-init at first boot; never in a response after create, never saved.
    root_password: str | None = field(default=None, repr=False)
    protect_delete: bool = False
    protect_rebuild: bool = False
    backup_window: str | None = None
    iso: str | None = None  # the name of an attached ISO of catalog.ISOS
    # Reverse DNS: the IPv4's entry when set (None: the default name), IPv6 address -> name.
    ipv4_dns_ptr: str | None = None
    ipv6_dns_ptr: dict[str, str] = field(default_factory=dict)
    # The disk's size when a change_type kept it (upgrade_disk false); None: the type's disk.
    disk: int | None = None
    # Created with SSH keys: a rebuild then gives no new root password (Hetzner's rule).
    key_login: bool = False
    rescue_enabled: bool = False  # rescue at the next boot (enable_rescue until that boot)
    rescue_keys: list[str] = field(default_factory=list)
    rescue_password: str | None = field(default=None, repr=False)  # never saved
    # Set by rebuild: the next boot resets the node's disk to the image; never saved.
    reset_disk: bool = field(default=False, repr=False)

    def default_ipv4_dns_ptr(self) -> str:
        assert self.ipv4 is not None
        return f"static.{'.'.join(reversed(self.ipv4.split('.')))}.clients.your-server.de"

    def to_json(self, locked: bool, image: JSON | None) -> JSON:
        """``image``: the rendered image the server was created or rebuilt from (None once a
        snapshot it came from is deleted, as on Hetzner)."""
        st = catalog.find_server_type(self.server_type)
        assert st is not None
        ipv4 = (
            {
                "id": self.ipv4_id,
                "ip": self.ipv4,
                "blocked": False,
                "dns_ptr": self.ipv4_dns_ptr or self.default_ipv4_dns_ptr(),
            }
            if self.ipv4 is not None
            else None
        )
        ipv6: JSON | None = (
            {
                "id": self.ipv6_id,
                "ip": self.ipv6_net,
                "blocked": False,
                "dns_ptr": [{"ip": ip, "dns_ptr": name} for ip, name in sorted(self.ipv6_dns_ptr.items())],
            }
            if self.ipv6_net is not None
            else None
        )
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created": iso(self.created),
            "public_net": {"ipv4": ipv4, "ipv6": ipv6, "floating_ips": [], "firewalls": []},
            "private_net": [],
            "server_type": st.to_json(),
            "location": catalog.location_by_name(self.location).to_json(),
            "image": image,
            "iso": catalog.iso_by_name(self.iso).to_json() if self.iso is not None else None,
            "rescue_enabled": self.rescue_enabled,
            "locked": locked,
            "backup_window": self.backup_window,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": st.price(self.location)["included_traffic"],
            "protection": {"delete": self.protect_delete, "rebuild": self.protect_rebuild},
            "labels": dict(self.labels),
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": self.disk or st.disk,
            "placement_group": None,
        }

    def hostname(self) -> str:
        return parse_user_data(self.user_data).hostname or self.name


@dataclass
class ProjectImage:
    """A snapshot or backup made by ``create_image``: the project's own, unlike the catalog's
    system images. Its content (the node's disk) is kept by the node supervisor."""

    id: int
    project: str
    type: str  # snapshot | backup
    status: str  # creating | available
    description: str
    created: float
    created_from: dict[str, Any]  # {"id": server id, "name": name at the time}
    bound_to: int | None  # the server of a backup
    os_flavor: str
    os_version: str | None
    architecture: str
    disk_size: float
    labels: dict[str, str]
    image_size: float | None = None
    protect_delete: bool = False

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "name": None,
            "description": self.description,
            "image_size": self.image_size,
            "disk_size": self.disk_size,
            "created": iso(self.created),
            "created_from": dict(self.created_from),
            "bound_to": self.bound_to,
            "os_flavor": self.os_flavor,
            "os_version": self.os_version,
            "rapid_deploy": False,
            "protection": {"delete": self.protect_delete},
            "deprecated": None,
            "deprecation": None,
            "deleted": None,
            "labels": dict(self.labels),
            "architecture": self.architecture,
        }


@dataclass
class Capacity:
    location: str | None
    server_type: str | None
    message: str

    def blocks(self, location: str, server_type: str) -> bool:
        return (self.location in {None, location}) and (self.server_type in {None, server_type})


@dataclass
class RequestRecord:
    time: str
    method: str
    path: str
    query: str
    status: int
    error_code: str | None
    correlation_id: str
    project: str | None
    duration_ms: float

    def to_json(self) -> JSON:
        return self.__dict__.copy()
