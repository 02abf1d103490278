# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""In Chromium, cheaply: one server, one database and one browser for the module, nodes seeded in the
database (nothing is provisioned). Every page at 1366x800 and at 390x844 (no horizontal overflow on
a phone), dark mode, keyboard reach; the node list adding a node created through the API live; the
node page's status following its job live; the create form (sorted types, cx23 first, a name pattern
the browser really checks, errors beside the field, a gate that visibly disables it); the node page's
controls; and a viewer's pages without mutation controls. Screenshots go to pytest's tmp path, or to
``$NODEWRIGHT_TEST_ARTIFACTS/dashboard`` when set (``test-artifacts/`` is git-ignored for that)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.db.models import Job, Node, User
from nodewright.jobs.events import append_event
from nodewright.nodes.states import RELEASE_KIND
from nodewright.security import web_sessions
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import sim_server  # noqa: F401
from tests.support.apps import RoleUser, create_role_users, make_settings, opened_context
from tests.support.browser import chromium
from tests.support.dashboard_seed import seed_node
from tests.support.databases import clone_sqlite
from tests.support.live_server import live_server
from tests.support.nodes import connect_sim

DESKTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}
LONG_LABELS = {"team": "platform-operations-and-reliability", "service": "payments-gateway-eu-central"}


@dataclass
class Dash:
    base_url: str
    client: TestClient
    ctx: AppContext
    users: dict[Role, RoleUser]
    browser: Browser
    shots: Path
    provider: int
    nodes: dict[str, int] = field(default_factory=dict)
    contexts: dict[str, BrowserContext] = field(default_factory=dict)

    def page(self, username: str | None) -> Page:
        """A page in ``username``'s signed-in browser context. The session is made directly (the
        sign-in form has its own browser test): argon2 per user would cost seconds here."""
        key = username or "anonymous"
        if key not in self.contexts:
            context = self.browser.new_context(viewport=DESKTOP)
            self.contexts[key] = context
            if username is not None:
                with self.ctx.database.session(write=True) as session:
                    user = session.scalars(select(User).where(User.username == username)).one()
                    session_id = web_sessions.start_session(session, user, 3600)
                cookie = self.ctx.signer.sign(session_id)
                context.add_cookies(
                    [{"name": web_sessions.SESSION_COOKIE, "value": cookie, "url": self.base_url}]
                )
        page = self.contexts[key].new_page()
        page.set_default_timeout(15_000)
        return page


@pytest.fixture(scope="module")
def dash(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, sim_server: SimServer
) -> Iterator[Dash]:
    root = tmp_path_factory.mktemp("dashboard-browser")
    settings = make_settings(clone_sqlite(sqlite_template, root), root / "data")
    with opened_context(settings) as ctx:
        users = create_role_users(ctx)
        app = create_app(settings, ctx=ctx, start_workers=False)
        with TestClient(app) as client, live_server(app) as base_url, chromium() as browser:
            provider = connect_sim(client, users[Role.admin].headers, sim_server, name="hel-project")
            # Screenshots: pytest's tmp path, or NODEWRIGHT_TEST_ARTIFACTS (CI keeps that folder).
            artifacts = os.environ.get("NODEWRIGHT_TEST_ARTIFACTS")
            shots = Path(artifacts) / "dashboard" if artifacts else root / "screenshots"
            shots.mkdir(parents=True, exist_ok=True)
            state = Dash(base_url, client, ctx, users, browser, shots, provider)
            state.nodes = {
                "ready": seed_node(ctx, provider, "web-1", labels=LONG_LABELS),
                "failed": seed_node(ctx, provider, "db-1", "failed", labels={"role": "db"}),
                "released": seed_node(ctx, provider, "old-web", "released"),
                "live": seed_node(ctx, provider, "web-live", "pending", with_job=True, evidence={}),
            }
            try:
                yield state
            finally:
                for context in state.contexts.values():
                    context.close()


def fits(page: Page) -> bool:
    width: bool = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    return width


