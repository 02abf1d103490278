# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Every operation the simulator implements answers, on success and on error, what the official
OpenAPI document of the Hetzner Cloud API describes, checked by a real OpenAPI validator."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from nodewright.sim.app import ROUTES, ApiRoute
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.system import missing

# The official Hetzner Cloud OpenAPI document (vendored 2026-07-08 copy, gzip-compressed); an operator
# can point NODEWRIGHT_HCLOUD_OPENAPI at a newer one.
SPEC_CANDIDATES = [
    os.environ.get("NODEWRIGHT_HCLOUD_OPENAPI", ""),
    str(Path(__file__).resolve().parent / "data" / "hetzner-cloud-openapi.json.gz"),
]
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnTGBbBWHhQFvu2DRhR+0/l8dAvJHfZb0bkk0R+DUhn test@example"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBqDz9nZ2HCaa8Ja0TQSXQqS3ARljSfvYQZGwBc7VBk3 other@example"


def _load_spec() -> dict[str, Any]:
    found = [Path(p) for p in SPEC_CANDIDATES if p and Path(p).is_file()]
    if not found:
        missing("the Hetzner Cloud OpenAPI document (set NODEWRIGHT_HCLOUD_OPENAPI)")
    raw = found[0].read_bytes()
    document: dict[str, Any] = json.loads(gzip.decompress(raw) if found[0].suffix == ".gz" else raw)
    # The document writes status ranges as "4xx"/"5xx"; OpenAPI (and openapi-core) spell them
    # "4XX"/"5XX". Renaming the keys changes no schema.
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                responses = operation["responses"]
                for key in [k for k in responses if k.endswith("xx")]:
                    responses[key[0] + "XX"] = responses.pop(key)
    document["servers"] = [
        {"url": "http://127.0.0.1:{port}/v1", "variables": {"port": {"default": "80"}}},
        *document.get("servers", []),
    ]
    return document


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(_load_spec())


