"""Dashboard login/logout, session cookie flags, CSRF on every form, roles on pages."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nodewright.context import AppContext
from nodewright.db.models import ApiToken, AuditEvent
from nodewright.security.roles import Role
from tests.support.apps import TEST_PASSWORD, RoleUser

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def login(client: TestClient, username: str, password: str = TEST_PASSWORD) -> str:
    """Sign in through the form; returns the CSRF token of the new session."""
    token = _csrf(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return _csrf(client.get("/").text)


def test_pages_redirect_to_login(client: TestClient) -> None:
    for path in ("/", "/tokens"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"


def test_login_sets_hardened_cookie(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    token = _csrf(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": "viewer-user", "password": TEST_PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("nw_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "viewer-user" in client.get("/").text


def test_login_without_csrf_is_refused(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"username": "viewer-user", "password": TEST_PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "nw_session" not in response.headers.get("set-cookie", "")


def test_wrong_password(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    token = _csrf(client.get("/login").text)
    response = client.post(
        "/login", data={"username": "viewer-user", "password": "nope nope nope", "csrf_token": token}
    )
    assert response.status_code == 401
    assert "Unknown user or wrong password" in response.text
    with app_context.database.session() as session:
        denied = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "login", AuditEvent.outcome == "denied")
        )
    assert denied == 1


def test_form_post_without_csrf_is_refused(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    login(client, "admin-user")
    with app_context.database.session() as session:
        before = session.scalar(select(func.count()).select_from(ApiToken))
    for data in ({"name": "x"}, {"name": "x", "csrf_token": "forged"}):
        response = client.post("/tokens", data=data)
        assert response.status_code == 403
        assert "CSRF" in response.text
    with app_context.database.session() as session:
        assert session.scalar(select(func.count()).select_from(ApiToken)) == before
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403


def test_token_page_creates_shows_once_and_revokes(
    client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    csrf = login(client, "admin-user")
    page = client.post("/tokens", data={"name": "from-page", "csrf_token": csrf})
    assert page.status_code == 200
    shown = re.search(r'data-testid="new-token">([^<]+)<', page.text)
    assert shown
    plaintext = shown.group(1)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 200
    listing = client.get("/tokens").text
    assert plaintext not in listing
    token_id = re.search(r'action="/tokens/(\d+)/revoke"', listing.split("from-page")[1])
    assert token_id
    client.post(f"/tokens/{token_id.group(1)}/revoke", data={"csrf_token": csrf})
    assert client.get("/api/me", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 401


def test_viewer_cannot_open_admin_page(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    csrf = login(client, "viewer-user")
    assert client.get("/tokens").status_code == 403
    assert client.post("/tokens", data={"name": "x", "csrf_token": csrf}).status_code == 403


def test_session_cookie_on_api_needs_csrf_header_for_writes(
    client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    csrf = login(client, "admin-user")
    assert client.get("/api/me").json()["username"] == "admin-user"
    body = {"username": "viewer-user", "name": "via-cookie"}
    refused = client.post("/api/tokens", json=body)
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    assert client.post("/api/tokens", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201


def test_logout_ends_the_session(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    csrf = login(client, "viewer-user")
    cookie = client.cookies.get("nw_session")
    assert cookie
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    client.cookies.set("nw_session", cookie)  # replaying the old cookie does not work: revoked server-side
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize("cookie", ["garbage", "a.b.c"])
def test_forged_cookie_is_ignored(client: TestClient, cookie: str) -> None:
    client.cookies.set("nw_session", cookie)
    assert client.get("/", follow_redirects=False).status_code == 303
