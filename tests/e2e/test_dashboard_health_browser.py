# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""In Chromium: /nodes shows the health column (a failing node's badge says what failed), an
operator starts a maintenance pause for that node on /maintenance through the form, sees the
paused marker on /nodes and the pause on the node's page, and ends it early."""

from __future__ import annotations

from fastapi.testclient import TestClient
from playwright.sync_api import expect

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.e2e.test_dashboard_nodes_browser import pytestmark as nodes_browser_mark
from tests.e2e.test_dashboard_nodes_browser import sign_in
from tests.fixtures.sim import sim, sim_server  # noqa: F401
from tests.integration.test_dashboard_health import FAIL, add_node, check
from tests.support.apps import RoleUser
from tests.support.browser import chromium
from tests.support.live_server import live_server
from tests.support.nodes import connect_sim

pytestmark = nodes_browser_mark


def test_health_column_and_a_pause_through_the_form(
    settings: Settings,
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    sim: SimServer,
) -> None:
    provider_id = connect_sim(client, role_users[Role.admin].headers, sim)
    node_id = add_node(app_context, provider_id, "web-ui", "ready", {"role": "web"})
    assert check(app_context, node_id, FAIL) is None  # one failure: failing, below the threshold
    app = create_app(settings, ctx=app_context, start_workers=False)
    with live_server(app) as base_url, chromium() as browser:
        page = browser.new_page()
        sign_in(page, base_url, "operator-user")
        page.goto(f"{base_url}/nodes")
        expect(page.get_by_role("columnheader", name="Health")).to_be_visible()
        row = page.locator(f'tr[data-node-id="{node_id}"]')
        badge = row.locator('[data-field="health"]')
        expect(badge).to_have_text("failing")
        title = badge.get_attribute("title") or ""
        assert title.startswith("failing since ") and '<script>alert("node")</script>' in title
        expect(row.locator('[data-field="paused"]')).to_be_hidden()
        assert page.locator("script:has-text('alert(\"node\")')").count() == 0  # text, not markup

        page.get_by_role("link", name="Maintenance").click()
        page.wait_for_url(f"{base_url}/maintenance")
        expect(page.get_by_test_id("no-pauses")).to_be_visible()
        page.get_by_label("Node").select_option(str(node_id))
        page.get_by_label("Reason").fill("swap the disk")
        page.get_by_label("Duration in minutes").fill("45")
        page.get_by_role("button", name="Start pause").click()
        page.wait_for_url(f"{base_url}/maintenance")
        pause_row = page.get_by_test_id("pauses").locator("tbody tr").first
        expect(pause_row).to_contain_text("swap the disk")
        expect(pause_row).to_contain_text("active")
        expect(pause_row).to_contain_text("user:operator-user")

        page.goto(f"{base_url}/nodes")
        expect(row.locator('[data-field="paused"]')).to_be_visible()
        assert "swap the disk" in (row.locator('[data-field="paused"]').get_attribute("title") or "")
        page.goto(f"{base_url}/nodes?health=paused")
        expect(page.locator("#nodes-table tbody tr[data-node-id]")).to_have_count(1)
        assert check(app_context, node_id, FAIL) is None  # a check during the pause: no consequence
        page.goto(f"{base_url}/nodes/{node_id}")
        expect(page.get_by_test_id("node-pause")).to_contain_text("swap the disk")
        expect(page.get_by_test_id("health-badge")).to_have_text("unknown")  # a paused check counts afresh

        page.goto(f"{base_url}/maintenance")
        page.get_by_role("button", name="End now").click()
        page.wait_for_url(f"{base_url}/maintenance")
        expect(page.get_by_test_id("no-pauses")).to_be_visible()
        page.goto(f"{base_url}/nodes")
        expect(row.locator('[data-field="paused"]')).to_be_hidden()
    active = client.get("/api/maintenance", headers=role_users[Role.viewer].headers).json()["items"]
    assert active == []
