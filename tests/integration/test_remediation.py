# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""The remediation ladder and the fleet brake against the simulator and the real database.

The nodes here hold simulator servers without sshd, so every SSH check fails (the real-node ladder,
whose replacement succeeds, is tests/e2e/test_remediation_end_to_end.py). Checks are run by the
real sweep and check jobs, or their results fed to ``apply_result`` where a test needs some nodes
to pass; the steps run as the real ``watching.remediate`` jobs. Waiting (the step's delay, the
grace period) is skipped by moving those times into the past, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

import hcloud
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db.models import AuditEvent, Job, Node, NodeHealth, NodeRemediation, WebhookDelivery
from nodewright.db.types import utcnow
from nodewright.jobs.enqueue import enqueue
from nodewright.jobs.registry import load_handler_modules
from nodewright.jobs.registry import registry as default_registry
from nodewright.nodes.states import REMEDIATE_KIND
from nodewright.provisioning.checks import CheckResult
from nodewright.provisioning.profiles import BUILTIN_DIR, ProfileError, load_profile
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from nodewright.watching.outcome import apply_result
from nodewright.watching.policy import policy_for
from nodewright.watching.remediate import replacement_name
from nodewright.watching.sweep import SWEEP_KIND
from tests.fixtures.sim import sim, sim_server  # noqa: F401
from tests.integration.test_dashboard_auth import login
from tests.support.apps import RoleUser, make_settings
from tests.support.fleet import add_ready_nodes, closed_port, connect
from tests.support.jobs import run_next

load_handler_modules()
PROFILE = "heal"
REMEDIATION = """
remediation:
  enabled: true
  reboots: 1
  reprovisions: 1
  replaces: 1
watch:
  interval_seconds: 5
  grace_seconds: 0
"""
FAIL = [CheckResult("ssh with the pinned host key", False, "ssh_unreachable: connection refused")]
PASS = [CheckResult("ssh with the pinned host key", True, "SHA256:x")]


def write_profile(profiles_dir: Path, extra: str = REMEDIATION, name: str = PROFILE) -> None:
    target = profiles_dir / name
    shutil.copytree(BUILTIN_DIR / "baseline", target)
    with (target / "profile.yml").open("a") as f:
        f.write(extra)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # SSH to these nodes never answers: a reprovision's connect gives up after 2 s.
    made = make_settings(db_url, tmp_path / "data", node_connect_deadline=2.0)
    write_profile(made.resolved_profiles_dir)
    return made


def drain(ctx: AppContext) -> list[str]:
    outcomes = []
    while (outcome := run_next(ctx.database, registry=default_registry)) is not None:
        outcomes.append(outcome)
    return outcomes


def sweep(ctx: AppContext, provider_id: int) -> list[str]:
    """One sweep with every node due (the real sweep and check jobs)."""
    with ctx.database.session(write=True) as session:
        session.execute(update(NodeHealth).values(next_check_at=utcnow() - dt.timedelta(seconds=1)))
        enqueue(session, SWEEP_KIND, {"provider_id": provider_id}, max_attempts=1)
    return drain(ctx)


def skip_waits(ctx: AppContext) -> None:
    """The step's start delay and the grace after it, over at once."""
    past = utcnow() - dt.timedelta(seconds=1)
    with ctx.database.session(write=True) as session:
        session.execute(
            update(Job)
            .where(Job.kind == REMEDIATE_KIND, Job.state.in_(("queued", "retry_wait")))
            .values(run_after=past)
        )
        session.execute(update(NodeHealth).values(grace_until=None))


def steps(ctx: AppContext, node_id: int) -> list[tuple[str, str]]:
    with ctx.database.session() as session:
        rows = session.scalars(
            select(NodeRemediation).where(NodeRemediation.node_id == node_id).order_by(NodeRemediation.id)
        )
        return [(r.action, r.state) for r in rows]


def node_actions(ctx: AppContext, node_id: int) -> list[str]:
    with ctx.database.session() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.target == f"node:{node_id}")
                .order_by(AuditEvent.id)
            )
        )


