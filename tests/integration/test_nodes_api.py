# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""POST /api/nodes before any server exists: the gate, the contract, the catalog pre-flight, field
errors, idempotency, names; and that a refused request leaves nothing behind."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nodewright.context import AppContext
from nodewright.db.models import Job, Node
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import RoleUser

OPERATOR_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop"


@pytest.fixture
def provider_id(client: TestClient, role_users: dict[Role, RoleUser], sim: SimServer) -> int:
    response = client.post(
        "/api/providers",
        json={"kind": "hetzner", "name": "sim", "token": random_token(), "api_endpoint": sim.api_url},
        headers=role_users[Role.admin].headers,
    )
    assert response.status_code == 201, response.text
    value: int = response.json()["id"]
    return value


def body(provider: int, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "provider_id": provider,
        "name": "web-1",
        "location": "fsn1",
        "server_type": "cx23",
        "image": "ubuntu-24.04",
    }
    values.update(overrides)
    return values


def counts(ctx: AppContext) -> tuple[int, int]:
    with ctx.database.session() as session:
        nodes = session.scalar(select(func.count(Node.id))) or 0
        jobs = session.scalar(select(func.count(Job.id)).where(Job.kind.like("nodes.%"))) or 0
        return int(nodes), int(jobs)


def test_intent_first_node_and_job_commit_together(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], provider_id: int
) -> None:
    response = client.post("/api/nodes", json=body(provider_id), headers=role_users[Role.operator].headers)
    assert response.status_code == 202, response.text
    node, job = response.json()["node"], response.json()["job"]
    with app_context.database.session() as session:
        row = session.get(Node, node["id"])
        queued = session.get(Job, job["id"])
        assert row is not None and queued is not None
        assert row.job_id == queued.id and queued.state == "queued"
        assert queued.args == {"node_id": row.id} and queued.resource_key == f"node:{row.id}"
    assert node["price"]["monthly_gross"].startswith("4.")  # cx23 in fsn1, gross
    listed = client.get(
        "/api/nodes?status=pending&label=role", headers=role_users[Role.viewer].headers
    ).json()
    assert listed["total"] == 0  # the label filter applies
    listed = client.get("/api/nodes?status=pending", headers=role_users[Role.viewer].headers).json()
    assert [n["id"] for n in listed["items"]] == [node["id"]]


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"location": "nowhere"}, "location", "invalid_combination"),
        ({"location": "ash"}, "server_type", "invalid_combination"),  # cx23 is sold in the EU only
        ({"server_type": "cx11"}, "server_type", "invalid_combination"),  # deprecated
        ({"image": "ubuntu-20.04"}, "image", "invalid_combination"),  # deprecated
        ({"image": "windows-11"}, "image", "invalid_combination"),
        ({"server_type": "cpx11", "location": "sin"}, "location", "capacity_unavailable"),
        ({"profile": "nope"}, "profile", "invalid_request"),
        ({"contract": "provider/v0"}, "contract", "invalid_request"),
        ({"provider_id": 999}, "provider_id", "invalid_request"),
        ({"name": "Web_1"}, "name", "invalid_request"),
        ({"name": "a" * 64}, "name", "invalid_request"),
        ({"labels": {"nodewright.io/node": "1"}}, "labels", "invalid_request"),
        ({"labels": {"ok": "bad value!"}}, "labels", "invalid_request"),
        (
            {"ssh_authorized_keys": ["-----BEGIN OPENSSH PRIVATE KEY-----"]},
            "ssh_authorized_keys",
            "invalid_request",
        ),
        (
            {"ssh_authorized_keys": [OPERATOR_KEY + "\nssh-ed25519 AAAA"]},
            "ssh_authorized_keys",
            "invalid_request",
        ),
        ({"host": "203.0.113.7"}, "host", "invalid_request"),  # no other shape of node exists
        ({"ssh_port": 22}, "ssh_port", "invalid_request"),
    ],
)
def test_bad_requests_name_the_field_and_write_nothing(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    provider_id: int,
    overrides: dict[str, Any],
    field: str,
    code: str,
) -> None:
    response = client.post(
        "/api/nodes", json=body(provider_id, **overrides), headers=role_users[Role.operator].headers
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == code, problem
    assert field in problem["detail"] or any(field in e["field"] for e in problem.get("errors") or []), (
        problem
    )
    assert "Traceback" not in response.text
    assert counts(app_context) == (0, 0)


def test_gate_off_refuses_creation_while_reads_work(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], provider_id: int
) -> None:
    admin, operator, viewer = (role_users[r].headers for r in (Role.admin, Role.operator, Role.viewer))
    keyed = {**operator, "Idempotency-Key": "gate-retry"}
    first = client.post("/api/nodes", json=body(provider_id), headers=keyed)
    assert first.status_code == 202
    node_id = first.json()["node"]["id"]
    assert client.put("/api/gates", json={"provider_create": False}, headers=admin).status_code == 200
    # A client that timed out and retries its accepted request gets that answer, not "disabled"
    # (which would tell it nothing was created); a new key is refused.
    retried = client.post("/api/nodes", json=body(provider_id), headers=keyed)
    assert retried.status_code == 202 and retried.json()["node"]["id"] == node_id, retried.text
    fresh_key = client.post("/api/nodes", json=body(provider_id, name="web-3"),
                            headers={**operator, "Idempotency-Key": "new"})  # fmt: skip
    assert fresh_key.status_code == 503

    refused = client.post("/api/nodes", json=body(provider_id, name="web-2"), headers=operator)
    assert refused.status_code == 503
    assert refused.json()["code"] == "feature_disabled" and "provider_create" in refused.json()["detail"]
    assert counts(app_context) == (1, 1)  # nothing written
    # Every read path, the provider check and release keep working.
    assert client.get("/api/nodes", headers=viewer).status_code == 200
    assert client.get(f"/api/nodes/{node_id}", headers=viewer).status_code == 200
    assert client.get(f"/api/nodes/{node_id}/evidence", headers=viewer).status_code == 200
    assert client.get("/api/providers", headers=viewer).status_code == 200
    assert client.get(f"/api/providers/{provider_id}/catalog", headers=viewer).status_code == 200
    assert client.post(f"/api/providers/{provider_id}/check", headers=admin).status_code == 200
    assert client.get("/api/jobs", headers=viewer).status_code == 200
    assert client.delete(f"/api/nodes/{node_id}", headers=operator).status_code == 202

    assert client.put("/api/gates", json={"provider_create": True}, headers=admin).status_code == 200
    assert (
        client.post("/api/nodes", json=body(provider_id, name="web-2"), headers=operator).status_code == 202
    )


