# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""``nodewright webhooks ...``, ``nodewright maintenance ...``, ``nodewright nodes health`` and
``nodewright nodes list --health`` as an operator runs them: the command (in the test's process)
against a real server on loopback (uvicorn in a thread), a real webhook receiver, the real delivery job.

The signing secret is printed by ``create`` and ``rotate`` alone (its last line); every other
command's output, human or ``--json``, is searched for it. Refusals are one clear message and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import hcloud
import pytest
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db.models import Node
from nodewright.jobs.registry import load_handler_modules
from nodewright.jobs.registry import registry as default_registry
from nodewright.security.roles import Role
from tests.fixtures.sim import sim, sim_server  # noqa: F401
from tests.integration.test_nodes_reconcile import add_node, setup  # noqa: F401
from tests.integration.test_watching import FAIL, apply
from tests.integration.test_webhooks import verify
from tests.support.apps import RoleUser
from tests.support.cli import Done, invoke
from tests.support.jobs import run_next
from tests.support.live_server import live_server
from tests.support.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.db_only(
    "sqlite", reason="the CLI talks HTTP; the database behind it is covered by the API tests"
)
load_handler_modules()


@dataclass
class Served:
    url: str
    users: dict[Role, RoleUser]
    ctx: AppContext
    client: TestClient

    def run(self, args: list[str], role: Role | None = Role.admin) -> Done:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
        env["NODEWRIGHT_URL"] = self.url
        if role is not None:
            env["NODEWRIGHT_TOKEN"] = self.users[role].token
        return invoke(args, env)


@pytest.fixture
def served(settings: Settings, app_context: AppContext, role_users: dict[Role, RoleUser]) -> Iterator[Served]:
    app = create_app(settings, ctx=app_context, start_workers=False)
    with TestClient(app) as client, live_server(app) as url:
        yield Served(url, role_users, app_context, client)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def ok(result: Done) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def refused(result: Done, code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("error"), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


def drain(ctx: AppContext) -> list[str]:
    outcomes = []
    while (outcome := run_next(ctx.database, registry=default_registry)) is not None:
        outcomes.append(outcome)
    return outcomes


def test_webhooks_commands_show_the_secret_once(served: Served, receiver: Receiver) -> None:
    created = ok(served.run(["webhooks", "create", "--name", "ops", "--endpoint", receiver.url,
                             "--event", "node.degraded", "--event", "node.recovered"]))  # fmt: skip
    *lines, secret = created.strip().splitlines()
    assert secret.startswith("whsec_") and secret.count("whsec_") == 1
    assert "shown this once" in lines[-1]
    hook_id = int(lines[0].split("\t")[0])
    assert lines[0].split("\t")[1:5] == ["ops", receiver.url, "node.degraded,node.recovered", "enabled"]
    key = secret.removeprefix("whsec_")
    outputs: list[str] = []

    listed = ok(served.run(["webhooks", "list"]))
    assert f"{hook_id}\tops\t{receiver.url}" in listed and "sha256:" in listed
    listed_json = json.loads(ok(served.run(["webhooks", "list", "--json"])))
    assert [h["id"] for h in listed_json] == [hook_id] and "secret" not in listed_json[0]
    shown = json.loads(ok(served.run(["webhooks", "show", str(hook_id), "--json"])))
    assert shown["name"] == "ops" and shown["events"] == ["node.degraded", "node.recovered"]
    assert shown["secret_fingerprint"].startswith("sha256:")
    outputs += [listed, json.dumps(listed_json), json.dumps(shown)]
    outputs.append(ok(served.run(["webhooks", "show", str(hook_id)])))

    # test: queued; the real delivery job sends it, signed with the printed secret.
    tested = ok(served.run(["webhooks", "test", str(hook_id)]))
    assert "webhook.test" in tested and "pending" in tested
    assert drain(served.ctx) == ["succeeded"]
    [message] = receiver.received
    assert verify(secret, message)
    deliveries = ok(served.run(["webhooks", "deliveries", str(hook_id)]))
    assert "webhook.test" in deliveries and "succeeded" in deliveries and "last=200" in deliveries
    rows = json.loads(ok(served.run(["webhooks", "deliveries", str(hook_id), "--json"])))
    assert [(r["event_type"], r["status"], r["attempts"]) for r in rows] == [("webhook.test", "succeeded", 1)]
    assert rows[0]["event_id"] == message.headers["webhook-id"]
    again = ok(served.run(["webhooks", "redeliver", str(hook_id), str(rows[0]["id"])]))
    assert rows[0]["event_id"] in again
    assert drain(served.ctx) == ["succeeded"]
    assert receiver.received[1].headers["webhook-id"] == message.headers["webhook-id"]
    outputs += [tested, deliveries, json.dumps(rows), again]

    # rotate: a new secret, printed once, alone on the last line; both sign during the overlap.
    rotated = ok(served.run(["webhooks", "rotate", str(hook_id)]))
    new_secret = rotated.strip().splitlines()[-1]
    assert new_secret.startswith("whsec_") and new_secret != secret
    assert key not in rotated
    new_key = new_secret.removeprefix("whsec_")
    ok(served.run(["webhooks", "test", str(hook_id)]))
    assert drain(served.ctx) == ["succeeded"]
    assert verify(secret, receiver.received[-1]) and verify(new_secret, receiver.received[-1])
    outputs.append(ok(served.run(["webhooks", "list"])))
    outputs.append(ok(served.run(["webhooks", "show", str(hook_id), "--json"])))
    outputs.append(ok(served.run(["webhooks", "deliveries", str(hook_id), "--json"])))
    everything = "\n".join(outputs)
    assert key not in everything and new_key not in everything
    assert key not in created.replace(secret, "")  # create printed it on its last line only

    deleted = ok(served.run(["webhooks", "delete", str(hook_id)]))
    assert f"webhook endpoint {hook_id} deleted" in deleted
    assert json.loads(ok(served.run(["webhooks", "list", "--json"]))) == []


def test_webhooks_commands_refuse_clearly(served: Served, receiver: Receiver) -> None:
    missing = served.run(["webhooks", "show", "424242"])
    refused(missing, 3, "no webhook endpoint 424242")
    for args in (["rotate", "424242"], ["delete", "424242"], ["test", "424242"], ["deliveries", "424242"],
                 ["redeliver", "424242", "1"]):  # fmt: skip
        refused(served.run(["webhooks", *args]), 3, "424242")
    # Loopback without a port is not named by the allowlist (http://127.0.0.1:): refused by the server.
    bad_url = served.run(["webhooks", "create", "--name", "x", "--endpoint", "http://10.0.0.1/hook"])
    refused(bad_url, 2, "url")
    metadata = served.run(["webhooks", "create", "--name", "x", "--endpoint", "http://169.254.169.254/"])
    refused(metadata, 2, "url")
    unknown = served.run(["webhooks", "create", "--name", "x", "--endpoint", receiver.url,
                          "--event", "node.exploded"])  # fmt: skip
    refused(unknown, 2, "events.0")
    # Webhooks are admin business: an operator's and a viewer's tokens are refused, nothing created.
    for role in (Role.viewer, Role.operator):
        as_role = served.run(["webhooks", "create", "--name", "x", "--endpoint", receiver.url], role)
        assert "whsec_" not in as_role.stdout
        refused(as_role, 4, "admin")
        refused(served.run(["webhooks", "list"], role), 4, "admin")
    refused(served.run(["webhooks", "list"], None), 2, "NODEWRIGHT_TOKEN")
    ok(served.run(["webhooks", "create", "--name", "dup", "--endpoint", receiver.url]))
    duplicate = served.run(["webhooks", "create", "--name", "dup", "--endpoint", receiver.url])
    assert "whsec_" not in duplicate.stdout
    refused(duplicate, 4, "dup")
    assert [h["name"] for h in json.loads(ok(served.run(["webhooks", "list", "--json"])))] == ["dup"]


def test_maintenance_and_health_commands(served: Served, setup: tuple[int, hcloud.Client]) -> None:
    provider_id, _cloud = setup
    web = add_node(served.ctx, provider_id, "web-1", "ready", None)
    db = add_node(served.ctx, provider_id, "db-1", "ready", None)
    for _ in range(3):  # the installation default: three failures in a row make a node degraded
        apply(served.ctx, web, FAIL)
    assert apply(served.ctx, db, FAIL) is None  # one failure: failing, still ready

    health = ok(served.run(["nodes", "health", str(web)], Role.viewer))
    assert health.startswith(f"node {web}: degraded (failures in a row 3")
    assert "degraded since:" in health and "failed: ssh with the pinned host key" in health
    assert health.count("FAIL degraded") == 1 and health.count("FAIL failing") == 2
    as_json = json.loads(ok(served.run(["nodes", "health", str(web), "--json", "--limit", "2"], Role.viewer)))
    assert as_json["health"]["health"] == "degraded" and len(as_json["checks"]) == 2
    listed = ok(served.run(["nodes", "list", "--health", "degraded"], Role.viewer))
    assert "web-1" in listed and "db-1" not in listed
    failing = json.loads(ok(served.run(["nodes", "list", "--health", "failing", "--json"], Role.viewer)))
    assert [n["name"] for n in failing["items"]] == ["db-1"]
    everyone = ok(served.run(["nodes", "list"], Role.viewer))
    assert "degraded" in everyone and "failing" in everyone
    refused(served.run(["nodes", "health", "424242"], Role.viewer), 3, "424242")
    refused(served.run(["nodes", "list", "--health", "sleepy"], Role.viewer), 2, "health")

    started = ok(served.run(["maintenance", "start", "--reason", "kernel upgrade", "--node", str(db),
                             "--minutes", "30"], Role.operator))  # fmt: skip
    window_id = int(started.split()[1])
    by_selector = json.loads(ok(served.run(["maintenance", "start", "--reason", "rack move", "--selector",
                                            "rack=r1", "--json"], Role.operator)))  # fmt: skip
    assert by_selector["selector"] == {"rack": "r1"} and by_selector["active"] is True
    listed_pauses = ok(served.run(["maintenance", "list"], Role.viewer))
    assert f"node {db}: kernel upgrade" in listed_pauses and "rack=r1: rack move" in listed_pauses
    assert "2 pause(s)" in listed_pauses
    paused = json.loads(ok(served.run(["nodes", "list", "--health", "paused", "--json"], Role.viewer)))
    assert [n["name"] for n in paused["items"]] == ["db-1"]
    assert "maintenance" in ok(served.run(["nodes", "health", str(db)], Role.viewer))

    # A viewer reads but cannot pause; bad input is named; unknown ids are a message.
    viewer = served.run(["maintenance", "start", "--reason", "x", "--node", str(db)], Role.viewer)
    refused(viewer, 4, "operator")
    refused(served.run(["maintenance", "start", "--reason", "x", "--node", "424242"], Role.operator), 2,
            "node_id")  # fmt: skip
    refused(served.run(["maintenance", "start", "--reason", "x"], Role.operator), 2, "node_id")
    # A selector without "=" is a typo, not the label's empty value: refused, nothing paused.
    refused(served.run(["maintenance", "start", "--reason", "x", "--selector", "rack"], Role.operator), 2,
            "key=value")  # fmt: skip
    refused(served.run(["maintenance", "start", "--reason", "x", "--selector", "=r1"], Role.operator), 2,
            "key=value")  # fmt: skip
    assert len(json.loads(ok(served.run(["maintenance", "list", "--json"], Role.viewer)))["items"]) == 2
    refused(served.run(["maintenance", "end", "424242"], Role.operator), 3, "424242")
    refused(served.run(["maintenance", "end", str(window_id)], Role.viewer), 4, "operator")

    ended = ok(served.run(["maintenance", "end", str(window_id)], Role.operator))
    assert f"maintenance {window_id} ended" in ended
    active = json.loads(ok(served.run(["maintenance", "list", "--json"], Role.viewer)))
    assert [w["id"] for w in active["items"]] == [by_selector["id"]]
    every = json.loads(ok(served.run(["maintenance", "list", "--all", "--json"], Role.viewer)))
    assert {w["id"] for w in every["items"]} == {window_id, by_selector["id"]}
    assert "ended" in ok(served.run(["maintenance", "list", "--all"], Role.viewer))


def test_brakes_command_shows_an_engaged_brake(served: Served, setup: tuple[int, hcloud.Client]) -> None:
    from nodewright.watching import brake

    provider_id, _cloud = setup
    ids = [add_node(served.ctx, provider_id, f"b-{i}", "ready", None) for i in range(3)]
    assert "no brake engaged" in ok(served.run(["nodes", "brakes"], Role.viewer))
    for node_id in ids[:2]:
        for _ in range(3):
            apply(served.ctx, node_id, FAIL)
    with served.ctx.database.session(write=True) as session:
        assert brake.evaluate(session, provider_id).engaged  # 2 of 3 degraded, more than 40 %
    shown = ok(served.run(["nodes", "brakes"], Role.viewer))
    assert f"connection {provider_id:>4}  ENGAGED   2/3 degraded" in shown
    assert "automatic remediation is stopped" in shown
    as_json = json.loads(ok(served.run(["nodes", "brakes", "--json"], Role.viewer)))
    assert as_json["items"][0]["engaged"] is True
    refused(served.run(["nodes", "brakes"], None), 2, "NODEWRIGHT_TOKEN")


def test_output_formats_json_yaml_columns_and_ids(served: Served, setup: tuple[int, hcloud.Client]) -> None:
    """`-o` on a list and a show: YAML and JSON say the same, columns pick (dotted) fields with a
    header, ids print one per line; a wrong format is a usage error named before any request."""
    import yaml

    provider_id, _cloud = setup
    web = add_node(served.ctx, provider_id, "web-1", "ready", None)
    db = add_node(served.ctx, provider_id, "db-1", "ready", None)
    with served.ctx.database.session(write=True) as session:  # text a hostile writer might have left
        node = session.get(Node, web)
        assert node is not None
        node.labels = {"note": "a\x1b[31mred\x07"}
    as_json = json.loads(ok(served.run(["nodes", "list", "-o", "json"], Role.viewer)))
    as_yaml = yaml.safe_load(ok(served.run(["nodes", "list", "-o", "yaml"], Role.viewer)))
    assert as_yaml == as_json and {n["name"] for n in as_json["items"]} == {"web-1", "db-1"}
    assert ok(served.run(["nodes", "list", "-o", "ids"], Role.viewer)).split() == [str(db), str(web)]
    columns = ok(served.run(["nodes", "list", "-o", "columns=id,name,labels.note,ssh.address"], Role.viewer))
    header, *rows = columns.splitlines()
    assert header.split() == ["ID", "NAME", "LABELS.NOTE", "SSH.ADDRESS"]
    assert rows[0].split() == [str(db), "db-1", "-", "-"]
    assert rows[1].split()[:2] == [str(web), "web-1"] and "\x1b" not in columns and "\x07" not in columns
    shown = yaml.safe_load(ok(served.run(["nodes", "show", str(web), "-o", "yaml"], Role.viewer)))
    assert shown["id"] == web and shown["labels"]["note"] == "a\x1b[31mred\x07"  # escaped, then read back
    assert "\x1b" not in served.run(["nodes", "show", str(web), "-o", "yaml"], Role.viewer).stdout
    # A wrong format: exit 2 naming the choices, even without a token (nothing was asked of the server).
    for bad in ("xml", "columns=", "columns=id;rm"):
        refused(served.run(["nodes", "list", "-o", bad], None), 2, "-o")
    create = ["nodes", "create", "--provider", str(provider_id), "--name", "n", "--location", "fsn1",
              "--type", "cx23", "--image", "ubuntu-24.04", "-o", "xml"]  # fmt: skip
    refused(served.run(create, Role.operator), 2, "format")
    assert (
        json.loads(ok(served.run(["nodes", "list", "--json"], Role.viewer)))["total"] == 2
    )  # nothing created
    hooks = ok(served.run(["webhooks", "list", "-o", "yaml"]))
    assert yaml.safe_load(hooks) == []


def test_nodes_by_name_or_id(served: Served, setup: tuple[int, hcloud.Client]) -> None:
    """`nodes show|health|evidence|delete|retry` take a name: the live node of that name (a released
    one keeps its name, and a new node may reuse it), else the newest released one."""
    provider_id, _cloud = setup
    old = add_node(served.ctx, provider_id, "web-1", "released", None)
    live = add_node(served.ctx, provider_id, "web-1", "ready", None)
    gone = add_node(served.ctx, provider_id, "gone-1", "released", None)
    assert json.loads(ok(served.run(["nodes", "show", "web-1", "-o", "json"], Role.viewer)))["id"] == live
    assert json.loads(ok(served.run(["nodes", "show", str(old), "-o", "json"], Role.viewer)))["id"] == old
    assert json.loads(ok(served.run(["nodes", "show", "gone-1", "-o", "json"], Role.viewer)))["id"] == gone
    assert ok(served.run(["nodes", "health", "web-1"], Role.viewer)).startswith(f"node {live}:")
    assert json.loads(ok(served.run(["nodes", "evidence", "web-1"], Role.viewer)))["node_id"] == live
    refused(served.run(["nodes", "show", "nope-1"], Role.viewer), 3, "no node named 'nope-1'")
    refused(served.run(["nodes", "show", "Not A Name"], Role.viewer), 2, "neither a node id nor a node name")
    refused(served.run(["nodes", "retry", "nope-1"], Role.operator), 3, "nope-1")
    page = served.client.get(
        "/api/nodes", params={"name": "web-1"}, headers=served.users[Role.viewer].headers
    )
    assert page.status_code == 200 and [n["id"] for n in page.json()["items"]] == [live, old]
    bad = served.client.get("/api/nodes", params={"name": "Web 1"}, headers=served.users[Role.viewer].headers)
    assert bad.status_code in (400, 422) and "name" in bad.text