def sim_requests(sim: SimServer, method: str, suffix: str) -> list[str]:
    entries = httpx.get(sim.base_url + "/_sim/requests").json()["requests"]
    return [e["path"] for e in entries if e["method"] == method and e["path"].endswith(suffix)]


def apply(ctx: AppContext, node_id: int, results: list[CheckResult]) -> str | None:
    with ctx.database.session(write=True) as session:
        policy = policy_for(PROFILE, ctx.settings)
        return apply_result(session, node_id, results, seconds=0.1, policy=policy, now=utcnow()).transition


@pytest.fixture
def connection(
    client: TestClient, role_users: dict[Role, RoleUser], sim: SimServer
) -> tuple[int, hcloud.Client]:
    return connect(client, role_users[Role.admin].headers, sim)


def test_the_ladder_reboots_then_reprovisions_then_replaces_then_stops(
    app_context: AppContext, connection: tuple[int, hcloud.Client], sim: SimServer
) -> None:
    provider_id, cloud = connection
    (node_id,) = add_ready_nodes(app_context, provider_id, cloud, 1, profile=PROFILE, ssh_port=closed_port())
    with app_context.database.session() as session:
        old_server = session.get(Node, node_id).server_id  # type: ignore[union-attr]
    httpx.delete(sim.base_url + "/_sim/requests").raise_for_status()
    sweep(app_context, provider_id)  # the first sweep schedules the node's first check
    for _ in range(3):
        sweep(app_context, provider_id)
    assert steps(app_context, node_id) == [("reboot", "queued")]  # decided, not started: one interval later
    assert sim_requests(sim, "POST", "/actions/reboot") == []

    skip_waits(app_context)
    assert drain(app_context) == ["succeeded"]
    assert sim_requests(sim, "POST", "/actions/reboot") == [f"/v1/servers/{old_server}/actions/reboot"]
    assert steps(app_context, node_id) == [("reboot", "waiting")]
    with app_context.database.session() as session:
        evidence = session.get(Node, node_id).evidence  # type: ignore[union-attr]
        assert evidence["remediation"]["action"] == "reboot" and evidence["remediation"]["state"] == "waiting"
        health = session.get(NodeHealth, node_id)
        assert health is not None and health.grace_until is not None and health.consecutive_failures == 0

    # Still failing after the grace: the reboot failed, the reprovision is next.
    skip_waits(app_context)
    for _ in range(3):
        sweep(app_context, provider_id)
    assert steps(app_context, node_id) == [("reboot", "failed"), ("reprovision", "queued")]
    skip_waits(app_context)
    assert drain(app_context) == ["failed"]  # connect: no SSH answer within 2 s
    assert steps(app_context, node_id)[-1] == ("reprovision", "failed")

    skip_waits(app_context)
    for _ in range(3):
        sweep(app_context, provider_id)
    assert steps(app_context, node_id)[-1] == ("replace", "queued")
    # Every replacement server the simulator makes fails to start (its create action errors).
    fault = {"kind": "action_error", "method": "POST", "path": "/v1/servers", "count": None}
    httpx.post(sim.base_url + "/_sim/faults", json=fault).raise_for_status()
    outcomes = []
    while not outcomes or outcomes[-1] == "retry_wait":
        skip_waits(app_context)
        outcomes += drain(app_context)
    assert outcomes[-1] == "failed" and len(outcomes) == 4  # every attempt: made, failed, deleted
    httpx.delete(sim.base_url + "/_sim/faults").raise_for_status()
    with app_context.database.session() as session:
        row = session.scalars(select(NodeRemediation).where(NodeRemediation.action == "replace")).one()
        node = session.get(Node, node_id)
        assert node is not None
        assert row.state == "failed" and "action_failed" in row.reason, row.reason
        assert node.server_id == old_server and node.status == "degraded"  # kept its server
    creates = sim_requests(sim, "POST", "/v1/servers")
    assert len(creates) == 4
    # Each failed replacement was deleted; the old server was never touched (never released first).
    deadline = time.monotonic() + 30
    while {s.id for s in cloud.servers.get_all()} != {old_server} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {s.id for s in cloud.servers.get_all()} == {old_server}
    assert sim_requests(sim, "DELETE", f"/servers/{old_server}") == []

    skip_waits(app_context)
    for _ in range(6):
        sweep(app_context, provider_id)
    assert steps(app_context, node_id)[-1] == ("exhausted", "exhausted")
    assert [a for a in steps(app_context, node_id) if a[0] == "exhausted"] == [("exhausted", "exhausted")]
    actions = [a for a in node_actions(app_context, node_id) if a.startswith("node.")]
    assert actions == [
        "node.degraded",
        "node.remediation_started", "node.remediation_failed",  # reboot
        "node.remediation_started", "node.remediation_failed",  # reprovision
        "node.remediation_started", "node.remediation_failed",  # replace
        "node.remediation_failed",  # the ladder is spent: said once
    ]  # fmt: skip


