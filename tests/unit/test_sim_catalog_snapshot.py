"""``nodewright sim --catalog FILE``: a snapshot of the real API's catalog replaces the built-in one,
every lookup sees it, the hcloud SDK reads it, and a bad file is one line naming the file and field."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcloud
import httpx
import pytest

from nodewright.sim import catalog
from nodewright.sim.server import SimServer
from tests.fixtures.sim import fast_config, random_token

PRICE = {
    "location": "fsn1",
    "price_hourly": {"net": "0.0070000000", "gross": "0.0083300000000000"},
    "price_monthly": {"net": "4.4900000000", "gross": "5.3431000000000000"},
    "included_traffic": 21990232555520,
    "price_per_tb_traffic": {"net": "1.0000000000", "gross": "1.1900000000000000"},
}
DEPRECATION = {"announced": "2026-11-02T06:00:00Z", "unavailable_after": "2026-11-30T23:59:59Z"}


def _type(type_id: int, name: str, locations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": type_id,
        "name": name,
        "description": name.upper(),
        "cores": 2,
        "memory": 4.0,
        "disk": 40,
        "deprecated": False,
        "deprecation": None,
        "prices": [{**PRICE, "location": loc["name"]} for loc in locations],
        "storage_type": "local",
        "cpu_type": "shared",
        "category": "cost_optimized",
        "architecture": "x86",
        "locations": locations,
    }


def snapshot() -> dict[str, Any]:
    fsn1 = catalog.location_by_name("fsn1").to_json()
    sin = catalog.location_by_name("sin").to_json()
    here = {"id": 1, "name": "fsn1", "deprecation": None, "available": True, "recommended": True}
    there = {"id": 6, "name": "sin", "deprecation": None, "available": True, "recommended": False}
    return {
        "locations": [fsn1, sin],
        "server_types": [
            _type(901, "zx21", [here, there]),
            _type(902, "zx11", [{**here, "deprecation": DEPRECATION, "available": False}, there]),
        ],
    }


@pytest.fixture
def restore_catalog() -> Iterator[None]:
    saved = catalog.LOCATIONS, catalog.SERVER_TYPES, catalog.IMAGES
    try:
        yield
    finally:
        catalog.LOCATIONS, catalog.SERVER_TYPES, catalog.IMAGES = saved


def test_a_loaded_snapshot_is_what_the_api_and_the_sdk_answer(tmp_path: Path, restore_catalog: None) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(snapshot()))
    images_before = catalog.IMAGES
    catalog.load_snapshot(path)
    assert [st.name for st in catalog.SERVER_TYPES] == ["zx21", "zx11"]
    assert catalog.find_server_type("zx11") is not None and catalog.find_location("hel1") is None
    assert catalog.IMAGES is images_before  # no "images" in the file: the built-in ones stay

    server = SimServer(ssh_nodes=False, config=fast_config())
    server.start()
    try:
        client = hcloud.Client(token=random_token(), api_endpoint=server.base_url + "/v1", poll_interval=0.1)
        types = {st.name: st for st in client.server_types.get_all()}
        assert set(types) == {"zx21", "zx11"}
        assert types["zx21"].prices[0]["price_monthly"]["net"] == "4.4900000000"  # verbatim
        old = {loc.location.name: loc for loc in types["zx11"].locations}
        assert old["fsn1"].deprecation is not None and old["fsn1"].available is False
        assert old["sin"].deprecation is None and old["sin"].available is True
        assert [loc.name for loc in client.locations.get_all()] == ["fsn1", "sin"]
        pricing = httpx.get(
            server.base_url + "/v1/pricing", headers={"Authorization": "Bearer " + random_token()}
        )
        assert [st["name"] for st in pricing.json()["pricing"]["server_types"]] == ["zx21", "zx11"]

        made = client.servers.create(
            "web-1",
            server_type=hcloud.server_types.ServerType(name="zx11"),
            image=hcloud.images.Image(name="ubuntu-24.04"),
            location=hcloud.locations.Location(name="sin"),
        )
        assert made.server.server_type.name == "zx11"
        with pytest.raises(hcloud.APIException) as refused:
            client.servers.create(
                "web-2",
                server_type=hcloud.server_types.ServerType(name="zx11"),
                image=hcloud.images.Image(name="ubuntu-24.04"),
                location=hcloud.locations.Location(name="fsn1"),
            )
        assert refused.value.code == "resource_unavailable"
    finally:
        server.stop()


def _broken(**change: Any) -> dict[str, Any]:
    data = snapshot()
    for dotted, value in change.items():
        target: Any = data
        *parents, last = dotted.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is None:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_broken(server_types__0__cores="two"), "server_types[0].cores: expected a number"),
        (_broken(server_types__1__locations__0__name="hel1"), "server_types[1].locations[0].name"),
        (_broken(server_types__0__prices__0__price_hourly={"net": "x", "gross": "1"}),
         "server_types[0].prices[0].price_hourly.net"),
        (_broken(server_types__0__architecture="riscv"), "server_types[0].architecture"),
        (_broken(server_types__1__locations__0__deprecation={"announced": "soon"}),
         "server_types[1].locations[0].deprecation.announced"),
        (_broken(locations__0__latitude=None), "locations[0].latitude: missing"),
        (_broken(server_types__0__locations__0__available=None), "locations[0].available: missing"),
        (_broken(datacenters=[]), "datacenters: unknown key"),
        (_broken(server_types=None), "server_types: missing"),
        ([1, 2], "(top level)"),
    ],
)  # fmt: skip
def test_a_bad_snapshot_names_the_file_and_the_field(
    tmp_path: Path, restore_catalog: None, data: Any, field: str
) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    before = catalog.SERVER_TYPES
    with pytest.raises(catalog.CatalogError) as error:
        catalog.load_snapshot(path)
    assert str(error.value).startswith(f"{path}: ") and field in str(error.value), error.value
    assert catalog.SERVER_TYPES is before  # nothing half-loaded


def test_the_command_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    bad = copy.deepcopy(snapshot())
    bad["server_types"][0]["storage_type"] = "tape"
    path.write_text(json.dumps(bad))
    done = subprocess.run(
        [sys.executable, "-m", "nodewright.sim", "--no-ssh-nodes", "--port", "0", "--catalog", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: catalog {path}: server_types[0].storage_type: expected one of local, network, not 'tape'"
    ]
    (tmp_path / "not.json").write_text("{")
    done = subprocess.run(
        [sys.executable, "-m", "nodewright.sim", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODEWRIGHT_SIM_CATALOG": str(tmp_path / "not.json")},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: catalog {tmp_path / 'not.json'}: not JSON")
