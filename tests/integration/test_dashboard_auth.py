"""Dashboard login/logout, session cookie flags, CSRF on every form, roles on pages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db.models import ApiToken, AuditEvent, User, WebSession
from nodewright.security.roles import Role
from nodewright.security.throttle import LoginThrottle
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


def test_non_ascii_csrf_token_is_refused_not_an_error(
    client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    """A forged token with non-ASCII characters gets the same 403 as any other forged token."""
    client.get("/login")
    response = client.post(
        "/login", data={"username": "viewer-user", "password": TEST_PASSWORD, "csrf_token": "é" * 8}
    )
    assert response.status_code == 403
    login(client, "admin-user")
    assert client.post("/tokens", data={"name": "x", "csrf_token": "jeton-é"}).status_code == 403
    refused = client.post(
        "/api/tokens",
        json={"username": "viewer-user", "name": "x"},
        headers={"X-CSRF-Token": "jeton-\xe9".encode("latin-1")},  # type: ignore[dict-item]
    )
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"


def _attempt(client: TestClient, username: str, password: str) -> httpx.Response:
    token = _csrf(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def test_repeated_failed_logins_are_throttled(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    limit = app_context.login_throttle.max_failures
    for _ in range(limit):
        assert _attempt(client, "viewer-user", "wrong password!").status_code == 401
        assert _attempt(client, "no-such-user", "wrong password!").status_code == 401
    # Now even the right password is not evaluated, and an unknown user is answered the same way.
    for username in ("viewer-user", "no-such-user"):
        throttled = _attempt(client, username, TEST_PASSWORD)
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) > 0
        assert "Too many failed sign-ins" in throttled.text
        assert "nw_session" not in throttled.headers.get("set-cookie", "")
    # Other accounts are not locked by it.
    assert _attempt(client, "operator-user", TEST_PASSWORD).status_code == 303
    with app_context.database.session() as session:
        throttled_events = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "login", AuditEvent.outcome == "throttled")
        )
    assert throttled_events == 2


def test_successful_login_resets_the_failure_count(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    limit = app_context.login_throttle.max_failures
    for _ in range(limit - 1):
        assert _attempt(client, "viewer-user", "wrong password!").status_code == 401
    assert _attempt(client, "viewer-user", TEST_PASSWORD).status_code == 303
    client.cookies.clear()  # signed out again (GET /login would redirect a signed-in user)
    for _ in range(limit - 1):
        assert _attempt(client, "viewer-user", "wrong password!").status_code == 401
    assert _attempt(client, "viewer-user", TEST_PASSWORD).status_code == 303


def test_throttle_forgets_failures_after_its_window() -> None:
    now = [1000.0]
    throttle = LoginThrottle(max_failures=2, window_seconds=60, clock=lambda: now[0])
    throttle.failed("alice", "10.0.0.1")
    throttle.failed("Alice", "10.0.0.1")
    assert throttle.retry_after("alice", "10.0.0.1") == 60
    assert throttle.retry_after("alice", "10.0.0.2") is None  # per address
    now[0] += 61
    assert throttle.retry_after("alice", "10.0.0.1") is None


def test_throttle_memory_is_bounded() -> None:
    throttle = LoginThrottle(max_failures=3, window_seconds=60, max_keys=10, clock=lambda: 0.0)
    for i in range(100):
        throttle.failed(f"user{i}", "10.0.0.1")
    assert len(throttle._failures) <= 10


def test_expired_sessions_are_purged_at_login(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    long_ago = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    with app_context.database.session(write=True) as session:
        viewer = session.scalar(select(User).where(User.username == "viewer-user"))
        assert viewer is not None
        session.add(
            WebSession(user_id=viewer.id, token_hash="0" * 64, created_at=long_ago, expires_at=long_ago)
        )
    login(client, "admin-user")
    with app_context.database.session() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(WebSession)
                .where(WebSession.expires_at < dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
            )
            == 0
        )


def test_pages_and_api_answers_are_not_cached(client: TestClient, role_users: dict[Role, RoleUser]) -> None:
    """The page and the API answer that show a new token once must not be kept by any cache."""
    csrf = login(client, "admin-user")
    page = client.post("/tokens", data={"name": "cached", "csrf_token": csrf})
    assert page.status_code == 200 and "new-token" in page.text
    assert page.headers["cache-control"] == "no-store"
    created = client.post(
        "/api/tokens",
        json={"username": "viewer-user", "name": "cached2"},
        headers=role_users[Role.admin].headers,
    )
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    assert "no-store" not in client.get("/static/style.css").headers.get("cache-control", "")


def test_content_security_policy_blocks_base_and_plugins(client: TestClient) -> None:
    csp = client.get("/login").headers["content-security-policy"]
    assert "base-uri 'none'" in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_behind_https_cookies_are_secure_and_hsts_is_sent(
    settings: Settings, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    https_settings = settings.model_copy(
        update={"public_url": "https://nw.example.org", "cookie_secure": True}
    )
    ctx = dataclasses.replace(app_context, settings=https_settings)
    app = create_app(https_settings, ctx=ctx, start_workers=False)
    with TestClient(app, base_url="https://testserver") as https_client:
        page = https_client.get("/login")
        assert page.headers["strict-transport-security"].startswith("max-age=")
        login_cookie = next(h for h in page.headers.get_list("set-cookie") if h.startswith("nw_login_csrf="))
        assert "Secure" in login_cookie
        response = https_client.post(
            "/login",
            data={"username": "viewer-user", "password": TEST_PASSWORD, "csrf_token": _csrf(page.text)},
            follow_redirects=False,
        )
        assert response.status_code == 303
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("nw_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie
    assert (
        "strict-transport-security"
        not in TestClient(create_app(settings, ctx=app_context)).get("/login").headers
    )


def test_password_typed_as_user_name_stays_out_of_the_audit_log(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    typed = "Tr0ub4dor&3-Secret!"
    # A password can look exactly like a user name (lower case, digits, dots): only names of
    # existing accounts are kept, so neither shape of password reaches the log.
    looks_like_a_name = "correct.horse.battery.staple-42"
    assert _attempt(client, typed, "whatever pw").status_code == 401
    assert _attempt(client, looks_like_a_name, "whatever pw").status_code == 401
    assert _attempt(client, "viewer-user", "whatever pw").status_code == 401
    with app_context.database.session() as session:
        actors = list(session.scalars(select(AuditEvent.actor).where(AuditEvent.action == "login")))
    assert "anonymous:viewer-user" in actors  # a wrong password for a real account names it
    assert actors.count("anonymous:(unknown user)") == 2
    assert not [a for a in actors if typed in a or looks_like_a_name in a]