def test_the_brake_holds_remediation_when_many_nodes_degrade_at_once(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    connection: tuple[int, hcloud.Client],
    sim: SimServer,
) -> None:
    provider_id, cloud = connection
    ids = add_ready_nodes(app_context, provider_id, cloud, 4, profile=PROFILE)
    admin = role_users[Role.admin].headers
    hook = client.post("/api/webhooks", json={"name": "ops", "url": "http://127.0.0.1:9/"}, headers=admin)
    assert hook.status_code == 201, hook.text
    httpx.delete(sim.base_url + "/_sim/requests").raise_for_status()
    a, b, c, d = ids
    for _ in range(3):
        apply(app_context, a, FAIL)
        apply(app_context, c, PASS)
        apply(app_context, d, PASS)
    assert steps(app_context, a) == [("reboot", "queued")]  # 1 of 4 degraded: no brake
    for _ in range(3):
        apply(app_context, b, FAIL)
    assert steps(app_context, b) == []  # 2 of 4 (50 % > 40 %): the brake is engaged
    brakes = client.get("/api/brakes", headers=role_users[Role.viewer].headers).json()["items"]
    assert [(x["provider_id"], x["engaged"], x["degraded"], x["watched"]) for x in brakes] == [
        (provider_id, True, 2, 4)
    ]
    skip_waits(app_context)
    drain(app_context)  # a's step starts, finds the brake engaged, and does nothing
    assert steps(app_context, a) == [("reboot", "held")]
    assert sim_requests(sim, "POST", "/actions/reboot") == []
    assert "node.remediation_started" not in node_actions(app_context, a)
    for _ in range(3):
        apply(app_context, b, FAIL)  # more failures while braked: nothing starts
    assert steps(app_context, b) == []
    # Shown loudly: on /nodes, and on each node page with the held step.
    login(client, "viewer-user")
    listing = client.get("/nodes").text
    assert 'data-testid="brake-banner"' in listing and "2 of 4 watched nodes degraded" in listing
    page = client.get(f"/nodes/{a}").text
    assert 'data-testid="node-brake"' in page and 'data-state="held"' in page
    assert "held by the fleet brake" in page

    for node_id in (a, b):
        apply(app_context, node_id, PASS)
        assert apply(app_context, node_id, PASS) == "recovered"
    sweep(app_context, provider_id)  # the sweep releases it
    brakes = client.get("/api/brakes", headers=role_users[Role.viewer].headers).json()["items"]
    assert brakes[0]["engaged"] is False
    assert 'data-testid="brake-banner"' not in client.get("/nodes").text
    with app_context.database.session() as session:
        fleet_events = list(
            session.scalars(
                select(WebhookDelivery.event_type)
                .where(WebhookDelivery.event_type.like("fleet.%"))
                .order_by(WebhookDelivery.id)
            )
        )
        audited = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("fleet.%"))))
    assert fleet_events == ["fleet.brake_engaged", "fleet.brake_released"]
    assert audited == ["fleet.brake_engaged", "fleet.brake_released"]


