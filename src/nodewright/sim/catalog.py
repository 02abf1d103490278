"""The fixed catalog: locations, server types, images and prices.

Ids, names, cities and network zones are the real ones so that configuration written against the
simulator works against Hetzner; prices are fixtures (Hetzner changes them), kept as decimal strings
like the real API so that cost previews exercise the same parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

VAT = Decimal("0.19")
INCLUDED_TRAFFIC_EU = 21990232555520  # 20 TiB
INCLUDED_TRAFFIC_OTHER = 1099511627776  # 1 TiB


@dataclass(frozen=True)
class Location:
    id: int
    name: str
    description: str
    country: str
    city: str
    latitude: float
    longitude: float
    network_zone: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "country": self.country,
            "city": self.city,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "network_zone": self.network_zone,
        }


LOCATIONS: tuple[Location, ...] = (
    Location(1, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", 50.47612, 12.370071, "eu-central"),
    Location(2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", 49.452102, 11.076665, "eu-central"),
    Location(3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", 60.169855, 24.938379, "eu-central"),
    Location(4, "ash", "Ashburn, VA", "US", "Ashburn, VA", 39.045821, -77.487073, "us-east"),
    Location(5, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", 45.54222, -122.95161, "us-west"),
    Location(6, "sin", "Singapore", "SG", "Singapore", 1.283333, 103.833333, "ap-southeast"),
)
EU = ("fsn1", "nbg1", "hel1")
ALL = tuple(loc.name for loc in LOCATIONS)


@dataclass(frozen=True)
class Deprecation:
    announced: str
    unavailable_after: str

    def to_json(self) -> dict[str, str]:
        return {"announced": self.announced, "unavailable_after": self.unavailable_after}


@dataclass(frozen=True)
class ServerType:
    id: int
    name: str
    cores: int
    memory: float
    disk: int
    cpu_type: str
    architecture: str
    category: str
    hourly_net: str
    monthly_net: str
    locations: tuple[str, ...]
    unavailable_in: tuple[str, ...] = ()
    deprecation: Deprecation | None = None
    storage_type: str = "local"

    def sold_in(self, location: str) -> bool:
        """Whether a server of this type can be ordered in ``location`` right now."""
        return location in self.locations and location not in self.unavailable_in and self.deprecation is None

    def to_json(self) -> dict[str, Any]:
        """Rendered once: the catalog is immutable and servers embed it in every answer.
        Callers must treat the result as read-only."""
        return self._json

    @cached_property
    def _json(self) -> dict[str, Any]:
        dep = self.deprecation.to_json() if self.deprecation else None
        return {
            "id": self.id,
            "name": self.name,
            "description": self.name.upper(),
            "cores": self.cores,
            "memory": self.memory,
            "disk": self.disk,
            "deprecated": self.deprecation is not None,
            "deprecation": dep,
            "prices": [self.price(loc) for loc in self.locations],
            "storage_type": self.storage_type,
            "cpu_type": self.cpu_type,
            "category": self.category,
            "architecture": self.architecture,
            "included_traffic": INCLUDED_TRAFFIC_EU,
            "locations": [
                {
                    "id": location_by_name(loc).id,
                    "name": loc,
                    "deprecation": dep,
                    "available": self.sold_in(loc),
                    "recommended": self.sold_in(loc) and loc in EU,
                }
                for loc in self.locations
            ],
        }

    def price(self, location: str) -> dict[str, Any]:
        factor = Decimal(1) if location in EU else Decimal("1.2")
        traffic = INCLUDED_TRAFFIC_EU if location in EU else INCLUDED_TRAFFIC_OTHER
        return {
            "location": location,
            "price_hourly": money(Decimal(self.hourly_net) * factor),
            "price_monthly": money(Decimal(self.monthly_net) * factor),
            "included_traffic": traffic,
            "price_per_tb_traffic": money(Decimal("1.00") if location in EU else Decimal("7.40")),
        }


def money(net: Decimal) -> dict[str, str]:
    """Net with 10 and gross with 16 decimals, as the real API formats them."""
    return {"net": f"{net:.10f}", "gross": f"{net * (1 + VAT):.16f}"}


SERVER_TYPES: tuple[ServerType, ...] = (
    ServerType(1, "cx11", 1, 2, 20, "shared", "x86", "Shared vCPU", "0.0052", "3.2900", EU,
               deprecation=Deprecation("2024-06-06T00:00:00Z", "2024-09-06T00:00:00Z")),
    ServerType(22, "cpx11", 2, 2, 40, "shared", "x86", "Shared vCPU", "0.0080", "4.9900", ALL,
               unavailable_in=("sin",)),
    ServerType(23, "cpx21", 3, 4, 80, "shared", "x86", "Shared vCPU", "0.0144", "8.9900", ALL),
    ServerType(45, "cax11", 2, 4, 40, "shared", "arm", "Shared vCPU", "0.0064", "3.9900", EU),
    ServerType(96, "ccx13", 2, 8, 80, "dedicated", "x86", "Dedicated vCPU", "0.0224", "13.9900", ALL),
    ServerType(104, "cx22", 2, 4, 40, "shared", "x86", "Shared vCPU", "0.0060", "3.7900", EU),
    ServerType(105, "cx32", 4, 8, 80, "shared", "x86", "Shared vCPU", "0.0110", "6.8000", EU),
)  # fmt: skip


@dataclass(frozen=True)
class Image:
    id: int
    name: str
    description: str
    os_flavor: str
    os_version: str
    architecture: str
    created: str
    deprecated: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Rendered once, read-only, like :meth:`ServerType.to_json`."""
        return self._json

    @cached_property
    def _json(self) -> dict[str, Any]:
        deprecation = (
            {"announced": self.deprecated, "unavailable_after": self.deprecated} if self.deprecated else None
        )
        return {
            "id": self.id,
            "type": "system",
            "status": "available",
            "name": self.name,
            "description": self.description,
            "image_size": None,
            "disk_size": 5,
            "created": self.created,
            "created_from": None,
            "bound_to": None,
            "os_flavor": self.os_flavor,
            "os_version": self.os_version,
            "rapid_deploy": True,
            "protection": {"delete": False},
            "deprecated": self.deprecated,
            "deprecation": deprecation,
            "deleted": None,
            "labels": dict(self.labels),
            "architecture": self.architecture,
        }


