# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""What an operator reads on the dashboard, over the real app and database: prices as money, the
fleet's monthly cost, providers by name (ids on /providers), released nodes out of the way, the
list's filters as links, empty states that say what to do, form errors as sentences beside their
field, one delete choice, waiting jobs that say when they run, the overview, HTML error pages for
browsers (problem+json for API clients) and no mutation control for a viewer."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient

from nodewright.context import AppContext
from nodewright.dashboard.nodes import _snapshot
from nodewright.db.models import Job
from nodewright.db.types import utcnow
from nodewright.jobs.enqueue import enqueue
from nodewright.nodes.states import RELEASE_KIND
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import sim, sim_server  # noqa: F401
from tests.integration.test_dashboard_auth import login
from tests.support.apps import RoleUser
from tests.support.dashboard_seed import seed_node
from tests.support.nodes import connect_sim

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-node-id="(\d+)">', html)]


def row(html: str, node_id: int) -> str:
    found = re.search(rf'<tr data-node-id="{node_id}">(.*?)</tr>', html, re.S)
    assert found is not None, node_id
    return found.group(1)


def test_node_list_money_providers_released_and_filters(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    admin = role_users[Role.admin].headers
    first = connect_sim(client, admin, sim, name="hel-project")
    second = connect_sim(client, admin, sim, name="fsn-project")
    web = seed_node(app_context, first, "web-1", labels={"role": "web"})
    db = seed_node(app_context, second, "db-1", labels={"role": "db"}, location="nbg1")
    pending = seed_node(app_context, first, "web-2", "provisioning", labels={"role": "web"}, price=None)
    gone = seed_node(app_context, first, "old-web", "released", labels={"role": "web"})
    login(client, "viewer-user")

    html = client.get("/nodes").text
    assert listed(html) == [pending, db, web]  # released hidden by default, newest first
    assert "4.51 EUR" in row(html, web) and "4.5101" not in html
    assert "hel-project" in row(html, web) and "fsn-project" in row(html, db)
    assert "connection " not in row(html, web)
    # The fleet costs what its nodes that are not released cost (the released one is not billed).
    cost = re.search(r'data-testid="fleet-cost">(.*?)</p>', html, re.S)
    assert cost is not None and "9.02 EUR" in cost.group(1) and "1 without a known price" in cost.group(1)
    assert 'data-testid="released-hidden"' in html and "/nodes?released=1" in html

    shown = client.get("/nodes", params={"released": "1"}).text
    assert listed(shown) == [gone, pending, db, web]
    assert "203.0.113.7" not in row(shown, gone)  # a released node's old address is not shown as live
    assert listed(client.get("/nodes", params={"status": "released"}).text) == [gone]

    assert listed(client.get("/nodes", params={"label": "role=web"}).text) == [pending, web]
    assert listed(client.get("/nodes", params={"label": "role"}).text) == [pending, db, web]
    assert listed(client.get("/nodes", params={"location": "nbg1"}).text) == [db]
    assert listed(client.get("/nodes", params={"provider": str(second)}).text) == [db]
    assert listed(client.get("/nodes", params={"q": "WEB"}).text) == [pending, web]
    assert listed(client.get("/nodes", params={"q": "%"}).text) == []  # a wildcard is a character
    both = client.get("/nodes", params={"q": "web", "status": "ready", "label": "role=web"}).text
    assert listed(both) == [web]
    assert 'value="web"' in both and 'value="role=web"' in both  # the form shows the filter it applied
    empty = client.get("/nodes", params={"q": "nothing-like-it"}).text
    assert "No node matches the filter" in empty and 'href="/nodes"' in empty
    assert client.get("/nodes", params={"provider": "x"}).status_code == 422

    # The live list's new rows: rendered with the page's filters.
    rows = client.get("/nodes/rows", params={"ids": f"{web},{db},{gone}", "label": "role=web"}).text
    assert listed(rows) == [web]
    assert listed(client.get("/nodes/rows", params={"ids": f"{gone}", "released": "1"}).text) == [gone]

    page = client.get(f"/nodes/{web}").text
    assert 'data-testid="node-provider">hel-project<' in page
    assert "4.51 EUR / month" in page and 'data-testid="ssh-command"' in page
    released = client.get(f"/nodes/{gone}").text
    assert 'data-testid="ssh-command"' not in released and "203.0.113.7" not in released
    assert "StrictHostKeyChecking" not in released and 'data-testid="released-server"' in released

    providers = client.get("/providers").text
    assert re.search(rf'data-testid="provider-id"[^>]*><code>{first}</code>', providers)
    assert re.search(rf'data-testid="provider-id"[^>]*><code>{second}</code>', providers)
    lost = seed_node(app_context, second, "lost-1", "lost")
    assert "203.0.113.7" not in row(client.get("/nodes").text, lost)  # its server is gone too
    assert _snapshot(app_context)[lost]["address"] is None and _snapshot(app_context)[web]["address"]


@pytest.mark.db_only("sqlite", reason="rendering only: the database part is the filter test's, run on both")
def test_node_page_reads_well_and_deletes_by_one_choice(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    provider = connect_sim(client, role_users[Role.admin].headers, sim)
    node_id = seed_node(app_context, provider, "web-1")
    csrf = login(client, "operator-user")
    page = client.get(f"/nodes/{node_id}").text
    # Evidence: Unix timestamps as moments with the exact time on hover, records as a table.
    section = re.search(r'<details class="evidence-section" data-section="calls">(.*?)</details>', page, re.S)
    assert section is not None
    calls = section.group(1)
    assert "1765000000.123" not in calls and "<time datetime=" in calls and "<th>method</th>" in calls
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">', page)
    # One delete action: a radio choice (never both), confirmed by the browser before it is sent.
    assert page.count('type="radio" name="mode"') == 2 and 'type="checkbox"' not in page
    assert "data-confirm=" in page and 'data-copy="ssh-command"' in page

    refused = client.post(f"/nodes/{node_id}/delete", data={"csrf_token": csrf})
    assert refused.status_code == 422 and "Choose what happens to the server" in refused.text
    both = client.post(
        f"/nodes/{node_id}/delete", data={"csrf_token": csrf, "mode": "both"}, follow_redirects=False
    )
    assert both.status_code == 422
    kept = client.post(
        f"/nodes/{node_id}/delete", data={"csrf_token": csrf, "mode": "detach"}, follow_redirects=False
    )
    assert kept.status_code == 303
    with app_context.database.session() as session:
        job = session.query(Job).filter(Job.kind == RELEASE_KIND).one()
        assert job.args["keep_server"] is True
    again = client.get(f"/nodes/{node_id}").text
    assert 'name="mode"' not in again  # releasing: nothing more to delete


def test_bulk_delete_confirms_once_naming_the_count_then_releases_each(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    provider = connect_sim(client, role_users[Role.admin].headers, sim)
    web = seed_node(app_context, provider, "web-1")
    db = seed_node(app_context, provider, "db-1", "failed")
    keep = seed_node(app_context, provider, "keep-1")
    gone = seed_node(app_context, provider, "old-1", "released")
    csrf = login(client, "operator-user")
    page = client.get("/nodes", params={"released": "1"}).text
    assert f'name="node-{web}"' in page and f'name="node-{gone}"' not in page  # released: nothing to pick
    assert 'data-testid="bulk-form"' in page and "data-pick-all" in page
    assert re.search(
        r"<td><time datetime=\"[^\"]+\" title=\"[^\"]+ UTC\">just now</time></td>", row(page, web)
    )

    picked = {"csrf_token": csrf, f"node-{web}": "on", f"node-{db}": "on", "mode": "delete"}
    assert client.post("/nodes/delete", data={"csrf_token": csrf, "mode": "delete"}).status_code == 422
    assert client.post("/nodes/delete", data={**picked, "mode": ""}).status_code == 422
    assert client.post("/nodes/delete", data={**picked, "node-999999": "on"}).status_code == 404
    assert client.post("/nodes/delete", data={**picked, "csrf_token": "forged"}).status_code == 403
    confirm = client.post("/nodes/delete", data=picked)
    assert confirm.status_code == 200 and "Delete 2 nodes?" in confirm.text
    assert "web-1" in confirm.text and "db-1" in confirm.text and "keep-1" not in confirm.text
    with app_context.database.session() as session:
        assert session.query(Job).filter(Job.kind == RELEASE_KIND).count() == 0  # nothing before confirming
    done = client.post("/nodes/delete", data={**picked, "confirmed": "yes"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/nodes"
    with app_context.database.session() as session:
        jobs = session.query(Job).filter(Job.kind == RELEASE_KIND).all()
        assert sorted(j.resource_key for j in jobs) == sorted([f"node:{web}", f"node:{db}"])
        assert all(j.args["keep_server"] is False for j in jobs)
    # The released one cannot be released again: the others go on, the page names the refusal.
    mixed = {
        "csrf_token": csrf,
        f"node-{keep}": "on",
        f"node-{gone}": "on",
        "mode": "detach",
        "confirmed": "yes",
    }
    partly = client.post("/nodes/delete", data=mixed)
    assert (
        partly.status_code == 409 and 'data-testid="bulk-refused"' in partly.text and "old-1" in partly.text
    )
    assert "keep-1" in partly.text.split('data-testid="bulk-refused"')[0]  # listed as being released
    client.cookies.clear()
    viewer_csrf = login(client, "viewer-user")
    assert 'data-testid="bulk-form"' not in client.get("/nodes").text
    denied = client.post("/nodes/delete", data={**picked, "csrf_token": viewer_csrf})
    assert denied.status_code == 403


@pytest.mark.db_only("sqlite", reason="rendering only: the database part is the filter test's, run on both")
def test_create_form_errors_are_sentences_beside_their_field(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    provider = connect_sim(client, role_users[Role.admin].headers, sim)
    csrf = login(client, "operator-user")
    form = {
        "csrf_token": csrf,
        "provider_id": str(provider),
        "name": "Bad_Name",
        "location": "fsn1",
        "server_type": "cx23",
        "image": "ubuntu-24.04",
    }
    bad = client.post("/nodes", data=form)
    assert bad.status_code == 422
    field = re.search(r'data-testid="field-error-name">(.*?)<', bad.text)
    assert field is not None and field.group(1).startswith("Use 1 to 63 lowercase letters")
    assert "String should match pattern" not in bad.text and 'aria-invalid="true"' in bad.text
    assert 'value="Bad_Name"' in bad.text  # kept for correcting
    labels = client.post("/nodes", data={**form, "name": "ok-1", "labels": "no equals sign"})
    assert re.search(r'data-testid="field-error-labels">Write each label as key=value', labels.text)
    wrong_type = client.post("/nodes", data={**form, "name": "ok-1", "server_type": "cx9000"})
    assert wrong_type.status_code == 422 and 'data-testid="field-error-server_type"' in wrong_type.text
    # The name pattern in the page is valid for browsers (the v flag wants the hyphen escaped).
    assert 'pattern="[a-z0-9]([a-z0-9\\-]{0,61}[a-z0-9])?"' in bad.text


def test_overview_jobs_waiting_and_empty_states(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    login(client, "admin-user")
    overview = client.get("/").text
    assert 'data-testid="overview-empty"' in overview and 'href="/providers"' in overview
    nodes = client.get("/nodes").text
    assert "Connect a provider account on Providers" in nodes and 'href="/providers"' in nodes

    provider = connect_sim(client, role_users[Role.admin].headers, sim, name="main-project")
    assert (
        "Create the first one" in client.get("/nodes").text and 'href="#create"' in client.get("/nodes").text
    )
    ready = seed_node(app_context, provider, "web-1")
    failed = seed_node(app_context, provider, "web-2", "failed")
    seed_node(app_context, provider, "old", "released")
    overview = client.get("/").text
    stats = re.search(r'data-testid="stat-spend"><span class="value">([^<]+)<', overview)
    assert stats is not None and stats.group(1) == "9.02 EUR"
    by_status = re.search(r'data-testid="by-status">(.*?)</ul>', overview, re.S)
    assert by_status is not None
    assert re.search(
        r">ready</span></a> 1<", by_status.group(1)
    ) and ">failed</span></a> 1<" in by_status.group(1)
    attention = re.search(r'data-testid="attention">(.*?)</ul>', overview, re.S)
    assert attention is not None and f'href="/nodes/{failed}"' in attention.group(1)
    assert f'href="/nodes/{ready}"' not in attention.group(1)
    health = re.search(r'data-testid="provider-health">(.*?)</ul>', overview, re.S)
    assert health is not None and "main-project" in health.group(1) and ">ok<" in health.group(1)

    with app_context.database.session(write=True) as session:
        later = enqueue(
            session, "test.seeded", {}, run_after=utcnow() + dt.timedelta(minutes=30), max_attempts=3
        )
        session.flush()
        later_id = later.id
    jobs = client.get("/jobs").text
    waiting = re.search(rf'href="/jobs/{later_id}">.*?</tr>', jobs, re.S)
    assert waiting is not None
    assert re.search(
        r'data-testid="runs-at">runs at (\d{4}-\d\d-\d\d )?\d\d:\d\d UTC \(<time', waiting.group(0)
    )
    assert ">in 29 min<" in waiting.group(0) or ">in 30 min<" in waiting.group(0)
    assert "0/3" not in waiting.group(0)
    assert 'data-testid="runs-at">runs at ' in client.get(f"/jobs/{later_id}").text


@pytest.mark.db_only("sqlite", reason="rendering only: the database part is the filter test's, run on both")
def test_browsers_get_error_pages_api_clients_problems(
    client: TestClient, role_users: dict[Role, RoleUser]
) -> None:
    anonymous = client.get("/no-such-page", headers=HTML)
    assert anonymous.status_code == 404 and anonymous.headers["content-type"].startswith("text/html")
    assert (
        'data-testid="error-page"' in anonymous.text
        and "No route or resource at /no-such-page" in anonymous.text
    )
    login(client, "viewer-user")
    page = client.get("/no-such-page", headers=HTML)
    assert page.status_code == 404 and '<nav aria-label="Main">' in page.text  # the dashboard's layout
    bad_query = client.get("/nodes", params={"status": "x" * 40}, headers=HTML)
    assert bad_query.status_code == 422 and "text/html" in bad_query.headers["content-type"]
    method = client.put("/nodes", headers=HTML)
    assert (
        method.status_code == 405
        and "Allow" in method.headers
        and "text/html" in method.headers["content-type"]
    )

    api = client.get("/api/no-such-thing", headers=HTML)
    assert api.status_code == 404 and api.headers["content-type"] == "application/problem+json"
    json_client = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert json_client.headers["content-type"] == "application/problem+json"
    assert client.get("/no-such-page").headers["content-type"] == "application/problem+json"  # */*

    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/static/favicon.svg").status_code == 200
    assert 'rel="icon" href="/static/favicon.svg"' in client.get("/").text


@pytest.mark.db_only("sqlite", reason="rendering only: the database part is the filter test's, run on both")
def test_a_viewer_sees_no_mutation_control_on_any_page(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    provider = connect_sim(client, role_users[Role.admin].headers, sim)
    ready = seed_node(app_context, provider, "web-1")
    failed = seed_node(app_context, provider, "web-2", "failed", with_job=True)
    with app_context.database.session() as session:
        job_id = session.query(Job).filter(Job.kind == "test.seeded").one().id
    login(client, "viewer-user")
    pages = ["/", "/providers", f"/providers?catalog={provider}", "/nodes", "/nodes?released=1",
             f"/nodes/{ready}", f"/nodes/{failed}", "/jobs", f"/jobs/{job_id}", "/maintenance"]  # fmt: skip
    for path in pages:
        html = client.get(path).text
        posts = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', html)
        assert posts == ["/logout"], (path, posts)
        assert "<textarea" not in html, path
    for path in ("/webhooks", "/tokens"):
        assert client.get(path).status_code == 403