def test_a_single_degraded_node_never_engages_the_brake(
    app_context: AppContext, connection: tuple[int, hcloud.Client]
) -> None:
    provider_id, cloud = connection
    (node_id,) = add_ready_nodes(app_context, provider_id, cloud, 1, profile=PROFILE)
    for _ in range(3):
        apply(app_context, node_id, FAIL)
    assert steps(app_context, node_id) == [("reboot", "queued")]  # 1 of 1 is 100 %, but one node alone


def test_the_budget_limits_attempts_within_the_window(
    app_context: AppContext, connection: tuple[int, hcloud.Client], settings: Settings
) -> None:
    tight = "remediation:\n  enabled: true\n  reboots: 5\n  max_attempts: 2\n"
    write_profile(settings.resolved_profiles_dir, tight, name="tight")
    provider_id, cloud = connection
    (node_id,) = add_ready_nodes(app_context, provider_id, cloud, 1, profile="tight")
    policy = policy_for("tight", settings)
    assert policy.remediation.ladder[:5] == ("reboot",) * 5 and policy.remediation.budget == 2

    def fail_until_decided() -> None:
        for _ in range(policy.failures_before_degraded):
            with app_context.database.session(write=True) as session:
                apply_result(session, node_id, FAIL, seconds=0.1, policy=policy, now=utcnow())

    fail_until_decided()
    for _ in range(2):
        skip_waits(app_context)
        drain(app_context)  # the reboot job
        skip_waits(app_context)
        fail_until_decided()  # still failing: the reboot failed; the next is decided
    assert steps(app_context, node_id) == [
        ("reboot", "failed"), ("reboot", "failed"), ("exhausted", "exhausted")
    ]  # fmt: skip
    with app_context.database.session() as session:
        reason = session.scalars(
            select(NodeRemediation.reason).where(NodeRemediation.action == "exhausted")
        ).one()
    assert "budget is spent: 2 attempts" in reason


def test_a_recovery_ends_the_step_as_succeeded_and_releasing_cancels_a_step(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    connection: tuple[int, hcloud.Client],
) -> None:
    provider_id, cloud = connection
    first, second = add_ready_nodes(app_context, provider_id, cloud, 2, profile=PROFILE)
    for _ in range(3):
        apply(app_context, first, FAIL)
    skip_waits(app_context)
    drain(app_context)
    assert steps(app_context, first) == [("reboot", "waiting")]
    skip_waits(app_context)
    apply(app_context, first, PASS)
    assert apply(app_context, first, PASS) == "recovered"
    assert steps(app_context, first) == [("reboot", "succeeded")]
    assert node_actions(app_context, first)[-2:] == ["node.recovered", "node.remediation_succeeded"]

    for _ in range(3):
        apply(app_context, second, FAIL)
    assert steps(app_context, second) == [("reboot", "queued")]
    released = client.delete(f"/api/nodes/{second}", headers=role_users[Role.operator].headers)
    assert released.status_code == 202, released.text
    with app_context.database.session() as session:
        job_id = session.scalars(
            select(NodeRemediation.job_id).where(NodeRemediation.node_id == second)
        ).one()
        assert session.get(Job, job_id).state == "canceled"  # type: ignore[union-attr]


