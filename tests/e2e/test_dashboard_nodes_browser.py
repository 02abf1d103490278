# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""In Chromium: create a node from the catalog-driven form, watch it reach ``ready`` live on the list,
open its page (timeline, log, evidence, pinned SSH command), delete it (a choice, confirmed); a viewer sees no
mutation controls, and a switched-off gate shows its banner."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import ssh_sim_server  # noqa: F401
from tests.support.apps import TEST_PASSWORD, create_role_users, make_settings
from tests.support.browser import chromium
from tests.support.live_server import live_server
from tests.support.nodes import connect_sim
from tests.support.system import require_binary

pytestmark = pytest.mark.db_only(
    "sqlite", reason="the pages do not depend on the database; the end-to-end tests run on both"
)


def sign_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")


def test_create_watch_inspect_delete_in_the_browser(
    db_url: str, tmp_path: Path, ssh_sim_server: SimServer
) -> None:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    settings = make_settings(db_url, tmp_path / "data", embedded_workers=2, job_poll_interval=0.2)
    app = create_app(settings)
    with TestClient(app) as client, live_server(app) as base_url, chromium() as browser:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        users = create_role_users(ctx)
        connect_sim(client, users[Role.admin].headers, ssh_sim_server)

        page = browser.new_page()
        sign_in(page, base_url, "operator-user")
        page.goto(f"{base_url}/nodes")
        # The selectors fill from the catalog: location -> types there (with price) -> images of that arch.
        expect(page.locator("#nw-location option[value=fsn1]")).to_have_count(1, timeout=30_000)
        page.select_option("#nw-location", "fsn1")
        page.select_option("#nw-type", "cax11")
        expect(page.locator("#nw-image option")).not_to_have_count(0)
        assert all("(arm)" in t for t in page.locator("#nw-image option").all_inner_texts())
        page.select_option("#nw-type", "cx23")
        page.select_option("#nw-image", "ubuntu-24.04")
        expect(page.get_by_test_id("cost-line")).to_contain_text("EUR per month")
        page.get_by_label("Name").fill("web-ui")
        page.get_by_role("button", name="Create node").click()
        page.wait_for_url(f"{base_url}/nodes/*")
        node_url = page.url

        # The list follows the node live until it is ready, without reloading.
        page.goto(f"{base_url}/nodes")
        expect(page.locator('tr:has-text("web-ui") [data-field="status"]')).to_have_text(
            "ready", timeout=240_000
        )

        page.goto(node_url)
        expect(page.get_by_test_id("node-status")).to_have_text("ready")
        for stage in ("acquire", "connect", "provision", "verify"):
            assert "stage-done" in (
                page.locator(f'ol.timeline li[data-stage="{stage}"]').get_attribute("class") or ""
            )
        assert "node ready" in page.locator("#job-events").inner_text()
        raw = page.get_by_test_id("evidence").locator("details.evidence-raw")
        raw.locator("summary").click()
        assert '"calls"' in raw.inner_text()
        assert "StrictHostKeyChecking=yes" in page.get_by_test_id("ssh-command").inner_text()

        page.get_by_role("button", name="Delete node").click()  # a choice is required first
        assert page.url == node_url
        page.get_by_label("Delete the server at the provider").check()
        page.once("dialog", lambda dialog: dialog.accept())  # and the destructive action confirms
        page.get_by_role("button", name="Delete node").click()
        expect(page.get_by_test_id("node-status")).to_have_text("released", timeout=120_000)
        assert httpx.get(ssh_sim_server.base_url + "/_sim/servers").json()["servers"] == []

        viewer = browser.new_page()
        sign_in(viewer, base_url, "viewer-user")
        viewer.goto(node_url)
        assert viewer.get_by_role("button").all_inner_texts() == ["Sign out"]
        viewer.goto(f"{base_url}/nodes")
        assert viewer.locator("#create-node").count() == 0

        assert (
            client.put(
                "/api/gates", json={"provider_create": False}, headers=users[Role.admin].headers
            ).status_code
            == 200
        )
        page.goto(f"{base_url}/nodes")
        expect(page.get_by_test_id("gate-banner")).to_be_visible()
        assert page.get_by_role("button", name="Create node").is_disabled()
