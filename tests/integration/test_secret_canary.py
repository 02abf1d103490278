"""A canary secret goes in through every input path; it must come out of no output path.

Output paths covered: API responses, dashboard pages, the audit log, log records (captured at the
root logger), problem responses, the database in plaintext, and ``nodewright smoke``'s summary.md
and JUnit report. Each later feature that adds an output path adds it here. Whole node lifecycles
(real processes, sshd nodes, Ansible; process environments and command lines, files left behind;
a real ``nodewright smoke`` run and its reports) are in tests/e2e/test_secret_canary_cycle.py;
the CLI's (every format of the commands that show a connection, its audit and jobs; the process
that reads a provider token; login's contexts) in tests/integration/test_cli_groups.py and
tests/integration/test_cli_contexts.py.
"""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from nodewright.cli import smoke_report
from nodewright.cli.smoke_report import SmokeRun
from nodewright.context import AppContext
from nodewright.db.models import ProviderConnection
from nodewright.providers.acquisition import (
    NodeServerSpec,
    acquire_server,
    generate_host_key,
    load_client_private_key,
)
from nodewright.providers.connections import connection_info, forget_catalog
from nodewright.providers.registry import make_adapter
from nodewright.security.redaction import RedactingFilter, install_logging_filter
from nodewright.security.roles import Role
from nodewright.sim.control_client import SimControl
from nodewright.sim.server import SimServer
from tests.fixtures.sim import sim, sim_server  # noqa: F401
from tests.integration.test_dashboard_auth import login
from tests.integration.test_provider_acquire import StepLog
from tests.support.apps import RoleUser
from tests.support.canary import database_dump

CANARY = "nodewright-canary-5b1d7e0c9a8f4e2d-DO-NOT-LEAK"


def test_canary_never_leaks(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin = role_users[Role.admin]
    outputs: list[str] = []
    install_logging_filter(logging.getLogger())  # as configure_logging does in every entry point
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.DEBUG):
        # Input path 1: a stored secret (provider tokens and SSH keys take this path).
        with app_context.database.session(write=True) as session:
            secret_id = app_context.box.store(session, "provider_token", CANARY).id
        with app_context.database.session() as session:
            assert app_context.box.load(session, secret_id).reveal() == CANARY
        logging.getLogger("nodewright.test").info("loaded secret %s", app_context.box)

        # Input path 2: an API token, shown exactly once at creation.
        created = client.post(
            "/api/tokens", json={"username": "viewer-user", "name": "canary"}, headers=admin.headers
        )
        assert created.status_code == 201
        api_token = created.json()["token"]
        assert client.get("/api/me", headers={"Authorization": f"Bearer {api_token}"}).status_code == 200

        # Input path 3: a password, and secrets sent where they do not belong (echo attempts).
        outputs.append(
            client.post(
                "/api/users",
                json={"username": "canary-user", "role": "viewer", "password": CANARY},
                headers=admin.headers,
            ).text
        )
        outputs.append(
            client.post(
                "/api/users",
                json={"username": CANARY, "role": "viewer", "password": "long enough pw 1"},
                headers=admin.headers,
            ).text
        )
        outputs.append(
            client.post(
                "/api/users",
                json={"username": "u", "role": "viewer", "password": CANARY, "extra": CANARY},
                headers=admin.headers,
            ).text
        )
        outputs.append(client.get("/api/me", headers={"Authorization": f"Bearer {CANARY}"}).text)
        outputs.append(client.get(f"/api/nope/{CANARY}").text)

        # Input path 4: a secret typed into the sign-in form's user field and as the password,
        # until the throttle answers (refused sign-ins and throttled ones are audited).
        for _ in range(7):
            form_page = client.get("/login")
            token = form_page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            outputs.append(
                client.post("/login", data={"username": CANARY, "password": CANARY, "csrf_token": token}).text
            )
        # Output path: a live event stream (the API token authenticates it).
        from nodewright.jobs.enqueue import enqueue
        from nodewright.jobs.registry import registry

        with app_context.database.session(write=True) as session:
            job = enqueue(session, "nodewright.noop", {}, registry=registry)
            session.flush()
            job.state = "succeeded"
            job_id = job.id
        stream = client.get(
            f"/api/jobs/{job_id}/events", headers={**admin.headers, "Accept": "text/event-stream"}
        )
        assert stream.status_code == 200 and "queued" in stream.text
        outputs.append(stream.text)
        for path in ("/api/users", "/api/tokens", "/api/audit?limit=500", "/api/me", "/metrics", "/readyz"):
            response = client.get(path, headers=admin.headers)
            assert response.status_code == 200
            outputs.append(response.text)
        # A password an admin sets for someone over HTTP is never echoed.
        reset = client.post(
            "/api/users/canary-user/password", json={"password": CANARY}, headers=admin.headers
        )
        assert reset.status_code == 200
        outputs.append(reset.text)
        csrf = login(client, "admin-user")
        # The account pages (a canary typed as the current and the new password) and the audit page,
        # which lists the refused sign-ins above.
        outputs.append(
            client.post("/account/password",
                        data={"csrf_token": csrf, "current": CANARY, "new": CANARY, "again": CANARY}).text
        )  # fmt: skip
        for page in ("/", "/tokens", "/users", "/account/password", "/audit", "/audit?outcome=denied"):
            outputs.append(client.get(page).text)

    everything = "\n".join(outputs)
    db_text = database_dump(app_context.database)
    for name, secret in (("stored secret", CANARY), ("API token", api_token)):
        assert secret not in everything, f"{name} in an API response or page"
        assert secret not in caplog.text, f"{name} in a log record"
        assert secret not in db_text, f"{name} in the database in plaintext"
    # Also folded to lower case, as the sign-in throttle folds what is typed into the user field.
    assert CANARY.lower() not in db_text.lower(), "stored secret in the database, case folded"


