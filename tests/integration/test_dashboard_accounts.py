"""The dashboard's account pages: a password made for someone must be changed at the first sign-in
(nothing else is reachable until then), everyone changes their own password, admins manage users
on /users and read the audit log on /audit; viewers reach neither."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db.models import User
from nodewright.security import accounts, audit
from nodewright.security.roles import Role
from tests.integration.test_dashboard_auth import CSRF_RE, login
from tests.support.apps import RoleUser

NEW = "a-fresh-password-of-mine"


def _csrf(page: str) -> str:
    match = CSRF_RE.search(page)
    assert match, page[:400]
    return match.group(1)


def _flag(ctx: AppContext, username: str) -> bool:
    with ctx.database.session() as session:
        user = accounts.get_user(session, username)
        assert user is not None
        return bool(user.must_change_password)


def test_a_password_made_for_someone_is_changed_before_anything_else(
    client: TestClient, app_context: AppContext, settings: Settings
) -> None:
    with app_context.database.session(write=True) as session:
        made = accounts.bootstrap_admin(session)
    assert made is not None and _flag(app_context, "admin")
    csrf = login(client, "admin", made.password)
    for path in ("/", "/nodes", "/providers", "/users", "/jobs"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/account/password", path
    page = client.get("/account/password")
    assert "Choose your own before you go on" in page.text

    # A second session of the same user, to see it end.
    other = TestClient(create_app(settings, ctx=app_context, start_workers=False))
    login(other, "admin", made.password)

    def change(current: str, new: str, again: str) -> str:
        data = {"csrf_token": csrf, "current": current, "new": new, "again": again}
        response = client.post("/account/password", data=data, follow_redirects=False)
        assert response.status_code == 422, response.text
        return response.text

    assert "That is not your current password." in change("wrong-password-here", NEW, NEW)
    assert "The two new passwords differ." in change(made.password, NEW, NEW + "x")
    assert "at least 12 characters" in change(made.password, "short", "short")
    assert "other than the current one" in change(made.password, made.password, made.password)
    assert 'id="new-error"' in change(made.password, "short", "short")  # beside its field
    data = {"csrf_token": "forged", "current": made.password, "new": NEW, "again": NEW}
    forged = client.post("/account/password", data=data, follow_redirects=False)
    assert forged.status_code == 403

    done = client.post("/account/password", data={"csrf_token": csrf, "current": made.password, "new": NEW,
                                                  "again": NEW}, follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    assert "Your password was changed" in client.get(done.headers["location"]).text
    assert not _flag(app_context, "admin")
    assert client.get("/nodes", follow_redirects=False).status_code == 200  # this session goes on
    assert other.get("/nodes", follow_redirects=False).headers["location"] == "/login"  # the other ended
    with app_context.database.session() as session:
        actions = [(e.action, e.outcome) for e in audit.list_events(session, action="user.change_password")]
    assert actions == [("user.change_password", "ok"), ("user.change_password", "denied")]


def test_admins_manage_users_and_viewers_cannot(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], settings: Settings
) -> None:
    csrf = login(client, "admin-user")
    page = client.get("/users")
    assert page.status_code == 200 and "viewer-user" in page.text

    created = client.post("/users", data={"csrf_token": csrf, "username": "dana", "role": "operator"})
    assert created.status_code == 201
    password = re.search(r'data-testid="new-password">([^<]+)<', created.text)
    assert password and _flag(app_context, "dana")
    assert "dana" in client.get("/users").text and password.group(1) not in client.get("/users").text
    taken = client.post("/users", data={"csrf_token": csrf, "username": "dana", "role": "viewer"})
    assert taken.status_code == 409 and "already exists" in taken.text
    bad = client.post("/users", data={"csrf_token": csrf, "username": "Dana Smith", "role": "viewer"})
    assert bad.status_code == 422 and "Username must be" in bad.text

    dana = TestClient(create_app(settings, ctx=app_context, start_workers=False))
    login(dana, "dana", password.group(1))
    assert dana.get("/nodes", follow_redirects=False).headers["location"] == "/account/password"

    def act(username: str, **data: str) -> int:
        return client.post(
            f"/users/{username}", data={"csrf_token": csrf, **data}, follow_redirects=False
        ).status_code

    assert act("dana", action="role", role="viewer") == 303
    with app_context.database.session() as session:
        user = accounts.get_user(session, "dana")
        assert user is not None and user.role == "viewer"
    assert act("dana", action="role", role="root") == 422
    assert act("dana", action="disable") == 303
    assert dana.get("/account/password", follow_redirects=False).headers["location"] == "/login"
    assert act("dana", action="enable") == 303
    reset = client.post("/users/dana", data={"csrf_token": csrf, "action": "reset"})
    assert (
        reset.status_code == 200 and 'data-testid="new-password"' in reset.text and _flag(app_context, "dana")
    )
    assert act("nobody", action="disable") == 404
    last = client.post("/users/admin-user", data={"csrf_token": csrf, "action": "disable"})
    assert last.status_code == 409 and "last enabled admin" in last.text
    assert act("dana", action="explode") == 422
    assert client.post("/users/dana", data={"action": "disable"}).status_code == 403  # no CSRF token

    viewer = TestClient(create_app(settings, ctx=app_context, start_workers=False))
    viewer_csrf = login(viewer, "viewer-user")
    for path in ("/users", "/audit"):
        assert viewer.get(path).status_code == 403
    assert (
        viewer.post(
            "/users", data={"csrf_token": viewer_csrf, "username": "eve", "role": "admin"}
        ).status_code
        == 403
    )
    assert 'href="/users"' not in viewer.get("/nodes").text


def test_the_audit_page_filters_pages_and_escapes(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    with app_context.database.session(write=True) as session:
        for i in range(105):
            audit.record(session, actor="user:<script>x</script>", action="node.create", target=f"node:{i}",
                         outcome="ok")  # fmt: skip
        audit.record(session, actor="cli", action="gates.set", target="gate:provider_create", outcome="ok")
    login(client, "admin-user")
    page = client.get("/audit")
    assert page.status_code == 200 and "<script>x</script>" not in page.text and "&lt;script&gt;" in page.text
    assert "Older events" in page.text
    only = client.get("/audit", params={"action": "gates."})
    assert "gate:provider_create" in only.text and "node:104" not in only.text
    targets = client.get("/audit", params={"target": "node:7"})
    assert "node:7<" in targets.text and "node:70" not in targets.text
    older = re.search(r'href="(/audit\?[^"]*before=\d+)"', page.text)
    assert older and "node:0<" in client.get(older.group(1).replace("&amp;", "&")).text
    assert client.get("/audit", params={"before": "-1"}).status_code == 200  # ignored, not a 500
    assert "No events" in client.get("/audit", params={"actor": "nobody"}).text


def test_local_commands_mark_generated_passwords(app_context: AppContext) -> None:
    with app_context.database.session(write=True) as session:
        user = accounts.create_user(session, "erin", "a-password-erin-chose", Role.viewer)
        assert not user.must_change_password
        accounts.set_password(session, user, "generated-for-erin-1", must_change=True)
        assert session.get(User, user.id).must_change_password  # type: ignore[union-attr]
