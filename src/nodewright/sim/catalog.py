"""The fixed catalog: locations, server types, images and prices.

Ids, names, cities and network zones are the real ones so that configuration written against the
simulator works against Hetzner; prices are fixtures (Hetzner changes them), kept as decimal strings
like the real API so that cost previews exercise the same parsing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
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

    def passed(self) -> bool:
        """Whether ``unavailable_after`` lies in the past: the real API no longer sells it then."""
        return _timestamp(self.unavailable_after) <= datetime.now(UTC)


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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
    # Out of stock there right now (``available: false`` without a deprecation).
    unavailable_in: tuple[str, ...] = ()
    # The type-wide deprecation: the real API sets it when the type is deprecated everywhere.
    deprecation: Deprecation | None = None
    storage_type: str = "local"
    # Deprecated in some locations only (``locations[].deprecation``).
    deprecated_in: Mapping[str, Deprecation] = field(default_factory=dict, hash=False)
    description: str | None = None
    # The real API's own answer for this type, when the catalog was loaded from a snapshot
    # (``load_snapshot``): rendered as it is, prices and per-location flags included.
    source: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)

    def location_deprecation(self, location: str) -> Deprecation | None:
        return self.deprecated_in.get(location) or self.deprecation

    def sold_in(self, location: str) -> bool:
        """Whether a server of this type can be ordered in ``location`` right now."""
        dep = self.deprecated_in.get(location)
        return (
            location in self.locations
            and location not in self.unavailable_in
            and self.deprecation is None
            and (dep is None or not dep.passed())
        )

    def listed(self) -> bool:
        """Whether ``GET /server_types`` lists it: not once a type-wide deprecation has passed
        ("the resource will not be returned by resource type list endpoint", OpenAPI
        ``DeprecationInfo.unavailable_after``; cx11 left the list after 2024-09-06). ``GET
        /server_types/{id}`` and the servers that use it still show it."""
        return self.deprecation is None or not self.deprecation.passed()

    def to_json(self) -> dict[str, Any]:
        """Rendered once: the catalog is immutable and servers embed it in every answer.
        Callers must treat the result as read-only."""
        return self._json

    @cached_property
    def _json(self) -> dict[str, Any]:
        if self.source is not None:
            return dict(self.source)
        dep = self.deprecation.to_json() if self.deprecation else None
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description or self.name.upper(),
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
                    "deprecation": (d.to_json() if (d := self.location_deprecation(loc)) else None),
                    "available": self.sold_in(loc),
                    "recommended": self.sold_in(loc) and loc in EU,
                }
                for loc in self.locations
            ],
        }

    def price(self, location: str) -> dict[str, Any]:
        if self.source is not None:
            return next(p for p in self.source["prices"] if p["location"] == location)
        factor = Decimal(1) if location in EU else Decimal("1.2")
        traffic = INCLUDED_TRAFFIC_EU if location in EU else INCLUDED_TRAFFIC_OTHER
        return {
            "location": location,
            "price_hourly": money(Decimal(self.hourly_net) * factor),
            "price_monthly": money(Decimal(self.monthly_net) * factor),
            "included_traffic": traffic,
            "price_per_tb_traffic": money(Decimal("1.00") if location in EU else Decimal("7.40")),
        }

    def priced_locations(self) -> tuple[str, ...]:
        if self.source is not None:
            return tuple(p["location"] for p in self.source["prices"])
        return self.locations


def money(net: Decimal) -> dict[str, str]:
    """Net with 10 and gross with 16 decimals, as the real API formats them."""
    return {"net": f"{net:.10f}", "gross": f"{net * (1 + VAT):.16f}"}


# The built-in catalog, as the real API answered on 2026-12-08 as far as primary sources show it.
# Sources (see docs/simulator.md, "Catalog"):
#   [GO]  hcloud-go hcloud/server_test.go, a server answer of Dec 2025: cx22 id 104, 2/4/40,
#         category "cost_optimized", deprecated in fsn1, nbg1, hel1 and type-wide, announced
#         2025-10-16T06:00:00Z, unavailable_after 2025-12-31T23:59:59Z; prices 0.0052/3.29 net.
#   [TF]  terraform-provider-hcloud acceptance tests, run against the real API
#         (internal/servertype/data_source_test.go): cpx11 id 22 "CPX 11" 2/2/40 regular_purpose,
#         six locations, fsn1 deprecated with the timestamps above, no type-wide deprecation, still
#         listed first in 2026-07; cpx21 id 23 "CPX 21"; cpx22 id 109 2/4/80 regular_purpose, four
#         locations, fsn1 first and not deprecated; cpx12 exists (the "smallest server type",
#         2026-07); cpx22 is used in hel1.
#   [CLI] hetznercloud/cli internal/cmd/servertype/describe_test.go: cax11 id 45.
#   [CHG] docs.hetzner.cloud/changelog#2025-10-16-server-types-deprecated, quoted by Hetzner's own
#         PRs: "The CX Gen 2 and CPX Gen 1 types are deprecated" (cx22/cx32/..., cpx11/cpx21/...);
#         hcloud-go's warning for cx42: "deprecated in all locations and will no longer be
#         available for order as of 2025-12-31".
# NOT SOURCED (fixtures, marked "unsourced" below): the ids of every type without a source tag;
# cores/memory/disk of the new families (public price lists agree, no API answer seen); the
# categories of cax and ccx; cpx11/cpx21 deprecation in nbg1 and hel1 (only fsn1 was seen); the
# locations of the new families beyond fsn1 and hel1 for cpx22; every price except cx22's
# (Hetzner changed prices on 2026-04-01 and 2026-06-15); ``recommended`` (true in EU where
# sold); cpx11 being out of stock in sin (a fixture for the resource_unavailable path).
_GEN2_DEPRECATION = Deprecation("2025-10-16T06:00:00Z", "2025-12-31T23:59:59Z")  # [GO] [TF]
_EU_DEPRECATED = dict.fromkeys(EU, _GEN2_DEPRECATION)
_CPX2 = ("fsn1", "nbg1", "hel1", "sin")  # fsn1, hel1 and the count of four [TF]; nbg1, sin unsourced

SERVER_TYPES: tuple[ServerType, ...] = tuple(sorted((  # the real list is ordered by id [TF]
    # Deprecated 2024-06-06, unavailable after 2024-09-06 (changelog
    # 2024-06-06-old-server-types-with-shared-intel-vcpus-are-deprecated); kept for the tests of
    # the deprecation paths, no longer listed.
    ServerType(1, "cx11", 1, 2, 20, "shared", "x86", "cost_optimized", "0.0052", "3.2900", EU,
               deprecation=Deprecation("2024-06-06T00:00:00Z", "2024-09-06T00:00:00Z")),
    # CPX Gen 1: deprecated in the EU, still sold in the US and Singapore [TF].
    ServerType(22, "cpx11", 2, 2, 40, "shared", "x86", "regular_purpose", "0.0080", "4.9900", ALL,
               unavailable_in=("sin",), deprecated_in=_EU_DEPRECATED, description="CPX 11"),
    ServerType(23, "cpx21", 3, 4, 80, "shared", "x86", "regular_purpose", "0.0144", "8.9900", ALL,
               deprecated_in=_EU_DEPRECATED, description="CPX 21"),  # 3/4/80 unsourced
    # CX Gen 2: deprecated everywhere [GO] [CHG]; cx32's id and prices unsourced.
    ServerType(104, "cx22", 2, 4, 40, "shared", "x86", "cost_optimized", "0.0052", "3.2900", EU,
               deprecation=_GEN2_DEPRECATION, deprecated_in=_EU_DEPRECATED),
    ServerType(105, "cx32", 4, 8, 80, "shared", "x86", "cost_optimized", "0.0110", "6.8000", EU,
               deprecation=_GEN2_DEPRECATION, deprecated_in=_EU_DEPRECATED),
    # CX Gen 3, cost-optimized: ids, sizes, locations (EU) and prices unsourced.
    ServerType(114, "cx23", 2, 4, 40, "shared", "x86", "cost_optimized", "0.0060", "3.7900", EU),
    ServerType(115, "cx33", 4, 8, 80, "shared", "x86", "cost_optimized", "0.0110", "6.8000", EU),
    ServerType(116, "cx43", 8, 16, 160, "shared", "x86", "cost_optimized", "0.0190", "11.9900", EU),
    ServerType(117, "cx53", 16, 32, 320, "shared", "x86", "cost_optimized", "0.0360", "22.4900", EU),
    # CPX Gen 2, regular performance: cpx22 [TF]; the others' ids, sizes and prices unsourced.
    ServerType(108, "cpx12", 1, 2, 40, "shared", "x86", "regular_purpose", "0.0080", "4.9900", _CPX2),
    ServerType(109, "cpx22", 2, 4, 80, "shared", "x86", "regular_purpose", "0.0144", "8.9900", _CPX2),
    ServerType(110, "cpx32", 4, 8, 160, "shared", "x86", "regular_purpose", "0.0256", "15.9900", _CPX2),
    ServerType(111, "cpx42", 8, 16, 320, "shared", "x86", "regular_purpose", "0.0480", "29.9900", _CPX2),
    ServerType(112, "cpx52", 12, 24, 480, "shared", "x86", "regular_purpose", "0.0688", "42.9900", _CPX2),
    ServerType(113, "cpx62", 16, 32, 640, "shared", "x86", "regular_purpose", "0.0960", "59.9900", _CPX2),
    # Arm (Ampere): cax11 id 45 [CLI]; the rest, the category and the prices unsourced.
    ServerType(45, "cax11", 2, 4, 40, "shared", "arm", "cost_optimized", "0.0064", "3.9900", EU),
    ServerType(93, "cax21", 4, 8, 80, "shared", "arm", "cost_optimized", "0.0112", "6.9900", EU),
    ServerType(94, "cax31", 8, 16, 160, "shared", "arm", "cost_optimized", "0.0224", "13.9900", EU),
    ServerType(95, "cax41", 16, 32, 320, "shared", "arm", "cost_optimized", "0.0448", "27.9900", EU),
    # Dedicated vCPU: ids, sizes, category and prices unsourced.
    ServerType(96, "ccx13", 2, 8, 80, "dedicated", "x86", "general_purpose", "0.0224", "13.9900", ALL),
    ServerType(97, "ccx23", 4, 16, 160, "dedicated", "x86", "general_purpose", "0.0448", "27.9900", ALL),
    ServerType(98, "ccx33", 8, 32, 240, "dedicated", "x86", "general_purpose", "0.0896", "55.9900", ALL),
    ServerType(99, "ccx43", 16, 64, 360, "dedicated", "x86", "general_purpose", "0.1792", "111.9900", ALL),
    ServerType(100, "ccx53", 32, 128, 600, "dedicated", "x86", "general_purpose", "0.3584", "223.9900", ALL),
    ServerType(101, "ccx63", 48, 192, 960, "dedicated", "x86", "general_purpose", "0.5376", "335.9900", ALL),
), key=lambda st: st.id))  # fmt: skip


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
    # debian-13 x86: id and created as a real server answer shows them (hcloud-go
    # hcloud/server_test.go); ubuntu-24.04 x86 161547269 is terraform-provider-hcloud's
    # TEST_IMAGE_ID. The other ids and dates are unsourced fixtures.
    Image(310554929, "debian-13", "Debian 13", "debian", "13", "x86", "2025-08-18T06:15:25Z"),
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
            {"id": st.id, "name": st.name, "prices": [st.price(loc) for loc in st.priced_locations()]}
            for st in SERVER_TYPES
            if st.listed()
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


class CatalogError(ValueError):
    """A catalog snapshot that cannot be used; the message names the file and the bad field."""


def load_snapshot(path: Path) -> None:
    """Replace the catalog with a snapshot of the real API: a JSON object holding the real
    answers' own lists, ``{"server_types": [...], "locations": [...], "images": [...]}`` (as ``GET
    /server_types``, ``GET /locations`` and ``GET /images?type=system`` return them; ``images``
    optional, the built-in images stay otherwise). Every field the simulator reads is checked;
    the first problem raises ``CatalogError`` naming the file and the field. Call it before the
    app is built: every lookup (``find_server_type``, ``SERVER_TYPES``, ...) then sees it."""
    global SERVER_TYPES, LOCATIONS, IMAGES
    snapshot = _Snapshot(path)
    locations, server_types, images = snapshot.parse()
    LOCATIONS, SERVER_TYPES = locations, server_types
    if images is not None:
        IMAGES = images


_FORMATS = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", dict: "an object"}


class _Snapshot:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> CatalogError:
        return CatalogError(f"{self.path}: {where}: {message}")

    def get(self, obj: Mapping[str, Any], key: str, kind: type, where: str, *, null: bool = False) -> Any:
        if key not in obj:
            raise self.fail(f"{where}.{key}", "missing")
        value = obj[key]
        if value is None and null:
            return None
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise self.fail(f"{where}.{key}", f"expected {_FORMATS[kind]}{' or null' if null else ''}")
        return value

    def choice(self, obj: Mapping[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
        value: str = self.get(obj, key, str, where)
        if value not in allowed:
            raise self.fail(f"{where}.{key}", f"expected one of {', '.join(allowed)}, not {value!r}")
        return value

    def items(self, obj: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
        value = obj.get(key)
        if not isinstance(value, list):
            raise self.fail(f"{where}{key}", "missing" if value is None else "expected a list")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"{where}{key}[{i}]", "expected an object")
        return value

    def decimal(self, obj: Mapping[str, Any], key: str, where: str) -> str:
        value: str = self.get(obj, key, str, where)
        try:
            Decimal(value)
        except InvalidOperation:
            raise self.fail(f"{where}.{key}", f"expected a decimal string, not {value!r}") from None
        return value

    def timestamp(self, obj: Mapping[str, Any], key: str, where: str) -> str:
        value: str = self.get(obj, key, str, where)
        try:
            _timestamp(value)
        except ValueError:
            raise self.fail(f"{where}.{key}", f"expected an RFC 3339 date-time, not {value!r}") from None
        return value

    def deprecation(self, obj: Mapping[str, Any], where: str) -> Deprecation | None:
        dep = self.get(obj, "deprecation", dict, where, null=True)
        if dep is None:
            return None
        inner = f"{where}.deprecation"
        return Deprecation(
            self.timestamp(dep, "announced", inner), self.timestamp(dep, "unavailable_after", inner)
        )

    def parse(self) -> tuple[tuple[Location, ...], tuple[ServerType, ...], tuple[Image, ...] | None]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CatalogError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CatalogError(f"{self.path}: not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise self.fail(
                "(top level)", 'expected an object like {"server_types": [...], "locations": [...]}'
            )
        for key in data:
            if key not in ("server_types", "locations", "images"):
                raise self.fail(key, "unknown key (expected server_types, locations, images)")
        locations = tuple(
            self.location(item, f"locations[{i}]") for i, item in enumerate(self.items(data, "locations", ""))
        )
        if not locations:
            raise self.fail("locations", "empty")
        self.unique([(loc.id, loc.name) for loc in locations], "locations")
        known = {loc.name: loc.id for loc in locations}
        server_types = tuple(
            self.server_type(item, f"server_types[{i}]", known)
            for i, item in enumerate(self.items(data, "server_types", ""))
        )
        if not server_types:
            raise self.fail("server_types", "empty")
        self.unique([(st.id, st.name) for st in server_types], "server_types")
        images = None
        if "images" in data:
            images = tuple(
                self.image(item, f"images[{i}]") for i, item in enumerate(self.items(data, "images", ""))
            )
            if len({img.id for img in images}) != len(images):
                raise self.fail("images", "duplicate id")
        return locations, server_types, images

    def unique(self, keys: list[tuple[int, str]], where: str) -> None:
        for index, field_name in ((0, "id"), (1, "name")):
            seen = [key[index] for key in keys]
            dupes = sorted({str(v) for v in seen if seen.count(v) > 1})
            if dupes:
                raise self.fail(where, f"duplicate {field_name} {dupes[0]}")

    def location(self, item: Mapping[str, Any], where: str) -> Location:
        return Location(
            id=self.get(item, "id", int, where),
            name=self.get(item, "name", str, where),
            description=self.get(item, "description", str, where),
            country=self.get(item, "country", str, where),
            city=self.get(item, "city", str, where),
            latitude=float(self.get(item, "latitude", float, where)),
            longitude=float(self.get(item, "longitude", float, where)),
            network_zone=self.get(item, "network_zone", str, where),
        )

    def server_type(self, item: Mapping[str, Any], where: str, known: Mapping[str, int]) -> ServerType:
        for key, kind in (("description", str), ("cores", float), ("memory", float), ("disk", float),
                          ("deprecated", bool)):  # fmt: skip
            self.get(item, key, kind, where)
        names: list[str] = []
        deprecated_in: dict[str, Deprecation] = {}
        unavailable: list[str] = []
        for i, entry in enumerate(self.items(item, "locations", f"{where}.")):
            at = f"{where}.locations[{i}]"
            name: str = self.get(entry, "name", str, at)
            if name not in known:
                raise self.fail(f"{at}.name", f"location {name!r} is not in locations")
            if self.get(entry, "id", int, at) != known[name]:
                raise self.fail(f"{at}.id", f"does not match location {name!r}")
            available = self.get(entry, "available", bool, at)
            self.get(entry, "recommended", bool, at)
            dep = self.deprecation(entry, at)
            if dep is not None:
                deprecated_in[name] = dep
            elif not available:
                unavailable.append(name)
            names.append(name)
        for i, price in enumerate(self.items(item, "prices", f"{where}.")):
            at = f"{where}.prices[{i}]"
            location = self.get(price, "location", str, at)
            if location not in known:
                raise self.fail(f"{at}.location", f"location {location!r} is not in locations")
            for key in ("price_hourly", "price_monthly", "price_per_tb_traffic"):
                amount = self.get(price, key, dict, at)
                self.decimal(amount, "net", f"{at}.{key}")
                self.decimal(amount, "gross", f"{at}.{key}")
            self.get(price, "included_traffic", int, at)
        deprecation = self.deprecation(item, where) if "deprecation" in item else None
        cores, disk = item["cores"], item["disk"]
        return ServerType(
            id=self.get(item, "id", int, where),
            name=self.get(item, "name", str, where),
            cores=int(cores),
            memory=float(item["memory"]),
            disk=int(disk),
            cpu_type=self.choice(item, "cpu_type", ("shared", "dedicated"), where),
            architecture=self.choice(item, "architecture", ("x86", "arm"), where),
            category=str(item.get("category") or ""),
            hourly_net="0",
            monthly_net="0",
            locations=tuple(names),
            unavailable_in=tuple(unavailable),
            deprecation=deprecation,
            storage_type=self.choice(item, "storage_type", ("local", "network"), where),
            deprecated_in=deprecated_in,
            description=item["description"],
            source=item,
        )

    def image(self, item: Mapping[str, Any], where: str) -> Image:
        if self.get(item, "type", str, where) != "system":
            raise self.fail(
                f"{where}.type",
                "only system images belong in a catalog (snapshots and backups are a project's)",
            )
        deprecated = self.get(item, "deprecated", str, where, null=True)
        if deprecated is None and item.get("deprecation") is not None:
            deprecated = self.deprecation(item, where).unavailable_after  # type: ignore[union-attr]
        labels = self.get(item, "labels", dict, where)
        return Image(
            id=self.get(item, "id", int, where),
            name=self.get(item, "name", str, where),
            description=self.get(item, "description", str, where),
            os_flavor=self.get(item, "os_flavor", str, where),
            os_version=self.get(item, "os_version", str, where, null=True) or "",
            architecture=self.choice(item, "architecture", ("x86", "arm"), where),
            created=self.timestamp(item, "created", where),
            deprecated=deprecated,
            labels={str(k): str(v) for k, v in labels.items()},
        )