IMAGES: tuple[Image, ...] = (
    Image(15512617, "ubuntu-20.04", "Ubuntu 20.04", "ubuntu", "20.04", "x86", "2020-04-23T00:00:00Z",
          deprecated="2025-05-31T00:00:00Z"),
    Image(103908130, "ubuntu-20.04", "Ubuntu 20.04", "ubuntu", "20.04", "arm", "2023-01-16T00:00:00Z",
          deprecated="2025-05-31T00:00:00Z"),
    Image(67794396, "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04", "x86", "2022-04-21T00:00:00Z"),
    Image(103908070, "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04", "arm", "2023-01-16T00:00:00Z"),
    Image(161547269, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "x86", "2024-04-25T00:00:00Z"),
    Image(161547270, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "arm", "2024-04-25T00:00:00Z"),
    Image(114690387, "debian-12", "Debian 12", "debian", "12", "x86", "2023-06-13T00:00:00Z"),
    Image(114690389, "debian-12", "Debian 12", "debian", "12", "arm", "2023-06-13T00:00:00Z"),
    Image(310557660, "debian-13", "Debian 13", "debian", "13", "x86", "2025-08-12T00:00:00Z"),
    Image(310557661, "debian-13", "Debian 13", "debian", "13", "arm", "2025-08-12T00:00:00Z"),
)  # fmt: skip


