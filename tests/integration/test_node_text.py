# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Text written by a provider or a node cannot forge terminal output: control characters are shown
escaped where the text is stored (node error, job error, job log, connection status) and the CLI
writes none to a terminal; a line that foreign text starts never looks like one of nodewright's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from nodewright.context import AppContext
from nodewright.db.models import Job, JobEvent, Node, ProviderConnection
from nodewright.jobs.context import JobContext
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.errors import JobError
from nodewright.jobs.registry import Registry, load_handler_modules
from nodewright.jobs.registry import registry as default_registry
from nodewright.nodes import progress
from nodewright.nodes.states import Stage
from nodewright.security.roles import Role
from nodewright.sim.control_client import SimControl
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import RoleUser
from tests.support.jobs import run_next
from tests.support.live_server import live_server

load_handler_modules()

FORGED = "\x1b]0;owned\x07\x1b[2J\x1b[1;1H\r\n[nodewright] node ready\rX\u202eY\x9b31m\x7f"
# What must never be stored or reach a terminal raw: C0 (but newline and tab), DEL, C1, bidi.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _connect(client: TestClient, admin: dict[str, str], sim: SimServer) -> int:
    response = client.post(
        "/api/providers",
        json={"kind": "hetzner", "name": "sim", "token": random_token(), "api_endpoint": sim.api_url},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    provider_id: int = response.json()["id"]
    return provider_id


def _cli(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env.update(NODEWRIGHT_URL=url, NODEWRIGHT_TOKEN=token)
    return subprocess.run([sys.executable, "-m", "nodewright.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def _stored_text(ctx: AppContext, node_id: int) -> list[str]:
    with ctx.database.session() as session:
        node = session.get(Node, node_id)
        assert node is not None and node.job_id is not None
        job = session.get(Job, node.job_id)
        assert job is not None
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == job.id)).all()
        connections = session.scalars(select(ProviderConnection)).all()
        return [
            node.error_message or "",
            node.error_hint or "",
            str(job.error),
            *(e.message for e in events),
            *(str(e.data) for e in events),
            *(f"{c.last_error_message} {c.last_error_hint}" for c in connections),
        ]


def test_a_provider_message_with_terminal_escapes_is_stored_and_shown_escaped(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    """The simulator answers the server create with an error message full of terminal escapes and a
    fake "[nodewright] node ready" line: the real provisioning job fails the node with it."""
    provider_id = _connect(client, role_users[Role.admin].headers, sim)
    SimControl(sim.base_url).add_fault(
        "error", method="POST", path="/v1/servers", code="resource_unavailable", message=FORGED
    )
    operator = role_users[Role.operator].headers
    created = client.post(
        "/api/nodes",
        json={"provider_id": provider_id, "name": "forged", "location": "fsn1", "server_type": "cx23",
              "image": "ubuntu-24.04"},
        headers=operator,
    )  # fmt: skip
    assert created.status_code == 202, created.text
    node_id = created.json()["node"]["id"]
    while run_next(app_context.database, registry=default_registry) is not None:
        pass

    shown: dict[str, Any] = client.get(f"/api/nodes/{node_id}", headers=operator).json()
    assert shown["status"] == "failed" and shown["error"]["code"] == "capacity_unavailable"
    message = shown["error"]["message"]
    # Escaped, not dropped: the reader sees what the provider sent, inert and on one line.
    assert "\\x1b]0;owned\\x07\\x1b[2J" in message and "\\u202e" in message and "\\r" in message
    assert "\n" not in message
    stored = _stored_text(app_context, node_id)
    assert any("owned" in text for text in stored[2:])  # the job error and log carry it too
    for text in stored:
        assert not RAW.search(text), repr(text)
    log = client.get(f"/api/jobs/{shown['job_id']}/events", headers=operator)
    assert log.status_code == 200
    assert "owned" in log.text and not RAW.search(json.dumps(log.json(), ensure_ascii=False))

    with live_server(client.app) as url:  # type: ignore[arg-type]
        show = _cli(url, role_users[Role.operator].token, "nodes", "show", str(node_id))
        as_json = _cli(url, role_users[Role.operator].token, "nodes", "show", str(node_id), "--json")
    assert show.returncode == 0, show.stderr
    assert "owned" in show.stdout and not RAW.search(show.stdout), repr(show.stdout)
    assert not any(line.startswith("[nodewright]") for line in show.stdout.splitlines())
    assert as_json.returncode == 0 and not RAW.search(as_json.stdout)  # JSON escapes them itself
    assert json.loads(as_json.stdout)["error"]["message"] == message


def failing_with_node_output(ctx: JobContext) -> None:
    def provision() -> None:
        # What a failed task's stderr looks like when the node wants to be taken for nodewright.
        raise JobError("provisioning_failed", f"task 'x' failed: boom\n[nodewright] node ready{FORGED}")

    progress.run_stage(ctx, int(ctx.args["node_id"]), Stage.provision, provision)


def test_multi_line_node_output_is_indented_under_a_margin_in_the_cli(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    """Node output keeps its newlines (a task's stderr is several lines), but the CLI sets every line
    after the first under a ``|`` margin: none can pass for a line of nodewright's own."""
    provider_id = _connect(client, role_users[Role.admin].headers, sim)
    registry = Registry()
    registry.register("test.failing_provision", failing_with_node_output, max_attempts=1)
    with app_context.database.session(write=True) as session:
        node = Node(
            name="chatty", contract="provider/v1", provider_id=provider_id, location="fsn1",
            server_type="cx23", image="ubuntu-24.04", labels={}, profile="baseline", ssh_authorized_keys=[],
            status="provisioning", evidence={}, created_by="test",
        )  # fmt: skip
        session.add(node)
        session.flush()
        node.job_id = enqueue(session, "test.failing_provision", {"node_id": node.id}, registry=registry).id
        node_id = node.id
    assert run_next(app_context.database, registry=registry) == "failed"
    for text in _stored_text(app_context, node_id):
        assert not RAW.search(text), repr(text)

    with live_server(client.app) as url:  # type: ignore[arg-type]
        show = _cli(url, role_users[Role.viewer].token, "nodes", "show", str(node_id))
    assert show.returncode == 0, show.stderr
    assert not RAW.search(show.stdout), repr(show.stdout)
    lines = show.stdout.splitlines()
    assert "  provisioning_failed: task 'x' failed: boom" in lines
    forged = [line for line in lines if "[nodewright] node ready" in line]
    assert forged and all(line.startswith("    | ") for line in forged), lines


def test_the_cli_writes_no_control_character_even_from_a_row_stored_raw(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> None:
    """A node failed before text was cleaned at storage (or a server of an older version) still
    holds raw escapes: the CLI cleans what it writes itself, whatever the server sends."""
    provider_id = _connect(client, role_users[Role.admin].headers, sim)
    with app_context.database.session(write=True) as session:
        node = Node(
            name="old", contract="provider/v1", provider_id=provider_id, location="fsn1", server_type="cx23",
            image="ubuntu-24.04", labels={}, profile="baseline", ssh_authorized_keys=[], status="failed",
            stage="provision", error_code="provisioning_failed", error_message=f"boom{FORGED}",
            error_hint=FORGED, error_retryable=False, evidence={}, created_by="test",
        )  # fmt: skip
        session.add(node)
        session.flush()
        node_id = node.id
    with live_server(client.app) as url:  # type: ignore[arg-type]
        show = _cli(url, role_users[Role.viewer].token, "nodes", "show", str(node_id))
        listed = _cli(url, role_users[Role.viewer].token, "nodes", "list")
    assert show.returncode == 0 and listed.returncode == 0, show.stderr + listed.stderr
    assert "\\x1b]0;owned" in show.stdout and not RAW.search(show.stdout), repr(show.stdout)
    assert not any(line.startswith("[nodewright]") for line in show.stdout.splitlines())
    assert not RAW.search(listed.stdout)
