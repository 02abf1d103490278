"""The /webhooks page (admin): add an endpoint (secret shown on that answer only), test event and
"send again" as CSRF-checked forms, the delivery log; lower roles are refused."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from nodewright.context import AppContext
from nodewright.jobs.registry import load_handler_modules
from nodewright.security.roles import Role
from tests.integration.test_dashboard_auth import login
from tests.integration.test_webhooks import drain, verify
from tests.support.apps import RoleUser
from tests.support.webhook_receiver import webhook_receiver

load_handler_modules()


def test_webhooks_page_flow(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    with webhook_receiver() as receiver:
        csrf = login(client, "admin-user")
        refused = client.post("/webhooks", data={"name": "x", "url": receiver.url, "csrf_token": "wrong"})
        assert refused.status_code == 403
        bad = client.post(
            "/webhooks", data={"name": "x", "url": "http://169.254.169.254/", "csrf_token": csrf}
        )
        assert bad.status_code == 422 and "(url)" in bad.text
        added = client.post(
            "/webhooks", data={"name": "page", "url": receiver.url, "events": "node.lost", "csrf_token": csrf}
        )
        assert added.status_code == 201, added.text
        secret = re.search(r"<code>(whsec_[^<]+)</code>", added.text)
        assert secret is not None
        page = client.get("/webhooks")
        assert page.status_code == 200 and secret.group(1) not in page.text and "page" in page.text
        hook = client.get("/api/webhooks", headers=role_users[Role.admin].headers).json()[0]
        tested = client.post(
            f"/webhooks/{hook['id']}/test", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert tested.status_code == 303
        assert drain(app_context) == ["succeeded"]
        assert verify(secret.group(1), receiver.received[0])
        log = client.get(f"/webhooks?endpoint={hook['id']}")
        assert "webhook.test" in log.text and "succeeded" in log.text
        delivery = client.get(
            f"/api/webhooks/{hook['id']}/deliveries", headers=role_users[Role.admin].headers
        )
        delivery_id = delivery.json()[0]["id"]
        again = client.post(
            f"/webhooks/{hook['id']}/deliveries/{delivery_id}/redeliver", data={"csrf_token": "wrong"}
        )
        assert again.status_code == 403
        again = client.post(
            f"/webhooks/{hook['id']}/deliveries/{delivery_id}/redeliver",
            data={"csrf_token": csrf},
            follow_redirects=False,
        )
        assert again.status_code == 303
        assert drain(app_context) == ["succeeded"]
        assert receiver.received[1].headers["webhook-id"] == receiver.received[0].headers["webhook-id"]
    client.cookies.clear()
    login(client, "operator-user")
    assert client.get("/webhooks").status_code == 403