@dataclass(frozen=True)
class Iso:
    """A public ISO that ``attach_iso`` can attach (a fixture list; nodes never boot from it)."""

    id: int
    name: str
    description: str
    architecture: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "type": "public",
            "deprecation": None,
            "architecture": self.architecture,
        }


ISOS: tuple[Iso, ...] = (
    Iso(8637, "virtio-win-0.1.271.iso", "virtio-win-0.1.271", None),
    Iso(120001, "ubuntu-24.04.2-live-server-amd64.iso", "Ubuntu 24.04.2 Server (amd64)", "x86"),
    Iso(120002, "ubuntu-24.04.2-live-server-arm64.iso", "Ubuntu 24.04.2 Server (arm64)", "arm"),
    Iso(120003, "debian-12.10.0-amd64-netinst.iso", "Debian 12.10 netinst (amd64)", "x86"),
)


def find_iso(ref: str | int) -> Iso | None:
    ref_id = _as_id(ref)
    for item in ISOS:
        if item.name == ref or item.id == ref_id:
            return item
    return None


def iso_by_name(name: str) -> Iso:
    found = find_iso(name)
    if found is None:
        raise KeyError(name)
    return found


def location_by_name(name: str) -> Location:
    for loc in LOCATIONS:
        if loc.name == name:
            return loc
    raise KeyError(name)


def _as_id(ref: str | int) -> int | None:
    if isinstance(ref, int):
        return ref
    return int(ref) if ref.isdigit() else None


def find_location(ref: str | int) -> Location | None:
    """Accept an id (int or numeric string, hcloud-go sends ``"1"``) or a name."""
    ref_id = _as_id(ref)
    for loc in LOCATIONS:
        if loc.name == ref or loc.id == ref_id:
            return loc
    return None


def find_server_type(ref: str | int) -> ServerType | None:
    ref_id = _as_id(ref)
    for st in SERVER_TYPES:
        if st.name == ref or st.id == ref_id:
            return st
    return None


def find_images(ref: str | int) -> list[Image]:
    """An image name exists once per architecture; an id names exactly one image."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return [img for img in IMAGES if img.id == int(ref)]
    return [img for img in IMAGES if img.name == ref]


def pricing() -> dict[str, Any]:
    def per_location(hourly: str, monthly: str) -> list[dict[str, Any]]:
        return [
            {
                "location": loc.name,
                "price_hourly": money(Decimal(hourly)),
                "price_monthly": money(Decimal(monthly)),
            }
            for loc in LOCATIONS
        ]

    return {
        "currency": "EUR",
        "vat_rate": "19.00",
        "primary_ips": [
            {"type": "ipv4", "prices": per_location("0.0008", "0.5000")},
            {"type": "ipv6", "prices": per_location("0.0000", "0.0000")},
        ],
        "floating_ips": [
            {
                "type": kind,
                "prices": [
                    {"location": loc.name, "price_monthly": money(Decimal(price))} for loc in LOCATIONS
                ],
            }
            for kind, price in (("ipv4", "3.0000"), ("ipv6", "3.0000"))
        ],
        "floating_ip": {"price_monthly": money(Decimal("3.0000"))},
        "image": {"price_per_gb_month": money(Decimal("0.0110"))},
        "volume": {"price_per_gb_month": money(Decimal("0.0440"))},
        "server_backup": {"percentage": "20.00"},
        "server_types": [
            {"id": st.id, "name": st.name, "prices": [st.price(loc) for loc in st.locations]}
            for st in SERVER_TYPES
        ],
        "load_balancer_types": [
            {
                "id": 1,
                "name": "lb11",
                "prices": [
                    {
                        "location": loc.name,
                        "price_hourly": money(Decimal("0.0088")),
                        "price_monthly": money(Decimal("5.3900")),
                        "included_traffic": INCLUDED_TRAFFIC_EU,
                        "price_per_tb_traffic": money(Decimal("1.00")),
                    }
                    for loc in LOCATIONS
                ],
            }
        ],
    }
