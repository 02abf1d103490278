"""In Chromium, a running job's page follows its log live (SSE) and shows the cancel taking effect."""

from __future__ import annotations

import threading
from pathlib import Path

from playwright.sync_api import expect

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.jobs.enqueue import enqueue
from nodewright.security.roles import Role
from tests.support.apps import TEST_PASSWORD, RoleUser
from tests.support.browser import chromium
from tests.support.jobs import run_next, wait_until
from tests.support.live_server import live_server


def test_running_job_page_follows_cancel_live(
    settings: Settings, app_context: AppContext, role_users: dict[Role, RoleUser], tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    with app_context.database.session(write=True) as session:
        job = enqueue(session, "test.wait_cancel", {"marker": str(marker)}, resource_key="node:live")
        session.flush()
        job_id = job.id
    outcome: list[str | None] = []
    runner = threading.Thread(target=lambda: outcome.append(run_next(app_context.database)), daemon=True)
    runner.start()
    wait_until(marker.exists, what="the job to start")

    app = create_app(settings, ctx=app_context, start_workers=False)
    with live_server(app) as base_url, chromium() as browser:
        page = browser.new_page()
        page.goto(f"{base_url}/login")
        page.get_by_label("Username").fill("operator-user")
        page.get_by_label("Password").fill(TEST_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base_url}/")
        page.goto(f"{base_url}/jobs/{job_id}")
        assert page.get_by_test_id("job-state").inner_text() == "running"
        page.get_by_role("button", name="Cancel job").click()
        # The redirect shows "canceling"; the live stream then sees "canceled" and reloads the page.
        expect(page.get_by_test_id("job-state")).to_have_text("canceled", timeout=30_000)
        assert "canceled" in page.locator("#job-events").inner_text()
    runner.join(timeout=30)
    assert outcome == ["canceled"]