def test_every_page_on_a_laptop_and_a_phone(dash: Dash) -> None:
    nodes = dash.nodes
    with dash.ctx.database.session() as session:
        job_id = session.get(Node, nodes["live"]).job_id  # type: ignore[union-attr]
    pages = [
        "/", "/providers", f"/providers?catalog={dash.provider}", "/nodes", "/nodes?released=1",
        "/nodes?q=nothing", f"/nodes/{nodes['ready']}", f"/nodes/{nodes['failed']}",
        f"/nodes/{nodes['released']}", "/jobs", f"/jobs/{job_id}", "/maintenance", "/webhooks", "/tokens",
        "/users", "/audit", "/audit?action=node.", "/account/password",
        "/no-such-page",
    ]  # fmt: skip
    page = dash.page("admin-user")
    problems: list[str] = []
    # A failed load also logs "Failed to load resource": the responses say which one it was.
    page.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and "load resource" not in m.text else None,
    )
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/no-such-page")
            else None
        ),
    )
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for path in pages:
            page.goto(dash.base_url + path)
            expect(page.locator("nav[aria-label=Main]")).to_be_visible()  # the layout, error page too
            name = re.sub(r"[^a-z0-9]+", "-", path).strip("-") or "home"
            page.screenshot(path=str(dash.shots / f"{size}-{name}.png"), full_page=viewport is PHONE)
            if viewport is PHONE:
                assert fits(page), f"{path} overflows at 390 px"
    assert problems == []  # no 404 (the favicon included), no script error
    expect(page.get_by_test_id("error-page")).to_contain_text("No route or resource")

    # Signed out: the sign-in page and an unknown URL, on the phone too.
    anonymous = dash.page(None)
    anonymous.set_viewport_size(PHONE)
    for path in ("/login", "/no-such-page"):
        anonymous.goto(dash.base_url + path)
        assert fits(anonymous), path
    expect(anonymous.get_by_test_id("error-page")).to_be_visible()

    # Dark mode follows the system.
    page.set_viewport_size(DESKTOP)
    page.goto(f"{dash.base_url}/nodes")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light == "rgb(246, 247, 249)" and dark == "rgb(15, 19, 24)"
    page.screenshot(path=str(dash.shots / "desktop-nodes-dark.png"), full_page=True)
    page.emulate_media(color_scheme="light")

    # Keyboard: the first Tab reaches the skip link, and Tab walks on to the list's filter button.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Filter":
            break
    else:
        raise AssertionError("the filter button is not reachable by keyboard")
    page.close()


def test_node_list_adds_a_node_created_through_the_api_live(dash: Dash) -> None:
    page = dash.page("operator-user")
    page.goto(f"{dash.base_url}/nodes")
    expect(page.locator(f'tr[data-node-id="{dash.nodes["ready"]}"]')).to_contain_text("4.51 EUR")
    expect(page.locator(f'tr[data-node-id="{dash.nodes["ready"]}"]')).to_contain_text("hel-project")
    expect(page.locator(f'tr[data-node-id="{dash.nodes["released"]}"]')).to_have_count(0)
    page.evaluate("window.nwMarker = 'no reload'")
    fleet = page.locator('[data-fleet="detail"]')
    counted = fleet.inner_text()
    page.wait_for_timeout(500)  # the live stream connects
    body = {"provider_id": dash.provider, "name": "from-the-api", "location": "fsn1",
            "server_type": "cx23", "image": "ubuntu-24.04"}  # fmt: skip
    created = dash.client.post("/api/nodes", json=body, headers=dash.users[Role.operator].headers)
    assert created.status_code == 202, created.text
    row = page.locator(f'tr[data-node-id="{created.json()["node"]["id"]}"]')
    expect(row).to_contain_text("from-the-api", timeout=20_000)
    expect(row.locator('[data-field="status"]')).to_have_text("pending")
    expect(fleet).not_to_have_text(counted)  # the fleet line follows (one more node not released)
    assert page.locator("#nodes-table tbody tr").first.get_attribute("data-node-id") == str(
        created.json()["node"]["id"]
    )  # newest first, like the server's order
    assert page.evaluate("window.nwMarker") == "no reload"
    page.close()