def test_names_and_idempotency_keys(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], provider_id: int
) -> None:
    operator = role_users[Role.operator].headers
    assert client.post("/api/nodes", json=body(provider_id), headers=operator).status_code == 202
    taken = client.post("/api/nodes", json=body(provider_id), headers=operator)
    assert taken.status_code == 409 and "name" in taken.json()["detail"]

    bad_key = client.post(
        "/api/nodes", json=body(provider_id, name="x"), headers={**operator, "Idempotency-Key": "a b"}
    )
    assert bad_key.status_code == 400 and bad_key.json()["errors"][0]["field"] == "Idempotency-Key"

    # Concurrent retries of one request with one key: one node, one job, the same answer for all.
    answers: list[Any] = []

    def post() -> None:
        answers.append(
            client.post(
                "/api/nodes",
                json=body(provider_id, name="db-1"),
                headers={**operator, "Idempotency-Key": "k-db-1"},
            )
        )

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
    assert len({(a.json()["node"]["id"], a.json()["job"]["id"]) for a in answers}) == 1
    assert counts(app_context) == (2, 2)


def test_unknown_contract_in_config_is_a_clear_error() -> None:
    from nodewright.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="unknown node contract"):
        load_settings(node_contracts=["provider/v9"])


def test_retry_is_refused_while_a_release_is_queued(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], provider_id: int
) -> None:
    """Delete, then Retry before the release job starts: the node stays on its way out (a retry would
    put it back to pending and race a second provisioning against the release)."""
    operator = role_users[Role.operator].headers
    created = client.post("/api/nodes", json=body(provider_id), headers=operator).json()
    node_id = created["node"]["id"]
    with app_context.database.session(write=True) as session:
        node, job = session.get(Node, node_id), session.get(Job, created["job"]["id"])
        assert node is not None and job is not None
        node.status, node.stage, node.error_code = "failed", "connect", "ssh_unreachable"
        job.state = "failed"
    release = client.delete(f"/api/nodes/{node_id}", headers=operator)
    assert release.status_code == 202, release.text
    retry = client.post(f"/api/nodes/{node_id}/retry", headers=operator)
    assert retry.status_code == 409, retry.text
    assert "releas" in retry.json()["detail"]
    shown = client.get(f"/api/nodes/{node_id}", headers=operator).json()
    assert shown["job_id"] == release.json()["job"]["id"]
    with app_context.database.session() as session:
        kinds = session.scalars(select(Job.kind).where(Job.state == "queued")).all()
    assert kinds == ["nodes.release"]