# A provider token is 64 letters and digits; the canaries are, so the simulator accepts them.
PROVIDER_CANARY = ("NodewrightProviderCanaryDoNotLeak" + "x" * 64)[:64]
ROTATED_CANARY = ("NodewrightRotatedCanaryDoNotLeak" + "y" * 64)[:64]
READ_ONLY_CANARY = ("NodewrightReadOnlyCanaryDoNotLeak" + "z" * 64)[:64]
REVOKED_CANARY = ("NodewrightRevokedCanaryDoNotLeak" + "w" * 64)[:64]


def test_provider_token_canary_never_leaks(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    caplog: pytest.LogCaptureFixture,
    sim: SimServer,  # noqa: F811
) -> None:
    """Connect, check, rotate, refused tokens, catalog, a server acquired with the connection's
    client key and a node host key: the tokens and private keys appear nowhere but encrypted."""
    admin = role_users[Role.admin].headers
    control = SimControl(sim.base_url)
    control.register_token(READ_ONLY_CANARY, "read_only")
    control.register_token(REVOKED_CANARY, "revoked")
    endpoint = sim.base_url + "/v1"
    outputs: list[str] = []
    install_logging_filter(logging.getLogger())
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.DEBUG):
        created = client.post(
            "/api/providers",
            json={"kind": "hetzner", "name": "canary", "token": PROVIDER_CANARY, "api_endpoint": endpoint},
            headers=admin,
        )
        assert created.status_code == 201
        pid = created.json()["id"]
        outputs.append(created.text)
        for bad in (READ_ONLY_CANARY, REVOKED_CANARY):
            refused = client.post(
                "/api/providers",
                json={"kind": "hetzner", "name": "refused", "token": bad, "api_endpoint": endpoint},
                headers=admin,
            )
            assert refused.status_code == 422
            outputs.append(refused.text)
            refusal = str(refused.json()["detail"])
            outputs.append(client.patch(f"/api/providers/{pid}", json={"token": bad}, headers=admin).text)
        outputs.append(client.post(f"/api/providers/{pid}/check", headers=admin).text)
        outputs.append(client.get(f"/api/providers/{pid}/catalog", headers=admin).text)
        host_key = generate_host_key()
        result = acquire_server(
            StepLog(),
            app_context.database,
            app_context.box,
            NodeServerSpec(pid, 1, "canary-node", "fsn1", "cx23", "ubuntu-24.04"),
            host_key,
        )
        outputs.append(json.dumps(result.evidence.to_dict()))
        outputs.append(json.dumps(result.target.to_dict()))
        # A snapshot of that server (the nodes.snapshot job's provider part) and the catalog that
        # then lists it: the steps' recorded calls and the image go into job results and pages.
        steps = StepLog()
        assert result.evidence.server_id is not None
        with app_context.database.session() as session:
            row = session.get(ProviderConnection, pid)
            assert row is not None
            info = connection_info(app_context.box, session, row)
        adapter = make_adapter(info, database=app_context.database)
        try:
            snapshot = adapter.snapshot(result.evidence.server_id, "canary snapshot", steps)
        finally:
            adapter.close()
        outputs.append(json.dumps({**snapshot.to_dict(), "steps": steps.completed_steps}, default=str))
        forget_catalog(app_context.database, pid)
        listed = client.get(f"/api/providers/{pid}/catalog", headers=admin).text
        assert str(snapshot.id) in listed
        outputs.append(listed)
        # `nodewright smoke`'s reports, from the same answers: the connection, the acquisition's
        # evidence (its provider calls) and a refusal the provider's error text went into.
        run = SmokeRun(
            name="canary-node",
            request={"provider_id": pid, "location": "fsn1", "server_type": "cx23", "image": "ubuntu-24.04"},
            provider=client.get(f"/api/providers/{pid}", headers=admin).json(),
            evidence={"acquisition": result.evidence.to_dict()},
            error=refusal,
        )
        summary_md, junit = smoke_report.markdown(run), smoke_report.junit(run).decode()
        assert "canary (id" in summary_md and "| POST   | /servers " in summary_md
        assert 'name="provider connection" value="canary (id' in junit
        outputs += [summary_md, junit]
        client_private = load_client_private_key(app_context.database, app_context.box, pid).reveal()
        rotated = client.patch(f"/api/providers/{pid}", json={"token": ROTATED_CANARY}, headers=admin)
        assert rotated.status_code == 200
        outputs.append(rotated.text)
        control.add_fault("non_json", path="/v1/*", status=503, count=None)
        outputs.append(client.post(f"/api/providers/{pid}/check", headers=admin).text)
        control.clear_faults()
        for path in ("/api/providers", f"/api/providers/{pid}", "/api/audit?limit=500"):
            outputs.append(client.get(path, headers=admin).text)
        csrf = login(client, "admin-user")
        outputs.append(
            client.post(
                "/providers",
                data={"csrf_token": csrf, "name": "form", "token": REVOKED_CANARY, "api_endpoint": endpoint},
            ).text
        )
        outputs.append(
            client.post(f"/providers/{pid}/rotate", data={"csrf_token": csrf, "token": READ_ONLY_CANARY}).text
        )
        for page in ("/providers", f"/providers?catalog={pid}", "/", "/nodes", "/nodes?released=1"):
            outputs.append(client.get(page).text)
        outputs.append(client.get("/no-such-page", headers={"Accept": "text/html"}).text)
    outputs.append(json.dumps(control.requests(limit=1000)))

    everything = "\n".join(outputs)
    db_text = database_dump(app_context.database)
    secrets = {
        "provider token": PROVIDER_CANARY,
        "rotated token": ROTATED_CANARY,
        "read-only token": READ_ONLY_CANARY,
        "revoked token": REVOKED_CANARY,
        "host private key": host_key.private_openssh.reveal(),
        "client private key": client_private,
    }
    for name, secret in secrets.items():
        assert secret not in everything, f"{name} in an API response, page or evidence"
        assert secret not in caplog.text, f"{name} in a log record"
        assert secret not in db_text, f"{name} in the database in plaintext"


