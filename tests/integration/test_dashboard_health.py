# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""The dashboard's view of watching: health badges and the health filter on /nodes (and in the live
list's snapshot), the node page's current health, check timeline and daily roll-up, every string
from a node escaped, and the /maintenance page (viewer reads, operator starts and ends pauses,
CSRF-checked, bad input re-rendered naming the field).

Check outcomes are written by the watcher's own ``apply_result``, as a check job would."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from nodewright.context import AppContext
from nodewright.dashboard.nodes import _snapshot
from nodewright.db.models import Node
from nodewright.db.types import utcnow
from nodewright.provisioning.checks import CheckResult
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from nodewright.watching.outcome import apply_result
from nodewright.watching.policy import defaults
from tests.fixtures.sim import sim, sim_server  # noqa: F401
from tests.integration.test_dashboard_auth import login
from tests.support.apps import RoleUser
from tests.support.nodes import connect_sim

HOSTILE = '<script>alert("node")</script>'
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
FAIL = [
    CheckResult("ssh with the pinned host key", True, "SHA256:x"),
    CheckResult(HOSTILE_NAME, False, f"exit 1: {HOSTILE}"),
]
PASS = [CheckResult("ssh with the pinned host key", True, "SHA256:x")]


@dataclass(frozen=True)
class Fleet:
    degraded: int  # role=web, failed until degraded (hostile check output)
    passing: int  # role=db, one passing check
    failing: int  # role=db, one failed check: below the threshold
    unknown: int  # ready, never checked
    unwatched: int  # still provisioning


def add_node(ctx: AppContext, provider_id: int, name: str, status: str, labels: dict[str, str]) -> int:
    ready_at = utcnow() - dt.timedelta(days=1) if status == "ready" else None
    with ctx.database.session(write=True) as session:
        node = Node(
            name=name, contract="provider/v1", provider_id=provider_id, location="fsn1", server_type="cx23",
            image="ubuntu-24.04", labels=labels, profile="baseline", ssh_authorized_keys=[], status=status,
            evidence={}, created_by="test", ready_at=ready_at,
        )  # fmt: skip
        session.add(node)
        session.flush()
        return node.id


def check(ctx: AppContext, node_id: int, results: list[CheckResult]) -> str | None:
    with ctx.database.session(write=True) as session:
        outcome = apply_result(
            session, node_id, results, seconds=0.25, policy=defaults(ctx.settings), now=utcnow()
        )
        return outcome.transition