def test_idempotency_keys_belong_to_their_user_and_expire(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], provider_id: int
) -> None:
    """A key used to be global: another operator reusing it got the first user's node back (same
    body) or a 409 saying the key was taken. Keys now belong to the calling user (every token of
    that user shares them) and last 24 hours."""
    import datetime as dt

    from nodewright.db.models import IdempotencyKey, User
    from nodewright.nodes import idempotency
    from nodewright.security import api_tokens

    alice = {**role_users[Role.operator].headers, "Idempotency-Key": "deploy-1"}
    bob = {**role_users[Role.admin].headers, "Idempotency-Key": "deploy-1"}
    first = client.post("/api/nodes", json=body(provider_id, name="a-1"), headers=alice)
    assert first.status_code == 202, first.text

    # Another user, same key, same body: never the first user's node (it was handed back); the
    # name is taken, and the refused request holds no key.
    same_body = client.post("/api/nodes", json=body(provider_id, name="a-1"), headers=bob)
    assert same_body.status_code == 409 and same_body.json()["code"] == "conflict", same_body.text
    assert same_body.json()["errors"][0]["field"] == "name"
    # Another user, same key, another body: their own node (it was a 409 idempotency_conflict).
    theirs = client.post("/api/nodes", json=body(provider_id, name="b-1"), headers=bob)
    assert theirs.status_code == 202, theirs.text
    assert theirs.json()["node"]["id"] != first.json()["node"]["id"]

    # The same user through another of their tokens: the first node and job come back.
    with app_context.database.session(write=True) as session:
        user = session.scalar(select(User).where(User.username == role_users[Role.operator].username))
        assert user is not None
        _token, laptop = api_tokens.create_token(session, user, "laptop", actor="test")
    again = client.post(
        "/api/nodes",
        json=body(provider_id, name="a-1"),
        headers={"Authorization": f"Bearer {laptop}", "Idempotency-Key": "deploy-1"},
    )
    assert again.status_code == 202, again.text
    assert again.json()["node"]["id"] == first.json()["node"]["id"]
    assert again.json()["job"]["id"] == first.json()["job"]["id"]
    # ... and the same key with another body is still a conflict for that user.
    conflict = client.post("/api/nodes", json=body(provider_id, name="a-2"), headers=alice)
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"
    assert conflict.json()["errors"][0]["field"] == "Idempotency-Key"
    assert counts(app_context) == (2, 2)

    # 24 hours later the key is free again: a new request with it makes a new node.
    with app_context.database.session(write=True) as session:
        for row in session.scalars(select(IdempotencyKey)):
            row.expires_at = row.created_at + idempotency.TTL - dt.timedelta(days=1, seconds=1)
    renewed = client.post("/api/nodes", json=body(provider_id, name="a-2"), headers=alice)
    assert renewed.status_code == 202, renewed.text
    assert renewed.json()["node"]["id"] not in (first.json()["node"]["id"], theirs.json()["node"]["id"])
    replayed = client.post("/api/nodes", json=body(provider_id, name="a-2"), headers=alice)
    assert replayed.json()["node"]["id"] == renewed.json()["node"]["id"]
    assert counts(app_context) == (3, 3)

    # The hourly prune deletes the expired key (bob's) and keeps the live one (alice's renewed one).
    with app_context.database.session(write=True) as session:
        assert idempotency.prune(session) == 1
    with app_context.database.session() as session:
        left = session.scalars(select(IdempotencyKey.node_id)).all()
    assert left == [renewed.json()["node"]["id"]]


@pytest.mark.db_only("postgresql", reason="SQLite's read snapshot hides the winner until the write")
def test_a_retry_that_finds_the_name_taken_by_its_own_key_replays(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser], provider_id: int
) -> None:
    """The interleaving that made concurrent retries flaky: retry B looks its key up (not there yet),
    retry A commits node and key, then B's name check finds A's node. B answers A's 202, not 409."""
    from sqlalchemy import event

    operator = {**role_users[Role.operator].headers, "Idempotency-Key": "k-race"}
    request = body(provider_id, name="race-1")
    first: list[Any] = []
    state = {"armed": True}

    def before_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # B's name check is the first SELECT of nodes.id by name after its key lookup.
        if (
            state["armed"]
            and statement.lstrip().upper().startswith("SELECT NODES.ID")
            and "nodes.name" in statement
        ):
            state["armed"] = False
            winner = threading.Thread(
                target=lambda: first.append(client.post("/api/nodes", json=request, headers=operator))
            )
            winner.start()
            winner.join(30)

    engine = app_context.database.engine
    event.listen(engine, "before_cursor_execute", before_execute)
    try:
        second = client.post("/api/nodes", json=request, headers=operator)
    finally:
        event.remove(engine, "before_cursor_execute", before_execute)
    assert not state["armed"], "the name check was not reached"
    assert first and first[0].status_code == 202, first[0].text if first else "winner never answered"
    assert second.status_code == 202, second.text
    assert second.json()["node"]["id"] == first[0].json()["node"]["id"]
    assert counts(app_context) == (1, 1)
