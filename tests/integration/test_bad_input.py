"""Bad input gets a 4xx problem response that names what is wrong, and writes nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nodewright.context import AppContext
from nodewright.db.models import User
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import sim, sim_server  # noqa: F401
from tests.support.apps import RoleUser


def _user_count(ctx: AppContext) -> int:
    with ctx.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(User)) or 0)


def _problem(response: object, status: int, code: str) -> dict[str, object]:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status and body["code"] == code
    assert "Traceback" not in response.text
    return body


def test_malformed_json(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    before = _user_count(app_context)
    response = client.post(
        "/api/users",
        content=b'{"username": "x",',
        headers={**role_users[Role.admin].headers, "content-type": "application/json"},
    )
    _problem(response, 400, "malformed_json")
    assert _user_count(app_context) == before


def test_wrong_type_names_the_field(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    before = _user_count(app_context)
    response = client.post(
        "/api/users",
        json={"username": 42, "role": "viewer", "password": "long enough pw 1"},
        headers=role_users[Role.admin].headers,
    )
    body = _problem(response, 422, "invalid_request")
    assert {"field": "username", "message": "Input should be a valid string"} in body["errors"]  # type: ignore[operator]
    assert "username" in str(body["detail"])
    assert _user_count(app_context) == before


def test_unknown_field_is_refused(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    before = _user_count(app_context)
    response = client.post(
        "/api/users",
        json={"username": "newbie", "role": "viewer", "password": "long enough pw 1", "is_root": True},
        headers=role_users[Role.admin].headers,
    )
    body = _problem(response, 422, "invalid_request")
    assert {"field": "is_root", "message": "unknown field"} in body["errors"]  # type: ignore[operator]
    assert _user_count(app_context) == before


def test_bad_enum_and_domain_rule(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    admin = role_users[Role.admin].headers
    body = _problem(
        client.post(
            "/api/users", json={"username": "a", "role": "root", "password": "x" * 12}, headers=admin
        ),
        422,
        "invalid_request",
    )
    assert body["errors"][0]["field"] == "role"  # type: ignore[index]
    body = _problem(
        client.post(
            "/api/users", json={"username": "Bad Name", "role": "viewer", "password": "x" * 12}, headers=admin
        ),
        422,
        "invalid_request",
    )
    assert body["errors"][0]["field"] == "username"  # type: ignore[index]
    _problem(
        client.post(
            "/api/users",
            json={"username": "viewer-user", "role": "viewer", "password": "x" * 12},
            headers=admin,
        ),
        409,
        "conflict",
    )


def test_oversize_body(client: TestClient, role_users: dict[Role, RoleUser], settings: object) -> None:
    big = b'{"username": "' + b"a" * 2_000_000 + b'"}'
    response = client.post(
        "/api/users",
        content=big,
        headers={**role_users[Role.admin].headers, "content-type": "application/json"},
    )
    body = _problem(response, 413, "body_too_large")
    assert "bytes" in str(body["detail"])


def test_oversize_chunked_body_without_length(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"a" * 65536

    response = client.post(
        "/api/users",
        content=chunks(),
        headers={**role_users[Role.admin].headers, "content-type": "application/json"},
    )
    _problem(response, 413, "body_too_large")


def test_unknown_route_and_method(client: TestClient) -> None:
    _problem(client.get("/api/does-not-exist"), 404, "not_found")
    _problem(client.put("/healthz"), 405, "method_not_allowed")


def test_bad_path_parameter(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    body = _problem(
        client.delete("/api/tokens/abc", headers=role_users[Role.admin].headers), 422, "invalid_request"
    )
    assert body["errors"][0]["field"] == "token_id"  # type: ignore[index]
    _problem(client.delete("/api/tokens/99999", headers=role_users[Role.admin].headers), 404, "not_found")


def test_body_limit_after_the_response_started_sends_no_second_start() -> None:
    """An app that answers before reading its whole body (a stream) cannot have its response
    replaced by the 413: a second response start is an ASGI protocol error. The limit still stops
    the reading, and nothing more of the started response is sent."""
    import asyncio

    from starlette.types import Message, Receive, Scope, Send

    from nodewright.api.middleware import BodyLimitMiddleware

    async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.body", "body": b"never sent", "more_body": False})

    sent: list[Message] = []
    chunks = [{"type": "http.request", "body": b"x" * 8, "more_body": True} for _ in range(4)]

    async def receive() -> Message:
        return chunks.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "POST", "path": "/stream", "headers": []}
    asyncio.run(BodyLimitMiddleware(streaming_app, max_bytes=10)(scope, receive, send))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1 and starts[0]["status"] == 200
    assert all(m.get("body") != b"never sent" for m in sent)


def test_nul_in_a_query_parameter_is_named(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    """PostgreSQL refuses NUL in text: a filter holding one is bad input (400), not a database error."""
    admin = role_users[Role.admin].headers
    for path, field in (
        ("/api/audit?action=login%00", "action"),
        ("/api/jobs?kind=%00", "kind"),
        ("/api/jobs?limit=5&resource_key=node%00x", "resource_key"),
    ):
        body = _problem(client.get(path, headers=admin), 400, "invalid_request")
        assert body["errors"] == [{"field": field, "message": "must not contain a NUL character"}]


def test_ids_beyond_the_column_range_are_bad_input(
    client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    admin = role_users[Role.admin].headers
    huge = 10**20
    body = _problem(client.delete(f"/api/tokens/{huge}", headers=admin), 422, "invalid_request")
    assert body["errors"][0]["field"] == "token_id"  # type: ignore[index]
    body = _problem(client.get(f"/api/audit?before_id={huge}", headers=admin), 422, "invalid_request")
    assert body["errors"][0]["field"] == "before_id"  # type: ignore[index]


def test_nul_in_dashboard_forms(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    from nodewright.db.models import ApiToken
    from tests.integration.test_dashboard_auth import _csrf, login

    token = _csrf(client.get("/login").text)
    refused = client.post("/login", data={"username": "admin\x00", "password": "x", "csrf_token": token})
    assert refused.status_code == 401 and "Unknown user or wrong password" in refused.text
    csrf = login(client, "admin-user")
    with app_context.database.session() as session:
        before = session.scalar(select(func.count()).select_from(ApiToken))
    page = client.post("/tokens", data={"name": "t", "username": "viewer\x00", "csrf_token": csrf})
    assert page.status_code == 422 and "username" in page.text and "NUL" in page.text
    with app_context.database.session() as session:
        assert session.scalar(select(func.count()).select_from(ApiToken)) == before
    assert client.post(f"/tokens/{10**20}/revoke", data={"csrf_token": csrf}).status_code == 422


def test_values_the_database_cannot_hold_are_bad_input_everywhere(
    client: TestClient, role_users: dict[Role, RoleUser], db_kind: str
) -> None:
    """The safety net under every route: an id beyond the integer column that no route validation
    bounded reaches the database (OverflowError on SQLite, DataError on PostgreSQL); the caller
    gets a 400 problem, not an internal error."""
    from fastapi import FastAPI

    from nodewright.api.problems import install_problem_handlers
    from nodewright.db.models import User

    app = FastAPI()
    install_problem_handlers(app)
    database = client.app.state.ctx.database  # type: ignore[attr-defined]

    @app.get("/users/{user_id}")
    def get_user(user_id: int) -> dict[str, str]:
        with database.session() as session:
            user = session.get(User, user_id)
            return {"username": user.username if user else ""}

    with TestClient(app, raise_server_exceptions=False) as bare:
        assert bare.get("/users/1").status_code == 200
        body = _problem(bare.get(f"/users/{10**20}"), 400, "invalid_value")
        assert "out of range" in str(body["detail"])


def test_control_characters_from_a_provider_are_stored_escaped(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
) -> None:
    """A provider's error message is foreign text: its terminal escapes, carriage returns, bidi
    overrides and newlines (a fake line of ours) reach the connection's status escaped, on one line."""
    from nodewright.sim.control_client import SimControl
    from tests.fixtures.sim import random_token

    admin = role_users[Role.admin].headers
    created = client.post(
        "/api/providers",
        json={"kind": "hetzner", "name": "sim", "token": random_token(), "api_endpoint": sim.api_url},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    forged = "\x1b]0;owned\x07\x1b[2J\r\n[nodewright] connected\r\u202eok"
    SimControl(sim.base_url).add_fault("error", path="/v1/*", code="forbidden", message=forged, count=None)
    checked = client.post(f"/api/providers/{created.json()['id']}/check", headers=admin).json()
    message = checked["last_error"]["message"]
    assert message == (
        "Hetzner refused validate: \\x1b]0;owned\\x07\\x1b[2J\\n[nodewright] connected"
        "\\r\\u202eok (forbidden)"
    )
    for text in (message, checked["status_message"], checked["last_error"]["hint"] or ""):
        assert not any(c in text for c in "\x1b\x07\r\n\u202e"), text