def test_node_page_status_follows_its_job_live(dash: Dash) -> None:
    node_id = dash.nodes["live"]
    page = dash.page("operator-user")
    page.goto(f"{dash.base_url}/nodes/{node_id}")
    expect(page.get_by_test_id("node-status")).to_have_text("pending")
    page.evaluate("window.nwMarker = 'no reload'")
    page.wait_for_timeout(500)  # the log's stream connects
    with dash.ctx.database.session(write=True) as session:
        node = session.get(Node, node_id)
        assert node is not None and node.job_id is not None
        node.status, node.stage = "provisioning", "provision"
        append_event(session, node.job_id, type="log", message="running the baseline playbook")
    expect(page.get_by_test_id("node-status")).to_have_text("provisioning", timeout=20_000)
    expect(page.locator("#job-events")).to_contain_text("running the baseline playbook")
    assert page.locator('ol.timeline li[data-stage="provision"]').get_attribute("class") == "stage-current"
    assert page.locator('ol.timeline li[data-stage="acquire"]').get_attribute("class") == "stage-done"
    assert page.evaluate("window.nwMarker") == "no reload"
    page.close()


def _type_prices(page: Page) -> list[float]:
    labels = page.locator("#nw-type option").all_inner_texts()
    return [float(m.group(1)) for t in labels if (m := re.search(r"· ([\d.]+) EUR/month", t))]


def test_create_form_in_chromium(dash: Dash) -> None:
    page = dash.page("operator-user")
    page.goto(f"{dash.base_url}/nodes")
    expect(page.locator("#nw-location option[value=fsn1]")).to_have_count(1)
    page.select_option("#nw-location", "fsn1")
    expect(page.locator("#nw-type option")).not_to_have_count(0)
    assert page.locator("#nw-type").input_value() == "cx23"  # the README's type comes first
    prices = _type_prices(page)
    assert len(prices) > 2 and prices == sorted(prices)

    name = page.locator("#nw-name")
    name.fill("Bad_Name")
    assert name.evaluate("el => el.validity.patternMismatch") is True  # the browser checks the pattern
    name.fill("web-9")
    assert name.evaluate("el => el.validity.patternMismatch") is False
    # The server's check, past the browser's: a sentence beside the field, no pydantic text.
    name.fill("Bad_Name")
    page.evaluate("document.getElementById('create-node').noValidate = true")
    page.get_by_role("button", name="Create node").click()
    error = page.get_by_test_id("field-error-name")
    expect(error).to_contain_text("Use 1 to 63 lowercase letters")
    assert page.locator('label:has(#nw-name) [data-testid="field-error-name"]').count() == 1
    assert "String should match" not in page.content()

    admin = dash.users[Role.admin].headers
    assert dash.client.put("/api/gates", json={"provider_create": False}, headers=admin).status_code == 200
    try:
        page.goto(f"{dash.base_url}/nodes")
        button = page.get_by_role("button", name="Create node")
        expect(button).to_be_disabled()
        assert button.get_attribute("disabled") is not None
        assert button.evaluate("el => getComputedStyle(el).cursor") == "not-allowed"
        assert float(button.evaluate("el => getComputedStyle(el).opacity")) < 1
        expect(page.get_by_test_id("create-disabled-reason")).to_contain_text("provider_create")
    finally:
        dash.client.put("/api/gates", json={"provider_create": True}, headers=admin)
    page.close()