class Api:
    """Calls the simulator and validates every answer against the document."""

    def __init__(self, server: SimServer, spec: OpenAPI, token: str) -> None:
        self.base = server.base_url
        self.spec = spec
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.checked: list[tuple[str, str, int]] = []

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, self.base + "/v1" + path, **kwargs)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "X-Correlation-Id"):
            assert header in response.headers, header
        if response.status_code != 204:
            assert response.headers["Content-Type"] == "application/json"
        request = RequestsOpenAPIRequest(response.request)
        self.spec.validate_response(request, RequestsOpenAPIResponse(response))
        self.checked.append((method, path, response.status_code))
        return response

    def error(self, method: str, path: str, expect: int, code: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.call(method, path, expect, **kwargs).json()
        error: dict[str, Any] = body["error"]
        assert error["code"] == code, body
        return error

    def control(self, path: str, **kwargs: Any) -> requests.Response:
        response = requests.post(self.base + "/_sim" + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response


@pytest.fixture
def api(sim: SimServer, openapi: OpenAPI) -> Iterator[Api]:
    client = Api(sim, openapi, random_token())
    yield client
    client.session.close()


def _body(name: str = "a", **extra: Any) -> dict[str, Any]:
    return {"name": name, "server_type": "cx23", "image": "ubuntu-24.04", **extra}


def _create(api: Api, name: str = "web-1", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1", **extra}
    result: dict[str, Any] = api.call("POST", "/servers", 201, json=body).json()
    return result


def test_server_lifecycle_success_responses(api: Api) -> None:
    created = _create(api, labels={"role": "web"})
    assert set(created) == {"server", "action", "next_actions", "root_password"}
    assert created["root_password"]
    server_id = created["server"]["id"]
    api.call("GET", f"/servers/{server_id}", 200)
    params = {"label_selector": "role=web", "sort": "name:desc"}
    listing = api.call("GET", "/servers", 200, params=params).json()
    assert set(listing["meta"]["pagination"]) == {
        "page",
        "per_page",
        "previous_page",
        "next_page",
        "last_page",
        "total_entries",
    }
    api.call("GET", "/servers", 200, params={"name": "web-1", "status": ["initializing", "running"]})
    api.call("PUT", f"/servers/{server_id}", 200, json={"name": "web-2", "labels": {"role": "db"}})
    actions = api.call("GET", f"/servers/{server_id}/actions", 200).json()["actions"]
    api.call("GET", f"/servers/{server_id}/actions/{actions[0]['id']}", 200)
    ids = [created["action"]["id"], created["next_actions"][0]["id"]]
    api.call("GET", "/actions", 200, params={"id": ids, "page": 1, "sort": ["status", "id"]})
    api.call("GET", f"/actions/{ids[0]}", 200)
    api.control("/config", json={"create_duration": 0, "start_duration": 0, "stop_duration": 0})
    _wait_unlocked(api, server_id)
    api.call("POST", f"/servers/{server_id}/actions/poweroff", 201)
    _wait_unlocked(api, server_id)
    api.call("POST", f"/servers/{server_id}/actions/poweron", 201)
    _wait_unlocked(api, server_id)
    for verb in ("reboot", "reset", "shutdown"):
        api.call("POST", f"/servers/{server_id}/actions/{verb}", 201)
        _wait_unlocked(api, server_id)
    api.call("DELETE", f"/servers/{server_id}", 200)
    api.error("GET", f"/servers/{server_id}", 404, "not_found")
    ipv6_only = _create(api, "v6-only", public_net={"enable_ipv4": False}, start_after_create=False)
    assert ipv6_only["server"]["public_net"]["ipv4"] is None
    assert ipv6_only["next_actions"] == []
    api.call("GET", f"/servers/{ipv6_only['server']['id']}", 200)


def _wait_unlocked(api: Api, server_id: int) -> None:
    for _ in range(500):
        if not api.session.get(f"{api.base}/v1/servers/{server_id}").json()["server"]["locked"]:
            return
        time.sleep(0.01)
    raise AssertionError("server stayed locked")


def test_server_error_responses(api: Api) -> None:
    error = api.error("POST", "/servers", 422, "invalid_input", json={"name": "bad_name!", "image": ""})
    assert {f["name"] for f in error["details"]["fields"]} >= {"name", "image", "server_type"}
    api.error(
        "POST",
        "/servers",
        422,
        "invalid_input",
        json={
            "name": "a",
            "server_type": "cx23",
            "image": "ubuntu-24.04",
            "user_data": "x" * (32 * 1024 + 1),
        },
    )
    api.error(
        "POST",
        "/servers",
        422,
        "invalid_input",
        json={"name": "a", "server_type": "cax11", "image": 161547269},
    )
    api.error("POST", "/servers", 422, "invalid_input", json=_body(location="ash"))
    api.error(
        "POST", "/servers", 412, "resource_unavailable", json=_body(server_type="cpx11", location="sin")
    )
    headers = {"Content-Type": "application/json"}
    api.error("POST", "/servers", 400, "json_error", data=b"{nope", headers=headers)
    created = _create(api)
    api.error(
        "POST",
        "/servers",
        409,
        "uniqueness_error",
        json={"name": "web-1", "server_type": "cx23", "image": "ubuntu-24.04"},
    )
    api.control("/config", json={"create_duration": 60})
    locked = _create(api, "web-2")["server"]["id"]
    api.error("DELETE", f"/servers/{locked}", 423, "locked")
    api.error("POST", f"/servers/{locked}/actions/poweroff", 423, "locked")
    bad_labels = {"labels": {"-bad": "x"}}
    api.error("PUT", f"/servers/{created['server']['id']}", 422, "invalid_input", json=bad_labels)
    api.error("PUT", "/servers/999", 404, "not_found", json={"name": "x"})
    api.error("DELETE", "/servers/999", 404, "not_found")
    api.error("GET", "/servers/999/actions", 404, "not_found")
    api.error("POST", "/servers/999/actions/poweron", 404, "not_found")
    api.error("GET", "/servers", 422, "invalid_input", params={"label_selector": "a in (b"})
    api.error("GET", "/actions", 422, "invalid_input")
    api.error("GET", "/actions/1", 404, "not_found")
    api.control("/limits", json={"max_servers": 2})
    error = api.error(
        "POST",
        "/servers",
        403,
        "resource_limit_exceeded",
        json={"name": "web-3", "server_type": "cx23", "image": "ubuntu-24.04"},
    )
    assert error["details"]["limits"]
    api.control("/limits", json={"max_servers": None})
    api.control("/capacity", json={"location": "nbg1"})
    api.error("POST", "/servers", 412, "resource_unavailable", json=_body("web-3", location="nbg1"))


def _action_finishes(api: Api, response: requests.Response, command: str) -> None:
    action = response.json()["action"]
    assert action["command"] == command
    for _ in range(500):
        action = api.call("GET", f"/actions/{action['id']}", 200).json()["action"]
        if action["status"] != "running":
            break
        time.sleep(0.01)
    assert (action["status"], action["progress"], action["error"]) == ("success", 100, None), action


def test_protection_backup_rdns_and_iso_actions(api: Api) -> None:
    api.control("/config", json={"create_duration": 0, "start_duration": 0, "action_duration": 0.05})
    created = _create(api)["server"]
    server_id, ipv4 = created["id"], created["public_net"]["ipv4"]["ip"]
    net = created["public_net"]["ipv6"]["ip"]
    _wait_unlocked(api, server_id)
    base = f"/servers/{server_id}/actions"

    # Protection: the object reflects it, delete answers 423 protected until it is lifted.
    response = api.call("POST", f"{base}/change_protection", 201, json={"delete": True, "rebuild": True})
    assert response.json()["action"]["status"] == "running"
    api.error("POST", f"{base}/enable_backup", 423, "locked")  # the action holds the server
    _action_finishes(api, response, "change_protection")
    server = api.call("GET", f"/servers/{server_id}", 200).json()["server"]
    assert server["protection"] == {"delete": True, "rebuild": True}
    api.error("DELETE", f"/servers/{server_id}", 423, "protected")
    api.error("POST", f"{base}/rebuild", 423, "protected", json={"image": "ubuntu-24.04"})
    api.error("POST", f"{base}/change_protection", 422, "invalid_input", json={"delete": "yes"})

    # Backups: a window is set and cleared.
    _action_finishes(api, api.call("POST", f"{base}/enable_backup", 201), "enable_backup")
    window = api.call("GET", f"/servers/{server_id}", 200).json()["server"]["backup_window"]
    assert window in {"22-02", "02-06", "06-10", "10-14", "14-18", "18-22"}
    _action_finishes(api, api.call("POST", f"{base}/disable_backup", 201), "disable_backup")
    assert api.call("GET", f"/servers/{server_id}", 200).json()["server"]["backup_window"] is None

    # Reverse DNS for the IPv4 and an address of the /64; null resets or removes it.
    v6 = net.removesuffix("/64") + "1"
    for ip, name in ((ipv4, "web-1.example.com"), (v6, "v6.example.com")):
        response = api.call("POST", f"{base}/change_dns_ptr", 201, json={"ip": ip, "dns_ptr": name})
        _action_finishes(api, response, "change_dns_ptr")
    public_net = api.call("GET", f"/servers/{server_id}", 200).json()["server"]["public_net"]
    assert public_net["ipv4"]["dns_ptr"] == "web-1.example.com"
    assert public_net["ipv6"]["dns_ptr"] == [{"ip": v6, "dns_ptr": "v6.example.com"}]
    for ip in (ipv4, v6):
        response = api.call("POST", f"{base}/change_dns_ptr", 201, json={"ip": ip, "dns_ptr": None})
        _action_finishes(api, response, "change_dns_ptr")
    public_net = api.call("GET", f"/servers/{server_id}", 200).json()["server"]["public_net"]
    assert public_net["ipv4"]["dns_ptr"].endswith(".clients.your-server.de")
    assert public_net["ipv6"]["dns_ptr"] == []
    for bad in ({"ip": "192.0.2.1", "dns_ptr": "x.example.com"}, {"ip": ipv4, "dns_ptr": "x."}, {}):
        api.error("POST", f"{base}/change_dns_ptr", 422, "invalid_input", json=bad)

    # ISOs: listed, attached by name, detached; detaching nothing succeeds at once.
    isos = api.call("GET", "/isos", 200, params={"architecture": "x86"}).json()["isos"]
    api.call("GET", f"/isos/{isos[0]['id']}", 200)
    response = api.call("POST", f"{base}/attach_iso", 201, json={"iso": isos[0]["name"]})
    _action_finishes(api, response, "attach_iso")
    assert api.call("GET", f"/servers/{server_id}", 200).json()["server"]["iso"] == isos[0]
    api.error("POST", f"{base}/attach_iso", 404, "not_found", json={"iso": "no-such.iso"})
    api.error("POST", f"{base}/attach_iso", 422, "invalid_input", json={})
    _action_finishes(api, api.call("POST", f"{base}/detach_iso", 201), "detach_iso")
    assert api.call("GET", f"/servers/{server_id}", 200).json()["server"]["iso"] is None
    detached = api.call("POST", f"{base}/detach_iso", 201).json()["action"]
    assert detached["status"] == "success"

    error = api.error("POST", f"{base}/request_console", 422, "unsupported_error", json={})
    assert "not simulated" in error["message"]

    response = api.call("POST", f"{base}/change_protection", 201, json={"delete": False, "rebuild": False})
    _action_finishes(api, response, "change_protection")
    api.call("DELETE", f"/servers/{server_id}", 200)


def test_rebuild_rescue_snapshots_and_backups(api: Api) -> None:
    api.control("/config", json={"create_duration": 0, "start_duration": 0, "action_duration": 0.05})
    key = api.call("POST", "/ssh_keys", 201, json={"name": "k", "public_key": PUBLIC_KEY}).json()["ssh_key"]
    created = _create(api)
    server_id = created["server"]["id"]
    _wait_unlocked(api, server_id)
    base = f"/servers/{server_id}/actions"

    # Rebuild: to another image; created without keys, so a new root password each time.
    response = api.call("POST", f"{base}/rebuild", 201, json={"image": "debian-12"})
    assert response.json()["root_password"] not in {None, created["root_password"]}
    _action_finishes(api, response, "rebuild_server")
    server = api.call("GET", f"/servers/{server_id}", 200).json()["server"]
    assert (server["image"]["name"], server["status"]) == ("debian-12", "running")
    api.error("POST", f"{base}/rebuild", 422, "invalid_input", json={})
    api.error("POST", f"{base}/rebuild", 422, "invalid_input", json={"image": "no-such-image"})
    api.error("POST", f"{base}/rebuild", 422, "invalid_input",
              json={"image": "debian-12", "user_data": "x" * (32 * 1024 + 1)})  # fmt: skip
    # Digits that are no id, and text that is no UTF-8: clear 422s, never a 500.
    for bad in ({"image": "²"}, {"image": "1" * 5000}, {"image": "٣٣٠٠٠٠٠٠١"},
                {"image": "debian-12", "user_data": "\ud800"}):  # fmt: skip
        api.error("POST", f"{base}/rebuild", 422, "invalid_input", json=bad)
    not_utf8 = {"name": "x", "server_type": "cx23", "image": "ubuntu-24.04", "user_data": "\udfff"}
    api.error("POST", "/servers", 422, "invalid_input", json=not_utf8)

    # Rescue: enabled with a key, the password returned; disabled again.
    response = api.call(
        "POST", f"{base}/enable_rescue", 201, json={"type": "linux64", "ssh_keys": [key["id"]]}
    )
    assert response.json()["root_password"]
    _action_finishes(api, response, "enable_rescue")
    assert api.call("GET", f"/servers/{server_id}", 200).json()["server"]["rescue_enabled"] is True
    _action_finishes(api, api.call("POST", f"{base}/disable_rescue", 201), "disable_rescue")
    assert api.call("GET", f"/servers/{server_id}", 200).json()["server"]["rescue_enabled"] is False
    api.error("POST", f"{base}/enable_rescue", 422, "invalid_input", json={"type": "freebsd64"})
    api.error("POST", f"{base}/enable_rescue", 422, "invalid_input", json={"ssh_keys": [999999]})

    # A snapshot: creating, then available; listed by type and label; usable at create.
    snapshot = {"type": "snapshot", "description": "golden", "labels": {"role": "web"}}
    response = api.call("POST", f"{base}/create_image", 201, json=snapshot)
    image = response.json()["image"]
    assert (image["type"], image["status"], image["name"]) == ("snapshot", "creating", None)
    assert image["created_from"] == {"id": server_id, "name": "web-1"}
    _action_finishes(api, response, "create_image")
    image = api.call("GET", f"/images/{image['id']}", 200).json()["image"]
    assert image["status"] == "available" and image["image_size"] > 0
    listing = api.call(
        "GET", "/images", 200, params={"type": "snapshot", "label_selector": "role=web"}
    ).json()
    assert [i["id"] for i in listing["images"]] == [image["id"]]
    assert api.call("GET", "/images", 200, params={"type": "backup"}).json()["images"] == []
    for name, value in (("status", "gone"), ("architecture", "riscv"), ("type", "iso")):
        api.error("GET", "/images", 422, "invalid_input", params={name: value})
    for kind in ([], {}, ""):
        api.error("POST", f"{base}/create_image", 422, "invalid_input", json={"type": kind})
    clone = _create(api, name="web-2", image=image["id"])["server"]
    assert clone["image"]["id"] == image["id"]
    _wait_unlocked(api, clone["id"])
    api.call("PUT", f"/images/{image['id']}", 200, json={"description": "golden v2", "labels": {"v": "2"}})
    api.error("PUT", f"/images/{image['id']}", 422, "invalid_input", json={"type": "backup"})

    # Protection blocks delete; a system image is not ours to delete.
    protect = api.call("POST", f"/images/{image['id']}/actions/change_protection", 201, json={"delete": True})
    assert protect.json()["action"]["resources"] == [{"id": image["id"], "type": "image"}]
    api.call("GET", f"/images/{image['id']}/actions", 200)
    api.call("GET", f"/images/{image['id']}/actions/{protect.json()['action']['id']}", 200)
    everything = api.call("GET", "/images/actions", 200).json()["actions"]
    picked = api.call("GET", "/images/actions", 200, params={"id": protect.json()["action"]["id"]}).json()
    assert len(everything) >= 1 and [a["id"] for a in picked["actions"]] == [protect.json()["action"]["id"]]
    api.error("DELETE", f"/images/{image['id']}", 423, "protected")
    system = api.call("GET", "/images", 200, params={"name": "debian-12"}).json()["images"][0]
    api.error("DELETE", f"/images/{system['id']}", 403, "forbidden")
    api.call("POST", f"/images/{image['id']}/actions/change_protection", 201, json={"delete": False})

    # A backup needs backups on; it is bound to the server and goes with it; the snapshot stays.
    api.error("POST", f"{base}/create_image", 422, "invalid_input", json={"type": "backup"})
    _action_finishes(api, api.call("POST", f"{base}/enable_backup", 201), "enable_backup")
    response = api.call("POST", f"{base}/create_image", 201, json={"type": "backup"})
    backup = response.json()["image"]
    assert backup["bound_to"] == server_id
    _action_finishes(api, response, "create_image")
    bound = api.call("GET", "/images", 200, params={"bound_to": str(server_id)}).json()["images"]
    assert [i["id"] for i in bound] == [backup["id"]]
    api.call("DELETE", f"/servers/{server_id}", 200)
    api.error("GET", f"/images/{backup['id']}", 404, "not_found")
    api.call("GET", f"/images/{image['id']}", 200)

    # Rebuild the clone to the snapshot, then delete the snapshot: the server's image is null.
    rebuilt = api.call(
        "POST", f"/servers/{clone['id']}/actions/rebuild", 201, json={"image": str(image["id"])}
    )
    _action_finishes(api, rebuilt, "rebuild_server")
    api.call("DELETE", f"/images/{image['id']}", 204)
    assert api.call("GET", f"/servers/{clone['id']}", 200).json()["server"]["image"] is None
    api.error("POST", "/servers", 422, "invalid_input",
              json={"name": "web-3", "server_type": "cx23", "image": image["id"]})  # fmt: skip


def test_change_type_resizes_a_stopped_server_then_starts_it(api: Api) -> None:
    api.control("/config", json={"create_duration": 0, "start_duration": 0, "stop_duration": 0,
                                 "action_duration": 0.05})  # fmt: skip
    server_id = _create(api)["server"]["id"]
    _wait_unlocked(api, server_id)
    base = f"/servers/{server_id}/actions"
    bigger = {"server_type": "cx33", "upgrade_disk": False}
    api.error("POST", f"{base}/change_type", 422, "server_not_stopped", json=bigger)
    api.error("POST", f"{base}/change_type", 422, "invalid_input", json={"server_type": "cx33"})
    _action_finishes(api, api.call("POST", f"{base}/poweroff", 201), "stop_server")
    for wrong in ("no-such-type", "cax11", "cx11"):  # unknown, another architecture, deprecated
        api.error("POST", f"{base}/change_type", 422, "invalid_server_type",
                  json={"server_type": wrong, "upgrade_disk": True})  # fmt: skip

    # Up without the disk: the type changes, the disk stays 40 GB, so going back down works.
    response = api.call("POST", f"{base}/change_type", 201, json=bigger)
    _action_finishes(api, response, "change_server_type")
    _wait_unlocked(api, server_id)
    server = api.call("GET", f"/servers/{server_id}", 200).json()["server"]
    assert (server["server_type"]["name"], server["primary_disk_size"]) == ("cx33", 40)
    assert server["status"] == "running"  # "copies the content of its disk, and starts it again"
    _action_finishes(api, api.call("POST", f"{base}/poweroff", 201), "stop_server")
    back = api.call("POST", f"{base}/change_type", 201, json={"server_type": "cx23", "upgrade_disk": True})
    _action_finishes(api, back, "change_server_type")
    _wait_unlocked(api, server_id)
    _action_finishes(api, api.call("POST", f"{base}/poweroff", 201), "stop_server")

    # Up with the disk (by id): then the smaller type no longer fits.
    up = api.call("POST", f"{base}/change_type", 201, json={"server_type": "115", "upgrade_disk": True})
    _action_finishes(api, up, "change_server_type")
    _wait_unlocked(api, server_id)
    assert api.call("GET", f"/servers/{server_id}", 200).json()["server"]["primary_disk_size"] == 80
    _action_finishes(api, api.call("POST", f"{base}/poweroff", 201), "stop_server")
    api.error("POST", f"{base}/change_type", 422, "invalid_server_type",
              json={"server_type": "cx23", "upgrade_disk": False})  # fmt: skip


def test_catalog_responses(api: Api) -> None:
    types = api.call("GET", "/server_types", 200).json()["server_types"]
    api.call("GET", "/server_types", 200, params={"name": "cx23"})
    api.call("GET", f"/server_types/{types[0]['id']}", 200)
    api.error("GET", "/server_types/999999", 404, "not_found")
    api.call("GET", "/locations", 200, params={"sort": "name:desc"})
    api.call("GET", "/locations/1", 200)
    api.error("GET", "/locations/999", 404, "not_found")
    params = {"architecture": "arm", "type": "system"}
    images = api.call("GET", "/images", 200, params=params).json()["images"]
    assert images and all(i["architecture"] == "arm" for i in images)
    api.call("GET", "/images", 200, params={"include_deprecated": "true", "name": "ubuntu-20.04"})
    api.call("GET", f"/images/{images[0]['id']}", 200)
    api.error("GET", "/images/1", 404, "not_found")
    api.call("GET", "/pricing", 200)
    api.error("GET", "/datacenters", 410, "deprecated_api_endpoint")


def test_current_families_and_per_location_deprecation(api: Api) -> None:
    """The families sold today, by the document's schema; cpx11 deprecated in fsn1 but sold in ash;
    cx22 deprecated everywhere, past its date: gone from the list, still there by id."""
    listed = {st["name"]: st for st in api.call("GET", "/server_types", 200).json()["server_types"]}
    current = ["cx23", "cx33", "cx43", "cx53", "cpx12", "cpx22", "cpx32", "cpx42", "cpx52", "cpx62"]
    current += ["cax11", "cax21", "cax31", "cax41", "ccx13", "ccx23", "ccx33", "ccx43", "ccx53", "ccx63"]
    assert set(current) <= set(listed)
    assert "cx22" not in listed and "cx11" not in listed
    ids = [st["id"] for st in listed.values()]
    assert ids == sorted(ids)
    cpx22 = api.call("GET", "/server_types/109", 200).json()["server_type"]
    assert (cpx22["name"], cpx22["cores"], cpx22["memory"], cpx22["disk"]) == ("cpx22", 2, 4, 80)
    assert cpx22["category"] == "regular_purpose" and cpx22["deprecation"] is None
    cpx11 = {loc["name"]: loc for loc in listed["cpx11"]["locations"]}
    assert listed["cpx11"]["deprecation"] is None and listed["cpx11"]["deprecated"] is False
    assert cpx11["fsn1"]["deprecation"] == {
        "announced": "2025-10-16T06:00:00Z",
        "unavailable_after": "2025-12-31T23:59:59Z",
    }
    assert cpx11["fsn1"]["available"] is False and cpx11["ash"]["available"] is True
    assert cpx11["ash"]["deprecation"] is None
    cx22 = api.call("GET", "/server_types/104", 200).json()["server_type"]
    assert cx22["deprecated"] is True and cx22["deprecation"]["unavailable_after"] == "2025-12-31T23:59:59Z"
    assert not any(loc["available"] for loc in cx22["locations"])
    assert api.call("GET", "/server_types", 200, params={"name": "cx22"}).json()["server_types"] == []
    pricing = api.call("GET", "/pricing", 200).json()["pricing"]
    assert {"cx23", "cpx22"} <= {st["name"] for st in pricing["server_types"]}
    # Ordering where the type is deprecated: refused; where it is still sold: created.
    api.error("POST", "/servers", 412, "resource_unavailable",
              json=_body("old-eu", server_type="cpx11", location="fsn1"))  # fmt: skip
    api.call("POST", "/servers", 201, json=_body("old-us", server_type="cpx11", location="ash"))
    api.error("POST", "/servers", 422, "invalid_input", json=_body("gone", server_type="cx22"))
    api.error("GET", "/datacenters/1", 410, "deprecated_api_endpoint")


def test_ssh_key_responses(api: Api) -> None:
    key = api.call("POST", "/ssh_keys", 201, json={"name": "k1", "public_key": PUBLIC_KEY}).json()["ssh_key"]
    api.error("POST", "/ssh_keys", 409, "uniqueness_error", json={"name": "k1", "public_key": OTHER_KEY})
    api.error("POST", "/ssh_keys", 409, "uniqueness_error", json={"name": "k2", "public_key": PUBLIC_KEY})
    api.error("POST", "/ssh_keys", 422, "invalid_input", json={"name": "k2", "public_key": "ssh-rsa nope"})
    api.call("GET", "/ssh_keys", 200, params={"fingerprint": key["fingerprint"], "label_selector": "!x"})
    api.call("GET", f"/ssh_keys/{key['id']}", 200)
    api.call("PUT", f"/ssh_keys/{key['id']}", 200, json={"name": "k9", "labels": {"a": "b"}})
    api.error("PUT", f"/ssh_keys/{key['id']}", 422, "invalid_input", json={"labels": {"a": "-"}})
    api.call("DELETE", f"/ssh_keys/{key['id']}", 204)
    api.error("GET", f"/ssh_keys/{key['id']}", 404, "not_found")
    api.error("DELETE", f"/ssh_keys/{key['id']}", 404, "not_found")


def test_token_and_rate_limit_errors(api: Api, openapi: OpenAPI) -> None:
    readonly = random_token()
    api.control("/tokens", json={"token": readonly, "mode": "read_only"})
    api.session.headers["Authorization"] = f"Bearer {readonly}"
    api.call("GET", "/servers", 200)
    api.error("POST", "/ssh_keys", 401, "token_readonly", json={"name": "k", "public_key": PUBLIC_KEY})
    revoked = random_token()
    api.control("/tokens", json={"token": revoked, "mode": "revoked"})
    api.session.headers["Authorization"] = f"Bearer {revoked}"
    api.error("GET", "/servers", 401, "unauthorized")
    api.session.headers["Authorization"] = "Bearer short"
    api.error("GET", "/servers", 401, "unauthorized")
    api.session.headers["Authorization"] = f"Bearer {random_token()}"
    api.control("/config", json={"rate_limit_capacity": 2, "rate_limit_refill_per_second": 0.001})
    api.call("GET", "/locations", 200)
    api.call("GET", "/locations", 200)
    error = api.error("GET", "/locations", 429, "rate_limit_exceeded")
    assert error["message"] == "limit of 2 requests per hour reached"


def test_injected_errors_keep_the_envelope(api: Api) -> None:
    fault = {"kind": "error", "method": "GET", "path": "/v1/servers", "code": "unavailable"}
    api.control("/faults", json=fault)
    api.error("GET", "/servers", 503, "unavailable")
    api.control("/faults", json={"kind": "error", "path": "/v1/servers", "code": "timeout", "nth": 2})
    api.call("GET", "/servers", 200)
    api.error("GET", "/servers", 504, "timeout")
    api.control("/faults", json={"kind": "error", "path": "/v1/servers", "code": "conflict"})
    api.error("POST", "/servers", 409, "conflict", json={})


def _concrete(pattern: str) -> str:
    path = pattern.strip("^$").replace("(?P<id>[^/]+)", "999999").replace("(?P<action_id>[^/]+)", "999998")
    return path


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.operation}")
def test_every_operation_answers_errors_by_the_document(api: Api, route: ApiRoute) -> None:
    """Unauthenticated (401), injected server error (500 with the envelope) and, for operations
    on a resource, an unknown id (404): each validated against the operation's error responses."""
    path = _concrete(route.pattern.pattern)
    body: dict[str, Any] | None = {} if route.method in {"POST", "PUT"} else None
    token = api.session.headers.pop("Authorization")
    api.error(route.method, path, 401, "unauthorized", json=body)
    api.session.headers["Authorization"] = token
    fault = {"kind": "error", "method": route.method, "path": "/v1" + path, "code": "server_error"}
    api.control("/faults", json=fault)
    api.error(route.method, path, 500, "server_error", json=body)
    if "999999" in path and route.operation not in {"get_datacenter"}:
        api.error(route.method, path, 404, "not_found", json=body)
