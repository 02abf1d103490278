"""The /jobs pages: list with filters, detail with steps, log and error, cancel with CSRF and role."""

from __future__ import annotations

from fastapi.testclient import TestClient

from nodewright.context import AppContext
from nodewright.jobs.enqueue import enqueue
from nodewright.security.roles import Role
from tests.integration.test_dashboard_auth import login
from tests.support.apps import RoleUser
from tests.support.jobs import job_row, run_next


def _enqueue(ctx: AppContext, kind: str, args: dict[str, object], key: str) -> int:
    with ctx.database.session(write=True) as session:
        job = enqueue(session, kind, args, resource_key=key, created_by="user:admin-user")
        session.flush()
        return int(job.id)


def test_list_detail_and_error(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    failed = _enqueue(
        app_context,
        "test.fail",
        {
            "code": "quota_exceeded",
            "message": "project limit reached",
            "retryable": False,
            "hint": "raise the project limit",
        },
        "node:1",
    )
    assert run_next(app_context.database) == "failed"
    queued = _enqueue(app_context, "test.noop", {}, "node:2")
    login(client, "viewer-user")

    listing = client.get("/jobs").text
    assert f'href="/jobs/{failed}"' in listing and f'href="/jobs/{queued}"' in listing
    assert "quota_exceeded" in listing
    only_failed = client.get("/jobs?state=failed").text
    assert f'href="/jobs/{failed}"' in only_failed and f'href="/jobs/{queued}"' not in only_failed
    assert client.get("/jobs?state=bogus").status_code == 422

    detail = client.get(f"/jobs/{failed}").text
    assert "project limit reached" in detail and "raise the project limit" in detail
    assert "Not retryable." in detail
    assert "Cancel job" not in detail  # finished, and a viewer anyway
    assert client.get("/jobs/999999").status_code == 404


def test_cancel_needs_operator_and_csrf(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    job_id = _enqueue(app_context, "test.noop", {}, "node:3")
    csrf = login(client, "viewer-user")
    assert "Cancel job" not in client.get(f"/jobs/{job_id}").text
    assert client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf}).status_code == 403

    client.cookies.clear()
    csrf = login(client, "operator-user")
    assert "Cancel job" in client.get(f"/jobs/{job_id}").text
    assert client.post(f"/jobs/{job_id}/cancel", data={}).status_code == 403
    assert job_row(app_context.database, job_id).state == "queued"
    response = client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert job_row(app_context.database, job_id).state == "canceled"
    assert client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf}).status_code == 409
