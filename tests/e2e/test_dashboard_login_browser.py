"""A real browser signs in, creates an API token on the admin page, and signs out."""

from __future__ import annotations

from pathlib import Path

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.security.roles import Role
from tests.support.apps import TEST_PASSWORD, RoleUser
from tests.support.browser import chromium
from tests.support.live_server import live_server


def test_login_token_logout_in_chromium(
    settings: Settings,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    tmp_path: Path,
    db_kind: str,
) -> None:
    app = create_app(settings, ctx=app_context, start_workers=False)
    with live_server(app) as base_url, chromium() as browser:
        page = browser.new_page()
        page.goto(f"{base_url}/")
        assert page.url.endswith("/login")
        page.get_by_label("Username").fill("admin-user")
        page.get_by_label("Password").fill("wrong password!")
        page.get_by_role("button", name="Sign in").click()
        assert "Unknown user or wrong password" in page.get_by_role("alert").inner_text()

        page.get_by_label("Username").fill("admin-user")
        page.get_by_label("Password").fill(TEST_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base_url}/")
        assert "admin-user" in page.locator("header").inner_text()

        page.get_by_role("link", name="API tokens").click()
        page.get_by_label("Name").fill("browser-token")
        page.get_by_role("button", name="Create token").click()
        token = page.get_by_test_id("new-token").inner_text().strip()
        assert token.startswith("nwt_")
        page.screenshot(path=str(tmp_path / f"tokens-{db_kind}.png"))
        page.goto(f"{base_url}/tokens")  # shown once: the listing never shows it again
        assert "browser-token" in page.content()
        assert token not in page.content()

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{base_url}/login")
        page.goto(f"{base_url}/tokens")
        assert page.url.endswith("/login")
