"""/api/providers against the simulator: connect, refuse bad tokens, check, rotate, delete, catalog."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nodewright.context import AppContext
from nodewright.db.models import ProviderConnection, StoredSecret
from nodewright.providers import connections
from nodewright.security.roles import Role
from nodewright.sim.control_client import SimControl
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import RoleUser


def _body(sim: SimServer, token: str, name: str = "hetzner-main") -> dict[str, Any]:  # noqa: F811
    return {"kind": "hetzner", "name": name, "token": token, "api_endpoint": sim.base_url + "/v1"}


def _counts(ctx: AppContext) -> tuple[int, int]:
    with ctx.database.session() as session:
        return (
            int(session.scalar(select(func.count(ProviderConnection.id))) or 0),
            int(session.scalar(select(func.count(StoredSecret.id))) or 0),
        )


def test_connect_answers_201_with_fingerprint_only(
    client: TestClient,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    token = random_token()
    response = client.post("/api/providers", json=_body(sim, token), headers=role_users[Role.admin].headers)
    assert response.status_code == 201, response.text
    data = response.json()
    assert token not in response.text
    assert data["status"] == "ok"
    assert data["token_fingerprint"].startswith("sha256:")
    assert data["status_message"] == "Connected: Read & Write token works."
    assert data["ssh_port"] == 22 and data["ssh_user"] == "root"
    listed = client.get("/api/providers", headers=role_users[Role.viewer].headers)
    assert [p["id"] for p in listed.json()] == [data["id"]]
    assert token not in listed.text


@pytest.mark.parametrize(
    ("mode", "code"),
    [("read_only", "permission_denied"), ("revoked", "credentials_invalid")],
)
def test_a_failing_token_is_not_stored(
    mode: str,
    code: str,
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    token = random_token()
    SimControl(sim.base_url).register_token(token, mode)  # type: ignore[arg-type]
    before = _counts(app_context)
    response = client.post("/api/providers", json=_body(sim, token), headers=role_users[Role.admin].headers)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code
    assert problem["errors"][0]["field"] == "token"
    assert token not in response.text
    assert _counts(app_context) == before


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"kind": "error", "code": "rate_limit_exceeded"}, "rate_limited"),
        ({"kind": "non_json", "status": 503}, "provider_unavailable"),
    ],
)
def test_provider_trouble_at_connect_names_the_code(
    fault: dict[str, Any],
    code: str,
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    SimControl(sim.base_url).add_fault(path="/v1/*", count=1, **fault)
    response = client.post(
        "/api/providers", json=_body(sim, random_token()), headers=role_users[Role.admin].headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert response.json()["retryable"] is True
    assert _counts(app_context) == (0, 0)


def test_bad_input_names_the_field(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    headers = role_users[Role.admin].headers
    for body, field in [
        ({"kind": "aws", "name": "x", "token": "t"}, "kind"),
        ({"kind": "hetzner", "name": "", "token": "t"}, "name"),
        ({"kind": "hetzner", "name": "x"}, "token"),
        ({"kind": "hetzner", "name": "x", "token": "t", "api_endpoint": "ftp://x"}, "api_endpoint"),
        ({"kind": "hetzner", "name": "x", "token": "t", "ssh_port": 0}, "ssh_port"),
    ]:
        response = client.post("/api/providers", json=body, headers=headers)
        assert response.status_code == 422, body
        assert field in {e["field"] for e in response.json()["errors"]}, response.text


def test_check_rotate_and_statuses(
    client: TestClient,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    headers = role_users[Role.admin].headers
    control = SimControl(sim.base_url)
    token = random_token()
    created = client.post("/api/providers", json=_body(sim, token), headers=headers).json()
    pid = created["id"]

    control.register_token(token, "revoked")
    checked = client.post(f"/api/providers/{pid}/check", headers=headers).json()
    assert checked["status"] == "invalid"
    assert checked["status_message"] == "Token rejected: paste a new token."
    assert checked["last_error"]["code"] == "credentials_invalid"

    read_only = random_token()
    control.register_token(read_only, "read_only")
    refused = client.patch(f"/api/providers/{pid}", json={"token": read_only}, headers=headers)
    assert refused.status_code == 422 and refused.json()["code"] == "permission_denied"
    assert (
        client.get(f"/api/providers/{pid}", headers=headers).json()["token_fingerprint"]
        == created["token_fingerprint"]
    )

    fresh = random_token()
    rotated = client.patch(f"/api/providers/{pid}", json={"token": fresh}, headers=headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["status"] == "ok"
    assert rotated.json()["token_fingerprint"] != created["token_fingerprint"]
    assert fresh not in rotated.text

    control.add_fault("non_json", path="/v1/*", status=503, count=None)
    down = client.post(f"/api/providers/{pid}/check", headers=headers).json()
    assert down["status"] == "unavailable"
    assert down["status_message"].startswith("Hetzner unavailable since ")
    assert down["status_message"].endswith(", retrying.")
    control.clear_faults()

    control.add_fault("error", path="/v1/*", code="rate_limit_exceeded", count=None)
    limited = client.post(f"/api/providers/{pid}/check", headers=headers).json()
    assert limited["status"] == "rate_limited"
    assert limited["status_message"].startswith("Rate limited until ")
    control.clear_faults()
    assert client.post(f"/api/providers/{pid}/check", headers=headers).json()["status"] == "ok"


def test_catalog_is_cached_and_served_stale_while_the_provider_is_down(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    headers = role_users[Role.admin].headers
    pid = client.post("/api/providers", json=_body(sim, random_token()), headers=headers).json()["id"]
    catalog = client.get(f"/api/providers/{pid}/catalog", headers=role_users[Role.viewer].headers)
    assert catalog.status_code == 200, catalog.text
    data = catalog.json()
    assert data["stale"] is False
    assert {loc["name"] for loc in data["locations"]} >= {"fsn1", "nbg1"}
    cx23 = next(t for t in data["server_types"] if t["name"] == "cx23")
    assert "fsn1" in cx23["available_in"] and cx23["prices"][0]["monthly_gross"]
    assert {i["architecture"] for i in data["images"]} == {"x86", "arm"}

    connections.forget_catalog(app_context.database, pid)  # the TTL passed
    SimControl(sim.base_url).add_fault("non_json", path="/v1/*", status=502, count=None)
    stale = client.get(f"/api/providers/{pid}/catalog", headers=headers)
    assert stale.status_code == 200
    assert stale.json()["stale"] is True
    assert stale.json()["server_types"] == data["server_types"]


def test_delete_refused_while_in_use_then_removes_row_and_secret(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    headers = role_users[Role.admin].headers
    pid = client.post("/api/providers", json=_body(sim, random_token()), headers=headers).json()["id"]

    def counter(_session: object, connection_id: int) -> int:
        return 2 if connection_id == pid else 0

    connections.register_usage_counter(counter)  # type: ignore[arg-type]
    try:
        refused = client.delete(f"/api/providers/{pid}", headers=headers)
        assert refused.status_code == 409 and "2 node(s)" in refused.json()["detail"]
    finally:
        connections._usage_counters.remove(counter)  # type: ignore[arg-type]
    assert client.delete(f"/api/providers/{pid}", headers=headers).status_code == 204
    assert _counts(app_context) == (0, 0)
    assert client.get(f"/api/providers/{pid}", headers=headers).status_code == 404


def test_duplicate_name_is_409(
    client: TestClient,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    headers = role_users[Role.admin].headers
    assert client.post("/api/providers", json=_body(sim, random_token()), headers=headers).status_code == 201
    again = client.post("/api/providers", json=_body(sim, random_token()), headers=headers)
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "name"


def test_dashboard_forms_are_admin_only_and_need_csrf(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    from tests.integration.test_dashboard_auth import login

    form = {"name": "x", "token": random_token(), "api_endpoint": sim.base_url + "/v1"}
    csrf = login(client, "viewer-user")
    page = client.get("/providers")
    assert page.status_code == 200 and "Connect" not in page.text
    assert client.post("/providers", data={**form, "csrf_token": csrf}).status_code == 403
    client.post("/logout", data={"csrf_token": csrf})
    login(client, "admin-user")
    assert client.post("/providers", data={**form, "csrf_token": "wrong"}).status_code == 403
    assert _counts(app_context) == (0, 0)


def test_endpoint_outside_the_allowed_prefixes_is_refused_without_a_call(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    """Tests allow only loopback endpoints; the default (the real Hetzner API) is refused up front."""
    SimControl(sim.base_url).clear_requests()
    for endpoint in (None, "https://api.hetzner.cloud/v1", "http://10.0.0.1/v1"):
        body = {"kind": "hetzner", "name": "x", "token": random_token()}
        if endpoint:
            body["api_endpoint"] = endpoint
        response = client.post("/api/providers", json=body, headers=role_users[Role.admin].headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "api_endpoint"
    assert _counts(app_context) == (0, 0)


def test_an_endpoint_that_only_looks_allowed_is_refused_without_a_call(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    """``http://127.0.0.1:@host/`` starts with the allowed prefix ``http://127.0.0.1:`` but its host
    is ``host`` (the part before ``@`` is a user name): the allow-list must look at the host."""
    control = SimControl(sim.base_url)
    control.clear_requests()
    port = sim.base_url.rsplit(":", 1)[1]
    for endpoint in (
        f"http://127.0.0.1:@localhost:{port}/v1",
        f"http://127.0.0.1:x@localhost:{port}/v1",
        f"http://127.0.0.1:{port}\\@localhost:{port}/v1",
    ):
        body = {"kind": "hetzner", "name": "x", "token": random_token(), "api_endpoint": endpoint}
        response = client.post("/api/providers", json=body, headers=role_users[Role.admin].headers)
        assert response.status_code == 422, endpoint
        assert response.json()["errors"][0]["field"] == "api_endpoint", response.text
    assert control.requests() == []
    assert _counts(app_context) == (0, 0)


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [
        ("http://127.0.0.1:@evil.example/v1", False),
        ("https://api.hetzner.cloud.evil.example/v1", False),
        ("https://api.hetzner.cloud@evil.example/v1", False),
        ("http://127.0.0.1:8080/v1", True),
        ("https://api.hetzner.cloud/v1", True),
    ],
)
def test_allowed_endpoint_prefixes_match_scheme_and_host(endpoint: str, ok: bool) -> None:
    prefixes = ("http://127.0.0.1:", "https://api.hetzner.cloud")
    if ok:
        connections.check_endpoint("hetzner", endpoint, prefixes)
        return
    with pytest.raises(connections.ConnectionError_) as refused:
        connections.check_endpoint("hetzner", endpoint, prefixes)
    assert refused.value.field == "api_endpoint"


def test_the_stored_token_never_follows_a_changed_endpoint(
    client: TestClient,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    """Moving a connection to another endpoint needs the token pasted again: otherwise anyone who
    may edit the connection could send the stored token to a URL of their choosing and read it."""
    headers = role_users[Role.admin].headers
    token = random_token()
    created = client.post("/api/providers", json=_body(sim, token), headers=headers).json()
    control = SimControl(sim.base_url)
    control.clear_requests()
    elsewhere = sim.base_url + "/v1/"  # another spelling stands in for another host
    moved = client.patch(f"/api/providers/{created['id']}", json={"api_endpoint": elsewhere}, headers=headers)
    assert moved.status_code == 422, moved.text
    assert moved.json()["errors"][0]["field"] == "token"
    assert control.requests() == []
    assert client.get(f"/api/providers/{created['id']}", headers=headers).json()["api_endpoint"] == (
        sim.base_url + "/v1"
    )
    with_token = client.patch(
        f"/api/providers/{created['id']}", json={"api_endpoint": elsewhere, "token": token}, headers=headers
    )
    assert with_token.status_code == 200, with_token.text
    assert with_token.json()["api_endpoint"] == elsewhere


@pytest.mark.parametrize(
    ("name", "endpoint_suffix"),
    [
        ("main\r\nforged line", ""),
        ("main\u202egnp.exe", ""),
        ("<b>main</b>", ""),
        ("n" * 65, ""),
        ("main", " \r\nX-Injected: 1"),
        ("main", "/" + "a" * 300),
    ],
)
def test_the_dashboard_form_holds_names_and_endpoints_to_the_api_rules(
    name: str,
    endpoint_suffix: str,
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    """The connect form refuses what the API refuses (it used to keep control, bidi and markup
    characters in names, silently cut long ones, and accept any endpoint starting with http)."""
    from tests.integration.test_dashboard_auth import login

    csrf = login(client, "admin-user")
    form = {"csrf_token": csrf, "name": name, "token": random_token(), "api_endpoint": sim.base_url + "/v1"}
    form["api_endpoint"] += endpoint_suffix
    response = client.post("/providers", data=form)
    assert response.status_code == 422
    assert "Not connected (invalid_request)" in response.text
    assert _counts(app_context) == (0, 0)


BAD_TOKENS = [
    pytest.param("a" * 63 + "\u2603", id="non-latin-1"),
    pytest.param("a" * 63 + "\u00e9", id="latin-1-letter"),
    pytest.param("a" * 63, id="too-short"),
    pytest.param("a" * 65, id="too-long"),
    pytest.param("a" * 62 + "-_", id="punctuation"),
    pytest.param("a" * 63 + "\n", id="newline"),
    pytest.param("a" * 63 + "\x00", id="nul"),
]


@pytest.mark.parametrize("bad", BAD_TOKENS)
def test_a_token_of_the_wrong_form_is_refused_before_any_request(
    bad: str,
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    """A token ending in U+2603 used to reach the HTTP client, which raised UnicodeEncodeError:
    500 with a traceback. Hetzner tokens are 64 letters and digits: anything else is refused as
    bad input naming the field, on connect and on rotation, and no request leaves."""
    headers = role_users[Role.admin].headers
    control = SimControl(sim.base_url)
    created = client.post("/api/providers", json=_body(sim, random_token()), headers=headers).json()
    before = _counts(app_context)
    control.clear_requests()

    refused = client.post("/api/providers", json=_body(sim, bad, name="other"), headers=headers)
    rotated = client.patch(f"/api/providers/{created['id']}", json={"token": bad}, headers=headers)
    for response in (refused, rotated):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["code"] == "credentials_invalid"
        assert [e["field"] for e in problem["errors"]] == ["token"]
        assert "64 letters and digits" in problem["detail"]
        assert bad not in response.text and "Traceback" not in response.text
    assert control.requests() == []
    assert _counts(app_context) == before
    after = client.get(f"/api/providers/{created['id']}", headers=headers).json()
    assert after["token_fingerprint"] == created["token_fingerprint"]


@pytest.mark.parametrize("bad", BAD_TOKENS[:3])
def test_the_dashboard_forms_refuse_a_token_of_the_wrong_form(
    bad: str,
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    from tests.integration.test_dashboard_auth import login

    csrf = login(client, "admin-user")
    control = SimControl(sim.base_url)
    form = {"csrf_token": csrf, "name": "main", "token": random_token(), "api_endpoint": sim.base_url + "/v1"}
    assert client.post("/providers", data=form, follow_redirects=False).status_code == 303
    pid = _only_provider_id(app_context)
    before = _counts(app_context)
    control.clear_requests()
    connect = client.post("/providers", data={**form, "name": "other", "token": bad})
    rotate = client.post(f"/providers/{pid}/rotate", data={"csrf_token": csrf, "token": bad})
    for page in (connect, rotate):
        assert page.status_code == 422
        assert "(credentials_invalid)" in page.text and "64 letters and digits" in page.text
        assert bad not in page.text
    assert control.requests() == []
    assert _counts(app_context) == before


def _only_provider_id(ctx: AppContext) -> int:
    with ctx.database.session() as session:
        return int(session.scalar(select(ProviderConnection.id)) or 0)