def test_webhook_secret_is_shown_once_and_never_again(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    caplog: pytest.LogCaptureFixture,
    sim: SimServer,  # noqa: F811
) -> None:
    """The whsec secret appears in the create (and rotate) answer only: not in later API answers,
    pages, deliveries (body and headers), job events, logs or the database in plaintext. Nor does it,
    or the provider token, reach the watching routes or the node alerts: a node watched into
    ``degraded`` (by a check whose output carries the secret, as a careless check command could
    print it), paused, and recovered, its ``node.degraded`` and ``node.recovered`` deliveries sent."""
    from sqlalchemy import text as sql

    from nodewright import alerts
    from nodewright.jobs.registry import load_handler_modules
    from nodewright.jobs.registry import registry as default_registry
    from nodewright.provisioning.checks import CheckResult
    from tests.integration.test_nodes_reconcile import add_node
    from tests.integration.test_watching import PASS, apply
    from tests.support.jobs import run_next
    from tests.support.webhook_receiver import webhook_receiver

    load_handler_modules()
    admin = role_users[Role.admin].headers
    outputs: list[str] = []
    provider = client.post(
        "/api/providers",
        json={"kind": "hetzner", "name": "canary", "token": PROVIDER_CANARY, "api_endpoint": sim.api_url},
        headers=admin,
    )
    assert provider.status_code == 201, provider.text
    node_id = add_node(app_context, provider.json()["id"], "canary-web", "ready", None)
    install_logging_filter(logging.getLogger())
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.DEBUG), webhook_receiver() as receiver:
        created = client.post("/api/webhooks", json={"name": "canary", "url": receiver.url}, headers=admin)
        assert created.status_code == 201
        first = created.json()["secret"]
        hook_id = created.json()["id"]
        rotated = client.post(f"/api/webhooks/{hook_id}/rotate", json={}, headers=admin)
        second = rotated.json()["secret"]
        assert first.startswith("whsec_") and second.startswith("whsec_") and first != second
        with app_context.database.session(write=True) as session:
            # A caller that puts the secret into an event's data by mistake: redacted.
            alerts.emit(session, "node.lost", {"reason": f"oops {second}"})
        client.post(f"/api/webhooks/{hook_id}/test", headers=admin)
        # The watcher: three failed checks whose output carries both secrets -> degraded (a
        # node.degraded delivery); a pause, read back and ended; two passes -> node.recovered.
        leaky = [CheckResult("app answers", False, f"curl: token {PROVIDER_CANARY} hook {second}")]
        assert [apply(app_context, node_id, leaky) for _ in range(3)] == [None, None, "degraded"]
        pause = client.post(
            "/api/maintenance",
            json={"node_id": node_id, "reason": "canary pause", "duration_seconds": 600},
            headers=role_users[Role.operator].headers,
        )
        assert pause.status_code == 201, pause.text
        outputs.append(pause.text)
        for path in ("/api/maintenance", "/api/nodes?health=paused", f"/api/nodes/{node_id}/health"):
            outputs.append(client.get(path, headers=admin).text)
        ended = client.delete(
            f"/api/maintenance/{pause.json()['id']}", headers=role_users[Role.operator].headers
        )
        assert ended.status_code == 200
        assert [apply(app_context, node_id, PASS) for _ in range(2)] == [None, "recovered"]
        assert apply(app_context, node_id, leaky) is None  # failing again: its output is in the health
        while run_next(app_context.database, registry=default_registry) is not None:
            pass
        types = [json.loads(m.body)["type"] for m in receiver.received]
        assert types == ["node.lost", "webhook.test", "node.degraded", "node.recovered"], types
        degraded = json.loads(receiver.received[2].body)["data"]
        assert "[REDACTED]" in degraded["reason"] and "curl: token" in degraded["reason"]
        outputs.extend(m.body.decode() + json.dumps(m.headers) for m in receiver.received)
        health = client.get(f"/api/nodes/{node_id}/health", headers=admin).json()
        assert health["health"]["health"] == "failing" and len(health["checks"]) == 6
        assert "curl: token [REDACTED]" in json.dumps(health)  # the check's output, redacted
        for path in (
            "/api/webhooks",
            f"/api/webhooks/{hook_id}",
            f"/api/webhooks/{hook_id}/deliveries",
            "/api/jobs",
            "/api/audit?limit=500",
            f"/api/nodes/{node_id}",
            f"/api/nodes/{node_id}/health?limit=500",
            "/api/maintenance?all=true",
            "/api/nodes?health=failing",
            "/api/nodes?health=degraded",
            "/api/nodes",
            "/api/brakes",
        ):
            response = client.get(path, headers=admin)
            assert response.status_code == 200
            outputs.append(response.text)
        with app_context.database.session() as session:
            job_ids = list(session.execute(sql("SELECT id FROM jobs")).scalars())
        for job_id in job_ids:
            outputs.append(client.get(f"/api/jobs/{job_id}/events", headers=admin).text)
        login(client, "admin-user")
        outputs.append(client.get("/webhooks").text)
        outputs.append(client.get(f"/webhooks?endpoint={hook_id}").text)
        outputs.append(client.get(f"/nodes/{node_id}").text)
        outputs.append(client.get("/nodes").text)
        outputs.append(client.get("/").text)
        outputs.append(client.get("/nodes/rows", params={"ids": str(node_id), "released": "1"}).text)
    everything = "\n".join(outputs)
    assert "canary pause" in everything and "node.recovered" in everything  # what was read is there
    db_text = database_dump(app_context.database)
    for name, secret in (("first secret", first), ("rotated secret", second), ("token", PROVIDER_CANARY)):
        key = secret.removeprefix("whsec_")
        assert key not in everything, f"{name} in an output"
        assert key not in caplog.text, f"{name} in a log record"
        assert key not in db_text, f"{name} in the database in plaintext"