def test_node_page_controls(dash: Dash) -> None:
    page = dash.page("operator-user")
    page.goto(f"{dash.base_url}/nodes/{dash.nodes['ready']}")
    expect(page.get_by_test_id("node-provider")).to_have_text("hel-project")
    delete = page.get_by_label("Delete the server at the provider")
    detach = page.get_by_label("Detach it and keep the server")
    delete.check()
    detach.check()
    assert detach.is_checked() and not delete.is_checked()  # one choice, never both
    dialogs: list[Any] = []

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Delete node").click()
    assert dialogs and "web-1" in dialogs[0]  # a destructive action confirms; dismissed, nothing sent
    assert page.url.endswith(f"/nodes/{dash.nodes['ready']}")
    expect(page.get_by_test_id("node-status")).to_have_text("ready")

    page.get_by_test_id("copy-ssh").click()
    expect(page.locator(".copy-state")).not_to_have_text("")
    created = page.locator("dd time").first
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", created.get_attribute("title") or "")
    assert "ago" in created.inner_text()
    page.locator('details[data-section="calls"] summary').click()
    calls = page.locator('details[data-section="calls"]')
    expect(calls.locator("time").first).to_be_visible()
    assert "1765000000" not in calls.inner_text()

    released = dash.page("operator-user")
    released.goto(f"{dash.base_url}/nodes/{dash.nodes['released']}")
    expect(released.get_by_test_id("released-server")).to_be_visible()
    assert released.get_by_test_id("ssh-command").count() == 0
    assert "203.0.113.7" not in released.content()
    released.close()
    page.close()


def test_a_viewer_sees_no_mutation_controls(dash: Dash) -> None:
    page = dash.page("viewer-user")
    nodes = dash.nodes
    for path in ("/", "/providers", "/nodes", f"/nodes/{nodes['ready']}", f"/nodes/{nodes['failed']}",
                 "/jobs", "/maintenance"):  # fmt: skip
        page.goto(dash.base_url + path)
        assert page.locator("form[method=post]").count() == 1, path  # signing out only
        buttons = set(page.get_by_role("button").all_inner_texts())
        assert buttons <= {"Sign out", "Filter", "Copy"}, (path, buttons)
    page.close()


def test_the_forced_password_change_on_a_phone(dash: Dash) -> None:
    """A user whose password was made for them meets the change form first, on a phone too; after
    choosing their own, the dashboard opens."""
    from nodewright.security import accounts

    with dash.ctx.database.session(write=True) as session:
        accounts.create_user(session, "fresh-user", "made-for-fresh-user", Role.operator, must_change=True)
    page = dash.page("fresh-user")
    page.set_viewport_size(PHONE)
    page.goto(dash.base_url + "/nodes")
    assert page.url.endswith("/account/password")
    expect(page.get_by_text("Choose your own before you go on")).to_be_visible()
    assert fits(page)
    page.get_by_label("Current password").fill("made-for-fresh-user")
    page.get_by_label("New password (at least").fill("fresh-user-own-choice")
    page.get_by_label("New password again").fill("fresh-user-own-choice-typo")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("The two new passwords differ.")).to_be_visible()
    page.get_by_label("Current password").fill("made-for-fresh-user")
    page.get_by_label("New password (at least").fill("fresh-user-own-choice")
    page.get_by_label("New password again").fill("fresh-user-own-choice")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password was changed")).to_be_visible()
    page.goto(dash.base_url + "/nodes")
    assert page.url.endswith("/nodes")
    page.screenshot(path=str(dash.shots / "password-changed-phone.png"), full_page=True)
    page.close()


def test_bulk_delete_from_the_list(dash: Dash) -> None:
    picked = [seed_node(dash.ctx, dash.provider, name) for name in ("bulk-a", "bulk-b")]
    page = dash.page("operator-user")
    page.goto(f"{dash.base_url}/nodes?q=bulk")
    page.get_by_label("Select every node shown").check()
    assert all(page.get_by_label(f"Select {name}").is_checked() for name in ("bulk-a", "bulk-b"))
    page.get_by_label("Delete their servers at the provider").check()
    page.get_by_test_id("bulk-submit").click()
    expect(page.get_by_role("heading", name="Delete 2 nodes?")).to_be_visible()
    expect(page.get_by_test_id("bulk-nodes")).to_contain_text("bulk-a")
    page.screenshot(path=str(dash.shots / "desktop-bulk-delete.png"))
    page.get_by_test_id("bulk-confirm").click()
    page.wait_for_url(f"{dash.base_url}/nodes")
    with dash.ctx.database.session() as session:
        kinds = {
            j.resource_key: j.kind
            for j in session.scalars(select(Job).where(Job.resource_key.in_([f"node:{i}" for i in picked])))
        }
    assert kinds == {f"node:{i}": RELEASE_KIND for i in picked}
    page.close()