@pytest.fixture
def fleet(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> Fleet:
    provider_id = connect_sim(client, role_users[Role.admin].headers, sim)
    fleet = Fleet(
        degraded=add_node(app_context, provider_id, "web-1", "ready", {"role": "web"}),
        passing=add_node(app_context, provider_id, "db-1", "ready", {"role": "db"}),
        failing=add_node(app_context, provider_id, "db-2", "ready", {"role": "db"}),
        unknown=add_node(app_context, provider_id, "db-3", "ready", {"role": "db"}),
        unwatched=add_node(app_context, provider_id, "new-1", "provisioning", {"role": "db"}),
    )
    threshold = defaults(app_context.settings).failures_before_degraded
    transitions = [check(app_context, fleet.degraded, FAIL) for _ in range(threshold)]
    assert transitions[-1] == "degraded"
    check(app_context, fleet.passing, PASS)
    check(app_context, fleet.failing, FAIL)
    return fleet


def row(html: str, node_id: int) -> str:
    found = re.search(rf'<tr data-node-id="{node_id}">(.*?)</tr>', html, re.S)
    assert found is not None, f"no row for node {node_id}"
    return found.group(1)


def health_of_row(html: str, node_id: int) -> str:
    found = re.search(r'<span class="health health-(\w+)" data-field="health"', row(html, node_id))
    assert found is not None
    return found.group(1)


def paused_marker_shown(html: str, node_id: int) -> bool:
    found = re.search(r'<span class="health health-paused" data-field="paused"[^>]*>', row(html, node_id))
    assert found is not None
    return " hidden" not in found.group(0)


def listed(html: str) -> set[int]:
    return {int(i) for i in re.findall(r'<tr data-node-id="(\d+)">', html)}


def test_health_badges_and_filter(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], fleet: Fleet
) -> None:
    login(client, "viewer-user")
    page = client.get("/nodes")
    assert page.status_code == 200
    html = page.text
    assert "<th>Health</th>" in html
    expected = {
        fleet.degraded: "degraded",
        fleet.passing: "passing",
        fleet.failing: "failing",
        fleet.unknown: "unknown",
        fleet.unwatched: "unwatched",
    }
    assert {node_id: health_of_row(html, node_id) for node_id in expected} == expected
    # The title says what failed and since when; the node's text is escaped, never markup.
    degraded_row = row(html, fleet.degraded)
    assert 'title="degraded since ' in degraded_row
    assert (
        "&lt;img src=x onerror=alert(1)&gt;: exit 1: &lt;script&gt;alert(&#34;node&#34;)&lt;/script&gt;"
        in (degraded_row)
    )
    assert "failing since " in row(html, fleet.failing) and "(1 in a row)" in row(html, fleet.failing)
    assert HOSTILE not in html and HOSTILE_NAME not in html
    assert not any(paused_marker_shown(html, node_id) for node_id in expected)
    assert 'data-testid="brake-banner"' not in html  # the brake's spot is empty while none is engaged

    for node_id, health in expected.items():
        filtered = client.get("/nodes", params={"health": health})
        assert filtered.status_code == 200
        assert listed(filtered.text) == {node_id}, health
        assert f'<option value="{health}" selected>' in filtered.text
    assert listed(client.get("/nodes", params={"health": "", "status": ""}).text) == set(expected)
    assert listed(client.get("/nodes", params={"health": "degraded", "status": "ready"}).text) == set()
    bad = client.get("/nodes", params={"health": "<b>sick</b>"})
    assert bad.status_code == 422
    assert "health:" in bad.text and "&lt;b&gt;sick&lt;/b&gt;" in bad.text and "<b>sick</b>" not in bad.text
    assert client.get("/nodes", params={"health": "x" * 40}).status_code == 422

    # A pause over role=web: the marker shows on that node only, and the paused filter finds it.
    pause = {"selector": {"role": "web"}, "reason": "kernel upgrade", "duration_seconds": 3600}
    created = client.post("/api/maintenance", json=pause, headers=role_users[Role.operator].headers)
    assert created.status_code == 201, created.text
    html = client.get("/nodes").text
    assert paused_marker_shown(html, fleet.degraded)
    assert not paused_marker_shown(html, fleet.passing)
    assert "kernel upgrade" in row(html, fleet.degraded) and "role=web" in row(html, fleet.degraded)
    assert listed(client.get("/nodes", params={"health": "paused"}).text) == {fleet.degraded}

    # The live list's snapshot carries the same health (the /nodes/live stream sends these rows).
    snapshot = _snapshot(app_context)
    assert {node_id: snapshot[node_id]["health"]["state"] for node_id in expected} == expected
    assert snapshot[fleet.degraded]["health"]["paused"] is True
    assert snapshot[fleet.passing]["health"]["paused"] is False
    assert HOSTILE in snapshot[fleet.degraded]["health"]["title"]  # plain text: the script sets .title
    client.delete(f"/api/maintenance/{created.json()['id']}", headers=role_users[Role.operator].headers)
    assert _snapshot(app_context)[fleet.degraded]["health"]["paused"] is False