def test_degraded_alerts_are_resent_every_n_checks(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    connection: tuple[int, hcloud.Client],
) -> None:
    provider_id, cloud = connection
    (node_id,) = add_ready_nodes(app_context, provider_id, cloud, 1)  # baseline: no remediation
    admin = role_users[Role.admin].headers
    for name, resend in (("every-2", 2), ("never", 0)):
        made = client.post("/api/webhooks", json={"name": name, "url": "http://127.0.0.1:9/",
                                                  "resend_every_checks": resend}, headers=admin)  # fmt: skip
        assert made.status_code == 201, made.text
    with app_context.database.session(write=True) as session:
        policy = policy_for("baseline", app_context.settings)
        for _ in range(policy.failures_before_degraded + 5):
            apply_result(session, node_id, FAIL, seconds=0.1, policy=policy, now=utcnow())
    with app_context.database.session() as session:
        rows = session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.body).where(
                WebhookDelivery.event_type == "node.degraded"
            )
        ).all()
    per_endpoint: dict[int, int] = {}
    for endpoint_id, _body in rows:
        per_endpoint[endpoint_id] = per_endpoint.get(endpoint_id, 0) + 1
    # The transition to both; then every 2nd of the 5 further failed checks (2 and 4) to every-2 only.
    assert sorted(per_endpoint.values()) == [1, 3]
    resends = sorted(json.loads(body)["data"].get("resend", 0) for _e, body in rows)
    assert resends == [0, 0, 2, 4]  # the transition (to both endpoints), then the 2nd and 4th checks


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("remediation: [reboot]\n", "'remediation' must be a mapping"),
        ("remediation:\n  enabled: yes please\n", "'remediation.enabled' must be true or false"),
        ("remediation:\n  reboots: -1\n", "'remediation.reboots' must be an integer between 0 and 10"),
        ("remediation:\n  window_seconds: 5\n", "'remediation.window_seconds' must be a number between 60"),
        ("remediation:\n  replace: 1\n", "'remediation.replace' is not a remediation setting"),
        ("remediation:\n  enabled: true\n  reboots: 0\n  reprovisions: 0\n  replaces: 0\n", "with no step"),
    ],
)
def test_a_bad_remediation_block_names_the_key(tmp_path: Path, block: str, message: str) -> None:
    write_profile(tmp_path, block, name="bad")
    with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace("'", "'")):
        load_profile(tmp_path / "bad")


def test_replacement_names_fit_hetzner() -> None:
    assert replacement_name("web-1", 7) == "web-1-r7"
    long = "a" * 60 + "-bc"
    name = replacement_name(long, 12345)
    assert len(name) <= 63 and name.endswith("-r12345") and "--" not in name


REPLACE_ONLY = "remediation:\n  enabled: true\n  reboots: 0\n  reprovisions: 0\n  replaces: 1\n"


