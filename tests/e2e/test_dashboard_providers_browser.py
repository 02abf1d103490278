"""Chromium on /providers: connect (a refused token first), see the status, check, rotate, catalog;
a viewer sees the status and no mutation buttons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.security.roles import Role
from nodewright.sim.control_client import SimControl
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import TEST_PASSWORD, RoleUser
from tests.support.browser import chromium
from tests.support.live_server import live_server


def _sign_in(page: Any, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")


def test_providers_page_in_chromium(
    settings: Settings,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,  # noqa: F811
    tmp_path: Path,
    db_kind: str,
) -> None:
    control = SimControl(sim.base_url)
    read_only = random_token()
    control.register_token(read_only, "read_only")
    good, rotated = random_token(), random_token()
    app = create_app(settings, ctx=app_context, start_workers=False)
    with live_server(app) as base_url, chromium() as browser:
        page = browser.new_page()
        _sign_in(page, base_url, "admin-user")
        page.get_by_role("link", name="Providers").click()
        page.wait_for_url(f"{base_url}/providers")

        # A read-only token is refused; the form keeps the name and endpoint, never the token.
        page.get_by_label("Name").fill("hetzner-sim")
        page.get_by_label("API token (Read & Write)").fill(read_only)
        page.get_by_label("API endpoint (optional)").fill(sim.base_url + "/v1")
        page.get_by_role("button", name="Connect").click()
        error = page.get_by_test_id("provider-error").inner_text()
        assert "permission_denied" in error and "Read & Write" in error
        assert read_only not in page.content()
        assert page.get_by_label("API token (Read & Write)").input_value() == ""
        assert page.get_by_label("Name").input_value() == "hetzner-sim"

        page.get_by_label("API token (Read & Write)").fill(good)
        page.get_by_role("button", name="Connect").click()
        page.wait_for_url(f"{base_url}/providers")
        row = page.locator("tr[data-provider='hetzner-sim']")
        assert row.get_by_test_id("status-badge").inner_text() == "ok"
        assert "Connected" in row.get_by_test_id("status-message").inner_text()
        assert good not in page.content()

        # The token is revoked at the provider: the check says what to do.
        control.register_token(good, "revoked")
        row.get_by_test_id("check").click()
        page.wait_for_url(f"{base_url}/providers")
        row = page.locator("tr[data-provider='hetzner-sim']")
        assert row.get_by_test_id("status-badge").inner_text() == "invalid"
        assert row.get_by_test_id("status-message").inner_text() == "Token rejected: paste a new token."

        row.get_by_test_id("rotate-token").fill(rotated)
        row.get_by_test_id("rotate").click()
        page.wait_for_url(f"{base_url}/providers")
        row = page.locator("tr[data-provider='hetzner-sim']")
        assert row.get_by_test_id("status-badge").inner_text() == "ok"
        assert rotated not in page.content()

        row.get_by_role("link", name="Catalog").click()
        catalog = page.get_by_test_id("catalog")
        assert "cx23" in catalog.inner_text() and "EUR / month" in catalog.inner_text()
        page.screenshot(path=str(tmp_path / f"providers-{db_kind}.png"))
        page.get_by_role("button", name="Sign out").click()

        viewer = browser.new_page()
        _sign_in(viewer, base_url, "viewer-user")
        viewer.goto(f"{base_url}/providers")
        assert viewer.get_by_test_id("status-badge").inner_text() == "ok"
        assert viewer.get_by_role("button", name="Check").count() == 0
        assert viewer.get_by_role("button", name="Rotate token").count() == 0
        assert viewer.get_by_role("button", name="Connect").count() == 0