def test_node_page_health_timeline_and_days(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], fleet: Fleet
) -> None:
    operator = role_users[Role.operator].headers
    pause = {"node_id": fleet.degraded, "reason": f"disk swap {HOSTILE}", "duration_seconds": 600}
    assert client.post("/api/maintenance", json=pause, headers=operator).status_code == 201
    assert check(app_context, fleet.degraded, PASS) is None  # paused: recorded, no consequence
    threshold = defaults(app_context.settings).failures_before_degraded

    login(client, "viewer-user")
    page = client.get(f"/nodes/{fleet.degraded}")
    assert page.status_code == 200
    html = page.text
    assert HOSTILE not in html and HOSTILE_NAME not in html
    badge = re.search(r'data-testid="health-badge" title="([^"]*)">(\w+)<', html)
    assert badge is not None and badge.group(2) == "degraded"
    assert "degraded since" in badge.group(1)
    assert 'data-testid="paused-marker"' in html
    pause_box = re.search(r'data-testid="node-pause">(.*?)</div>', html, re.S)
    assert pause_box is not None
    assert "disk swap &lt;script&gt;" in pause_box.group(1) and "user:operator-user" in pause_box.group(1)
    assert "this node" in pause_box.group(1)
    failed = re.search(r'data-testid="last-failure">(.*?)</ul>', html, re.S)
    assert failed is not None
    assert "&lt;img src=x onerror=alert(1)&gt;" in failed.group(1) and "&lt;script&gt;" in failed.group(1)

    checks = re.findall(r'<tr class="check-(ok|failed)" data-check-id="\d+">(.*?)</tr>', html, re.S)
    assert [result for result, _ in checks] == ["ok"] + ["failed"] * threshold  # newest first
    newest = checks[0][1]
    assert "paused" in newest and "0.25" in newest and "1 of 1 passed" in newest
    oldest = checks[-1][1]
    assert "1 of 2 passed" in oldest and "&lt;script&gt;alert(&#34;node&#34;)&lt;/script&gt;" in oldest
    assert "paused" not in oldest
    strip = re.findall(r'<li class="check-(ok|failed)( check-paused)?"', html)
    assert [r for r, _ in strip] == ["failed"] * threshold + ["ok"]  # oldest first
    assert strip[-1][1] == " check-paused"
    today = utcnow().date().isoformat()
    day = re.search(rf'<tr data-day="{today}"><td>{today}</td><td>(\d+)</td><td[^>]*>(\d+)</td>', html)
    assert day is not None and (int(day.group(1)), int(day.group(2))) == (1, threshold)
    assert 'data-testid="pause-link"' not in html  # a viewer starts no pause

    never = client.get(f"/nodes/{fleet.unknown}").text
    assert 'data-testid="no-checks"' in never and ">unknown<" in never
    unwatched = client.get(f"/nodes/{fleet.unwatched}").text
    assert ">unwatched<" in unwatched and "not watched while the node is provisioning" in unwatched

    client.cookies.clear()
    login(client, "operator-user")
    passing = client.get(f"/nodes/{fleet.passing}").text
    assert f'href="/maintenance?node={fleet.passing}"' in passing
    form = client.get(f"/maintenance?node={fleet.passing}").text
    assert f'<option value="{fleet.passing}" selected>' in form


def pauses(client: TestClient, headers: dict[str, str]) -> list[dict[str, object]]:
    items: list[dict[str, object]] = client.get("/api/maintenance?all=true", headers=headers).json()["items"]
    return items