def test_a_replace_resumed_after_its_swap_releases_the_old_server_not_the_new_one(
    app_context: AppContext,
    connection: tuple[int, hcloud.Client],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker lost between the swap (the node is on the new server) and the old server's release:
    the retry must release the old server, never the node's new one."""
    from nodewright.nodes import handlers
    from nodewright.watching import remediate

    write_profile(settings.resolved_profiles_dir, REPLACE_ONLY, name="swap")
    provider_id, cloud = connection
    (node_id,) = add_ready_nodes(app_context, provider_id, cloud, 1, profile="swap", ssh_port=closed_port())
    with app_context.database.session() as session:
        old_server = session.get(Node, node_id).server_id  # type: ignore[union-attr]
    policy = policy_for("swap", settings)
    for _ in range(policy.failures_before_degraded):
        with app_context.database.session(write=True) as session:
            apply_result(session, node_id, FAIL, seconds=0.1, policy=policy, now=utcnow())
    assert steps(app_context, node_id) == [("replace", "queued")]
    # The replacement's SSH stages pass without touching it (its address is the simulator's).
    for stage in ("connect", "provision", "verify"):
        monkeypatch.setattr(handlers, stage, lambda ctx, node: None)
    real_release = remediate._release
    calls: list[int] = []

    def release(ctx: object, provider: int, server_id: int, checkpoints: object) -> None:
        calls.append(server_id)
        if len(calls) == 1:
            raise RuntimeError("the worker was killed")  # after the swap, before the release
        real_release(ctx, provider, server_id, checkpoints)  # type: ignore[arg-type]

    monkeypatch.setattr(remediate, "_release", release)
    skip_waits(app_context)
    assert drain(app_context) == ["retry_wait"]
    skip_waits(app_context)
    assert drain(app_context) == ["succeeded"]
    with app_context.database.session() as session:
        node = session.get(Node, node_id)
        assert node is not None and node.server_id not in (None, old_server)
        new_server = node.server_id
        replacements = node.evidence["replacements"]
    assert calls == [old_server, old_server]
    assert [(r["old_server_id"], r["new_server_id"]) for r in replacements] == [(old_server, new_server)]
    assert {s.id for s in cloud.servers.get_all()} == {new_server}
    assert steps(app_context, node_id) == [("replace", "waiting")]


def test_no_step_acts_before_a_fleet_failing_together_is_degraded(
    app_context: AppContext, connection: tuple[int, hcloud.Client], sim: SimServer, settings: Settings
) -> None:
    """Two nodes fail from the same moment (a provider outage). Their checks are spread over the
    interval and each next check is jittered by +-10 %: the late node's third failure can land more
    than one interval after the early node's. The early node's step must not have started by then."""
    from nodewright.watching.policy import JITTER

    provider_id, cloud = connection
    early, late = add_ready_nodes(app_context, provider_id, cloud, 2, profile=PROFILE)
    policy = policy_for(PROFILE, settings)
    interval, k = policy.interval_seconds, policy.failures_before_degraded
    t0 = utcnow() - dt.timedelta(days=1)  # the outage starts; every time below is in the past

    def at(seconds: float) -> dt.datetime:
        return t0 + dt.timedelta(seconds=seconds)

    # The early node was checked just after t0, then at the shortest jitter; the late one had
    # passed just before t0 and is next checked at the longest jitter.
    checks = [(at(0.01 + i * interval * (1 - JITTER)), early) for i in range(k)]
    checks += [(at((i + 1) * interval * (1 + JITTER)), late) for i in range(k)]
    httpx.delete(sim.base_url + "/_sim/requests").raise_for_status()
    start_at: dt.datetime | None = None
    for when, node_id in sorted(checks):
        if start_at is not None and start_at <= when:
            drain(app_context)  # the early node's step is due before this check of the late node
            start_at = None
        with app_context.database.session(write=True) as session:
            apply_result(session, node_id, FAIL, seconds=0.1, policy=policy, now=when)
        if node_id == early and start_at is None and steps(app_context, early):
            with app_context.database.session() as session:
                job_id = session.scalars(select(NodeRemediation.job_id)).one()
                start_at = session.get(Job, job_id).run_after  # type: ignore[union-attr]
    drain(app_context)
    assert steps(app_context, early) == [("reboot", "held")]
    assert sim_requests(sim, "POST", "/actions/reboot") == []


def test_a_replacement_whose_job_died_is_listed_as_an_orphan(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    connection: tuple[int, hcloud.Client],
) -> None:
    """A worker killed on a replace's last attempt leaves its step ``running`` with a job that
    ended: the replacement server it made must not stay hidden from the orphans for ever."""
    from hcloud.images import Image
    from hcloud.server_types import ServerType

    from nodewright.nodes.reconcile import RECONCILE_ALL_KIND
    from nodewright.providers.acquisition import installation_id
    from nodewright.providers.base import LABEL_INSTALLATION, LABEL_NODE, LABEL_REPLACEMENT

    provider_id, cloud = connection
    (node_id,) = add_ready_nodes(app_context, provider_id, cloud, 1, profile=PROFILE)
    with app_context.database.session(write=True) as session:
        dead = enqueue(session, REMEDIATE_KIND, {"node_id": node_id, "remediation_id": 0})
        session.flush()
        dead.state, dead.error = "failed", {"code": "worker_lost", "message": "the worker was lost"}
        row = NodeRemediation(node_id=node_id, provider_id=provider_id, action="replace", attempt=1,
                              state="running", reason="", job_id=dead.id, detail={},
                              created_at=utcnow())  # fmt: skip
        session.add(row)
        session.flush()
        step_id = row.id
    labels = {LABEL_INSTALLATION: installation_id(app_context.database), LABEL_NODE: str(node_id),
              LABEL_REPLACEMENT: str(step_id)}  # fmt: skip
    made = cloud.servers.create("w0-r1", server_type=ServerType(name="cx23"),
                                image=Image(name="ubuntu-24.04"), labels=labels)  # fmt: skip
    made.action.wait_until_finished()
    with app_context.database.session(write=True) as session:
        enqueue(session, RECONCILE_ALL_KIND, {})
    drain(app_context)
    orphans = client.get("/api/orphans", headers=role_users[Role.viewer].headers).json()
    assert [o["server_id"] for o in orphans] == [made.server.id]


def _blocked_on_a_lock(ctx: AppContext, count: int) -> bool:
    with ctx.database.session() as session:
        waiting = session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar_one()
    return int(waiting) >= count


def test_a_sweep_and_a_check_degrading_a_node_do_not_deadlock_on_the_brake(
    db_kind: str, app_context: AppContext, connection: tuple[int, hcloud.Client]
) -> None:
    """PostgreSQL: a check's transaction holds its node's row (the node becomes degraded) and then
    evaluates the brake; a sweep of the connection at the same moment writes that node's server
    status. Taking the brake's lock before the nodes' rows made the two deadlock (one of them was
    aborted: a check result or a sweep lost, in the very outage the brake is for)."""
    if db_kind != "postgresql":
        pytest.skip("row locks: PostgreSQL only (SQLite serialises writers)")
    import threading

    from nodewright.watching import brake

    provider_id, cloud = connection
    node_id, _other = add_ready_nodes(app_context, provider_id, cloud, 2, profile=PROFILE)
    with app_context.database.session(write=True) as session:
        brake.evaluate(session, provider_id)  # the row exists
        session.execute(
            update(Node).where(Node.id == node_id).values(server_status="off")
        )  # the sweep fixes it
        enqueue(session, SWEEP_KIND, {"provider_id": provider_id}, max_attempts=1)
    outcome: list[str | None] = []
    with app_context.database.session(write=True) as check:
        check.execute(
            update(Node).where(Node.id == node_id).values(status="degraded")
        )  # the check's row lock

        def run_sweep() -> None:
            outcome.append(run_next(app_context.database, registry=default_registry))

        runner = threading.Thread(target=run_sweep)
        runner.start()
        deadline = time.monotonic() + 30
        while not _blocked_on_a_lock(app_context, 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _blocked_on_a_lock(app_context, 1), "the sweep never reached the node's row"
        brake.evaluate(check, provider_id)  # the check's decision, in its transaction
    runner.join(timeout=60)
    assert outcome == ["succeeded"]


def test_two_first_evaluations_of_a_brake_do_not_collide(
    db_kind: str, app_context: AppContext, connection: tuple[int, hcloud.Client]
) -> None:
    """PostgreSQL: the connection's brake row does not exist yet and two transactions evaluate it
    at once (a sweep and a check, two checks): the second insert must not fail its transaction."""
    if db_kind != "postgresql":
        pytest.skip("concurrent inserts: PostgreSQL only (SQLite serialises writers)")
    import threading

    from nodewright.db.models import RemediationBrake
    from nodewright.watching import brake

    provider_id, _cloud = connection
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with app_context.database.session(write=True) as session:
                brake.evaluate(session, provider_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with app_context.database.session(write=True) as first:
        brake.evaluate(first, provider_id)  # inserted, not committed
        runner = threading.Thread(target=second)
        runner.start()
        deadline = time.monotonic() + 30
        while not _blocked_on_a_lock(app_context, 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _blocked_on_a_lock(app_context, 1), "the second evaluation never waited"
    runner.join(timeout=60)
    assert errors == []
    with app_context.database.session() as session:
        assert session.get(RemediationBrake, provider_id) is not None


def test_a_step_decided_before_remediation_was_turned_off_does_nothing(
    app_context: AppContext, connection: tuple[int, hcloud.Client], sim: SimServer, settings: Settings
) -> None:
    provider_id, cloud = connection
    (node_id,) = add_ready_nodes(app_context, provider_id, cloud, 1, profile=PROFILE)
    for _ in range(3):
        apply(app_context, node_id, FAIL)
    assert steps(app_context, node_id) == [("reboot", "queued")]
    # The operator turns remediation off in the profile while the step waits for its start.
    shutil.rmtree(settings.resolved_profiles_dir / PROFILE)
    write_profile(settings.resolved_profiles_dir, REMEDIATION.replace("enabled: true", "enabled: false"))
    httpx.delete(sim.base_url + "/_sim/requests").raise_for_status()
    skip_waits(app_context)
    drain(app_context)
    assert steps(app_context, node_id) == [("reboot", "skipped")]
    assert sim_requests(sim, "POST", "/actions/reboot") == []


def test_a_step_reason_from_node_output_is_redacted_and_cleaned(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    connection: tuple[int, hcloud.Client],
) -> None:
    """A failed step's reason carries what failed (a check's output, which a node writes): the
    provider token it may echo is redacted and control characters are shown escaped, in the row,
    the API, the audit trail and the webhook body."""
    from nodewright.security.redaction import register_secret
    from nodewright.watching import remediation

    provider_id, cloud = connection
    (node_id,) = add_ready_nodes(app_context, provider_id, cloud, 1, profile=PROFILE)
    secret = "canary-" + "s3cr3t" * 6
    register_secret(secret)
    hook = client.post("/api/webhooks", json={"name": "ops", "url": "http://127.0.0.1:9/"},
                       headers=role_users[Role.admin].headers)  # fmt: skip
    assert hook.status_code == 201
    for _ in range(3):
        apply(app_context, node_id, FAIL)
    with app_context.database.session(write=True) as session:
        row = session.scalars(select(NodeRemediation).where(NodeRemediation.node_id == node_id)).one()
        node = session.get(Node, node_id)
        assert node is not None
        hostile = f"check 'app' failed: token {secret}\x1b]0;owned\x07\nnodewright: all good"
        remediation.finish(session, node, row, "failed", hostile, actor="test", now=utcnow())
    health = client.get(f"/api/nodes/{node_id}/health", headers=role_users[Role.viewer].headers).text
    with app_context.database.session() as session:
        stored = session.get(NodeRemediation, row.id)
        assert stored is not None
        audit_rows = " ".join(str(a.detail) for a in session.scalars(select(AuditEvent)))
        bodies = " ".join(session.scalars(select(WebhookDelivery.body)))
    assert "[REDACTED]" in stored.reason and "\x1b" not in stored.reason and "\n" not in stored.reason
    assert "\\x1b]0;owned\\x07\\nnodewright" in stored.reason  # shown, inert, on one line
    for where in (health, audit_rows, bodies, stored.reason):
        assert secret not in where


def test_a_step_whose_job_died_is_settled_when_the_node_recovers_or_leaves(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    connection: tuple[int, hcloud.Client],
) -> None:
    """A step left ``running`` by a job that ended for good (its worker killed on the last attempt)
    is failed when the node recovers, and the replacement host key it stored is deleted; steps
    queued or waiting on a node that is released are closed by the tick."""
    from nodewright.db.models import StoredSecret
    from nodewright.providers.acquisition import generate_host_key
    from nodewright.watching.sweep import TICK_KIND

    provider_id, cloud = connection
    first, second = add_ready_nodes(app_context, provider_id, cloud, 2, profile=PROFILE)
    for _ in range(3):
        apply(app_context, first, FAIL)
    with app_context.database.session(write=True) as session:
        stored = app_context.box.store(session, "node_host_key", generate_host_key().private_openssh)
        row = session.scalars(select(NodeRemediation).where(NodeRemediation.node_id == first)).one()
        row.state, row.detail = "running", {"host_key_secret_id": stored.id}
        job = session.get(Job, row.job_id)
        assert job is not None
        job.state = "failed"  # what the engine records when the last attempt's worker is lost
        secret_id = stored.id
    apply(app_context, first, PASS)
    assert apply(app_context, first, PASS) == "recovered"
    assert steps(app_context, first) == [("reboot", "failed")]
    with app_context.database.session() as session:
        assert session.get(StoredSecret, secret_id) is None

    for _ in range(3):
        apply(app_context, second, FAIL)
    skip_waits(app_context)
    drain(app_context)
    assert steps(app_context, second) == [("reboot", "waiting")]
    released = client.delete(f"/api/nodes/{second}", headers=role_users[Role.operator].headers)
    assert released.status_code == 202, released.text
    drain(app_context)  # the release
    with app_context.database.session(write=True) as session:
        enqueue(session, TICK_KIND, {}, max_attempts=1)
    drain(app_context)
    assert steps(app_context, second) == [("reboot", "skipped")]