def test_maintenance_page_start_and_end(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], fleet: Fleet
) -> None:
    viewer_headers = role_users[Role.viewer].headers
    csrf = login(client, "viewer-user")
    page = client.get("/maintenance")
    assert page.status_code == 200 and 'href="/maintenance"' in page.text  # in the nav
    assert 'data-testid="pause-form"' not in page.text and 'data-testid="no-pauses"' in page.text
    form = {
        "node_id": str(fleet.passing),
        "reason": "viewer tries",
        "duration_minutes": "30",
        "csrf_token": csrf,
    }
    assert client.post("/maintenance", data=form).status_code == 403
    assert pauses(client, viewer_headers) == []

    client.cookies.clear()
    csrf = login(client, "operator-user")
    assert 'data-testid="pause-form"' in client.get("/maintenance").text
    refused = client.post("/maintenance", data={**form, "reason": "no csrf", "csrf_token": "forged"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert (
        client.post("/maintenance", data={k: v for k, v in form.items() if k != "csrf_token"}).status_code
        == 403
    )
    assert pauses(client, viewer_headers) == []

    started = client.post(
        "/maintenance",
        data={
            "selector": "role=db",
            "reason": f"rack move {HOSTILE}",
            "duration_minutes": "90",
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert started.status_code == 303 and started.headers["location"] == "/maintenance"
    (window,) = pauses(client, viewer_headers)
    assert window["selector"] == {"role": "db"} and window["active"] is True
    assert window["created_by"] == "user:operator-user" and window["reason"] == f"rack move {HOSTILE}"
    ends_at = dt.datetime.fromisoformat(str(window["ends_at"]))
    assert dt.timedelta(minutes=89) < ends_at - utcnow() <= dt.timedelta(minutes=90)
    listing = client.get("/maintenance").text
    assert HOSTILE not in listing and "rack move &lt;script&gt;" in listing
    shown = re.search(rf'<tr data-pause-id="{window["id"]}">(.*?)</tr>', listing, re.S)
    assert shown is not None
    for name in ("db-1", "db-2", "db-3", "new-1"):
        assert f">{name}</a>" in shown.group(1)  # the nodes the selector covers now
    assert ">web-1</a>" not in shown.group(1)
    # From and until as relative times, the exact moment on hover.
    assert ">just now</time>" in shown.group(1) and ">in 1 h</time>" in shown.group(1)
    nodes = client.get("/nodes").text
    assert paused_marker_shown(nodes, fleet.passing) and not paused_marker_shown(nodes, fleet.degraded)

    assert client.post(f"/maintenance/{window['id']}/end", data={"csrf_token": "forged"}).status_code == 403
    assert pauses(client, viewer_headers)[0]["active"] is True
    client.cookies.clear()
    viewer_csrf = login(client, "viewer-user")
    assert (
        client.post(f"/maintenance/{window['id']}/end", data={"csrf_token": viewer_csrf}).status_code == 403
    )
    assert "End now" not in client.get("/maintenance").text
    client.cookies.clear()
    csrf = login(client, "operator-user")
    ended = client.post(f"/maintenance/{window['id']}/end", data={"csrf_token": csrf}, follow_redirects=False)
    assert ended.status_code == 303
    (window,) = pauses(client, viewer_headers)
    assert window["active"] is False  # ended early, the record kept
    assert 'data-testid="no-pauses"' in client.get("/maintenance").text
    assert "ended" in client.get("/maintenance?all=true").text
    assert client.post("/maintenance/999999/end", data={"csrf_token": csrf}).status_code == 404
    assert not paused_marker_shown(client.get("/nodes").text, fleet.passing)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"node_id": "NODE", "selector": "role=db", "reason": "x", "duration_minutes": "30"}, "node_id"),
        ({"reason": "x", "duration_minutes": "30"}, "node_id"),
        ({"node_id": "999999", "reason": "x", "duration_minutes": "30"}, "node_id"),
        ({"node_id": "1.0", "reason": "x", "duration_minutes": "30"}, "node_id"),
        ({"selector": "role", "reason": "x", "duration_minutes": "30"}, "selector"),
        ({"selector": "role=db=x", "reason": "x", "duration_minutes": "30"}, "selector"),
        ({"selector": "role=db", "reason": "   ", "duration_minutes": "30"}, "reason"),
        ({"selector": "role=db", "reason": "x" * 501, "duration_minutes": "30"}, "reason"),
        ({"selector": "role=db", "reason": "x", "duration_minutes": "0"}, "duration_minutes"),
        ({"selector": "role=db", "reason": "x", "duration_minutes": "soon"}, "duration_minutes"),
        ({"selector": "role=db", "reason": "x", "duration_minutes": str(90 * 1440 + 1)}, "duration_minutes"),
        ({"selector": "role=db", "reason": "x"}, "duration_minutes"),
    ],
)
def test_bad_pause_input_is_422_naming_the_field(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    fleet: Fleet,
    fields: dict[str, str],
    field: str,
) -> None:
    csrf = login(client, "operator-user")
    node_ids = {"NODE": str(fleet.passing)}
    sent = {k: node_ids.get(v, v) for k, v in fields.items()}
    response = client.post("/maintenance", data={**sent, "csrf_token": csrf})
    assert response.status_code == 422, response.text
    error = re.search(r'data-testid="pause-error" data-field="(\w*)">([^<]*)<', response.text)
    assert error is not None, response.text
    assert error.group(1) == field and f"{field}:" in error.group(2)
    assert 'data-testid="pause-form"' in response.text  # the form again, with what was typed
    if sent.get("selector"):
        assert (
            f'name="selector" maxlength="1000" placeholder="role=web" value="{sent["selector"]}"'
            in response.text
        )
    assert pauses(client, role_users[Role.viewer].headers) == []
