# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""The secret canary over whole node lifecycles, on each database, with every process real.

``nodewright serve`` and a ``nodewright worker`` (process mode: one child per job) run as the
operator runs them, against the in-process simulator whose servers are real sshd nodes; Ansible
provisions them. Three nodes go through: one made by ``nodewright smoke --keep`` (a real CLI process:
create -> ready, its summary.md and JUnit report written), then deleted; one whose profile task fails
(then deleted), one the provider refuses (a fault injected through ``/_sim``, then deleted).

The secrets: the provider token, nodewright's client SSH private key (one per connection), every
node's host private key (one per node; each goes to the provider in cloud-init user data), and the
signing secrets of a webhook endpoint (created, then rotated) that receives every node event of the
cycle on a real loopback receiver, sent by the worker's ``webhooks.deliver`` jobs. The watcher runs
too (5 s interval, no grace): the ready node is checked, and paused by a maintenance window, before
it is released. Each secret is looked for, in all the forms of ``tests.support.canary.needles``, in:
every API answer of the cycle and of the node, job, event-stream, evidence, audit, provider, orphan,
watching (``/api/nodes/{id}/health``, ``/api/maintenance``, ``/api/nodes?health=``) and webhook
(endpoints, delivery log) endpoints afterwards; the smoke run's stdout and stderr, its summary.md,
its JUnit report and the API answers it kept; the dashboard pages (``/webhooks`` too); every
delivery as the receiver got it (body and headers); the logs of serve, worker and simulator (DEBUG);
the simulator's own views; a plaintext dump of the database (every row of every table; on PostgreSQL
pg_dump too); the command line and environment of every process seen while the cycle ran (sampled
from /proc in a background thread: serve, worker, job children, ssh-agent, ssh-add, ssh,
ansible-playbook, the simulator and its nodes' processes); and every file left in the data
directory, the test's directory (the SQLite file and its WAL included), the processes' TMPDIR (where
ansible-runner's private data directories and ssh control directories go), /tmp and /dev/shm (files
changed during the test) and the simulator's node root.

Where the secrets may be, and nowhere else:
- a webhook signing secret: in the answer that created it (the rotated one: of the rotation), once;
- the database, encrypted (``stored_secrets``): the token, the client key, every host key and the
  webhook secrets;
- ``<data dir>/secret.keys`` (0600, in a 0700 directory) holds the keys that decrypt them; it is not
  a secret value and holds none of the secrets;
- the client private key has no file at all: it lives in a per-job ssh-agent's memory, added
  through a pipe;
- a host private key lives on its node (the provider's disk; the simulator's node root), 0600,
  while the node exists; that is the one allowed file, checked while the first node is ready and
  gone with the node.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
import yaml

from nodewright.context import AppContext
from nodewright.db.models import Node
from nodewright.providers.acquisition import load_client_private_key
from nodewright.security.redaction import RedactingFilter, install_logging_filter
from nodewright.security.roles import Role
from nodewright.security.secretbox import KEY_FILE_NAME
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, ssh_sim_server  # noqa: F401
from tests.support import canary
from tests.support.apps import TEST_PASSWORD, RoleUser, create_role_users, make_settings, opened_context
from tests.support.live_server import serve_process, worker_process
from tests.support.system import require_binary
from tests.support.webhook_receiver import Receiver, webhook_receiver

FAILING_TASK = "install the canary app"
# On its node, a host private key is in sshd's key file and in the node's copy of its user data
# (as cloud-init keeps /var/lib/cloud/instance/user-data.txt): both 0600 root.
NODE_HOST_KEY_FILES = ("/etc/ssh/ssh_host_ed25519_key", "/var/lib/cloud/seed/nodewright/seed.json")


@dataclass
class Recorder:
    """Every answer the control plane gave during the test, as text."""

    answers: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.answers.append((f"{response.request.method} {response.request.url} -> {response.status_code}",
                             response.text))  # fmt: skip


def write_failing_profile(profiles: Path) -> None:
    directory = profiles / "canary-fails"
    directory.mkdir(parents=True)
    (directory / "profile.yml").write_text(yaml.safe_dump({"version": "1", "checks": []}))
    task = {"name": FAILING_TASK, "ansible.builtin.shell": "echo 'the app did not install' >&2; exit 3"}
    play = {"name": "canary", "hosts": "all", "gather_facts": False, "tasks": [task]}
    (directory / "playbook.yml").write_text(yaml.safe_dump([play]))


def wait_for(api: httpx.Client, node_id: int, *statuses: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    node: dict[str, Any] = {}
    while time.monotonic() < deadline:
        node = api.get(f"/api/nodes/{node_id}").json()
        if node["status"] in statuses:
            return node
        time.sleep(0.3)
    raise AssertionError(f"node {node_id} stayed {node.get('status')}: {node.get('error')}")


def dashboard_login(web: httpx.Client, username: str) -> None:
    def csrf(html: str) -> str:
        return html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

    token = csrf(web.get("/login").text)
    signed_in = web.post(
        "/login", data={"username": username, "password": TEST_PASSWORD, "csrf_token": token}
    )
    assert signed_in.status_code == 303, signed_in.text


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """The TMPDIR of serve and worker: short (ssh's control sockets need short paths) and theirs
    alone, so that everything they leave in a temporary directory is found."""
    path = Path(tempfile.mkdtemp(prefix="nwcanary-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.db_only(
    "postgresql",
    reason="minutes of real nodes: once, on PostgreSQL; the stores are the same code on both databases",
)
def test_secrets_never_leak_over_node_lifecycles(
    db_url: str,
    tmp_path: Path,
    short_tmp: Path,
    ssh_sim_server: SimServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_binary("ssh-agent")
    require_binary("ssh-add")
    sim = ssh_sim_server
    httpx.post(sim.base_url + "/_sim/reset").raise_for_status()
    assert sim.runtime is not None and sim.runtime.nodes is not None
    sim_root = sim.runtime.nodes.root
    since = canary.started()
    data_dir = tmp_path / "data"
    # No NODEWRIGHT_SECRET_KEYS anywhere: the key ring is made once, in <data dir>/secret.keys.
    settings = make_settings(db_url, data_dir, secret_keys=None)
    install_logging_filter(logging.getLogger())  # as `nodewright sim` does for the simulator's logs
    caplog.handler.addFilter(RedactingFilter())
    recorder = Recorder()
    token = random_token()
    host_keys: dict[str, str] = {}  # read while each node exists (its release deletes the key)
    host_key_holders: list[tuple[Path, int]] = []
    node_dirs: list[str] = []
    webhook_secrets: dict[str, str] = {}
    with (
        caplog.at_level(logging.DEBUG),
        canary.ProcessSampler(watch=[short_tmp]) as sampler,
        opened_context(settings) as ctx,
        webhook_receiver() as receiver,
    ):
        users = create_role_users(ctx)
        write_failing_profile(data_dir / "profiles")  # once the app made the data directory (0700)
        env: dict[str, str | None] = {"NODEWRIGHT_SECRET_KEYS": None, "TMPDIR": str(short_tmp)}
        with (
            serve_process(db_url, data_dir, extra_env=env, log_level="DEBUG", webhook_endpoints="http://127.0.0.1:",
                          watch_interval_seconds=5, watch_grace_seconds=0) as server,
            worker_process(server, "--concurrency", "2", "--mode", "process"),
            httpx.Client(base_url=server.url, event_hooks={"response": [recorder]}, timeout=30) as admin,
            httpx.Client(base_url=server.url, event_hooks={"response": [recorder]}, timeout=30) as web,
            httpx.Client(base_url=server.url, event_hooks={"response": [recorder]}, timeout=30) as admin_web,
        ):  # fmt: skip
            admin.headers["Authorization"] = users[Role.admin].headers["Authorization"]
            hook_id = add_webhook(admin, receiver, webhook_secrets)
            smoke = Smoke(server.url, users[Role.operator].token, tmp_path / "smoke")
            provider_id, node_ids, job_ids = run_cycles(
                admin, sim, token, ctx, host_keys, host_key_holders, node_dirs, smoke
            )
            wait_for_deliveries(admin, hook_id)
            read_everything(admin, web, users, provider_id, node_ids, job_ids)
            read_watching_and_webhooks(admin, admin_web, users, node_ids, hook_id)
            sim_views = [
                httpx.get(sim.base_url + "/_sim/requests?limit=100000").text,
                httpx.get(sim.base_url + "/_sim/servers").text,
            ]
        # serve and the worker are stopped: what they leave behind is what is left.
        logs = {"serve": server.output(), "worker": server.log.with_name("worker.log").read_text()}

        # --- the secrets, read back with the app's own secret box ---------------------------------
        client_key = load_client_private_key(ctx.database, ctx.box, provider_id).reveal()
        secrets = {"provider token": token, "client private key": client_key}
        secrets.update(host_keys)
        assert all("OPENSSH PRIVATE KEY" in v for k, v in secrets.items() if k.endswith("private key"))
        for name, value in list(webhook_secrets.items()):
            secrets[name] = value
            secrets[f"{name} (key alone)"] = value.removeprefix("whsec_")
        dumps = {"database dump": canary.database_dump(ctx.database)}
    if ctx.database.engine.dialect.name == "postgresql":
        dumped = canary.pg_dump(db_url)
        assert dumped is not None or not shutil.which("pg_dump")
        if dumped is not None:
            dumps["pg_dump"] = dumped

    findings = canary.Findings([n for name, value in secrets.items() for n in canary.needles(name, value)])
    control = canary.Findings(findings.needles)  # the search finds a secret when one is there
    control.search(
        "control", "a base64 blob", base64.b64encode(b"xy" + secrets["client private key"].encode())
    )
    control.search("control", "an upper-cased token", "Bearer " + token.upper())
    assert len(control.hits) >= 2

    # --- where the secrets must not be ---------------------------------------------------------------
    shown_once = 0
    for place, text in recorder.answers:
        if place.startswith(("POST ", "PATCH ")) and "/api/webhooks" in place and "-> 20" in place:
            # The one answer a signing secret may be in: the creation's or rotation's, once.
            for value in webhook_secrets.values():
                if value in text:
                    shown_once += 1
                    assert text.count(value) == 1, place
                    text = text.replace(value, "")
        findings.search("API answer or page", place, text)
    assert shown_once == len(webhook_secrets) == 2
    for i, message in enumerate(receiver.received):
        findings.search("webhook delivery", f"delivery {i} body", message.body)
        findings.search("webhook delivery", f"delivery {i} headers", repr(message.headers))
    for name, text in logs.items():
        findings.search("log", name, text)
    findings.search("CLI output", "smoke stdout", smoke.done.stdout)
    findings.search("CLI output", "smoke stderr", smoke.done.stderr)
    for report in (smoke.summary_md, smoke.junit):  # also among the files below; by name here
        findings.search("smoke report", report.name, report.read_bytes())
    findings.search("log", "simulator and test process (caplog)", caplog.text)
    for i, text in enumerate(sim_views):
        findings.search("simulator view", f"/_sim view {i}", text)
    for name, text in dumps.items():
        findings.search("database", name, text)
    sampler.search(findings)
    roots = [data_dir, tmp_path, short_tmp, sim_root]
    files = set(canary.regular_files(roots))
    files |= set(canary.regular_files([Path(tempfile.gettempdir()), Path("/dev/shm")], since=since))
    scanned = canary.search_files(findings, "file", sorted(files))

    assert findings.hits == [], "\n".join(findings.hits)

    # --- the test saw what it claims to have searched -----------------------------------------------
    commands = sampler.commands()
    # (ssh-add lives a few milliseconds: it is searched when seen, not required to be seen.)
    for what in ("ansible-playbook", "ssh-agent", "ControlPersist", "sshd", "nodewright.cli serve",
                 "nodewright.cli worker", "multiprocessing"):  # fmt: skip
        assert any(what in c for c in commands), f"the sampler never saw {what}"
    assert any(f"{short_tmp}/nw-ansible-" in c for c in commands), "ansible-runner ran outside TMPDIR"
    assert any(b"NODEWRIGHT_JOB_PROCESS=" in s.environ for s in sampler.samples.values())
    assert sampler.passes > 50
    seen_files = [path for path, _, _ in sampler.files]
    assert any("/nw-ansible-" in p and "/inventory/" in p for p in seen_files), seen_files
    assert any("/nw-ansible-" in p and "/artifacts/" in p for p in seen_files), seen_files
    assert len(recorder.answers) > 40
    # The deliveries, health checks and maintenance that were searched did happen.
    delivered = [json.loads(m.body)["type"] for m in receiver.received]
    assert {"node.ready", "node.failed", "node.released"} <= set(delivered), delivered
    assert all(m.headers["webhook-signature"].startswith("v1,") for m in receiver.received)
    everything = "\n".join(text for _, text in recorder.answers)
    assert '"ok":true' in everything.replace(" ", "") and "kernel canary" in everything
    assert "task: Node marker" in everything and FAILING_TASK in everything  # job events were read
    assert "capacity_unavailable" in everything and "provisioning_failed" in everything
    assert "POST /api/nodes" in logs["serve"] and "started (process x2)" in logs["worker"]
    assert smoke.name in dumps["database dump"] and "stored_secrets" in dumps["database dump"]
    # The smoke reports that were searched say what they should (the searched text is the real one).
    assert smoke.summary_md.read_text().startswith("# nodewright smoke: PASSED\n")
    assert (
        "kept (--keep)" in smoke.summary_md.read_text()
        and "| POST   | /servers " in smoke.summary_md.read_text()
    )
    assert smoke.summary_md in files and smoke.junit in files
    suite = ElementTree.parse(smoke.junit).getroot()[0]
    assert (
        suite.get("name") == "nodewright smoke"
        and suite.get("failures") == "0"
        and suite.get("skipped") == "1"
    )
    assert data_dir / "serve.log" in files and data_dir / KEY_FILE_NAME in files
    assert len(scanned) > 5 and findings.searched["file"] == len(scanned)

    # --- where the secrets may be --------------------------------------------------------------------
    key_file = data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert host_key_holders, "the ready node's host key was not on its disk"
    assert any(str(h).endswith(NODE_HOST_KEY_FILES[0]) for h, _ in host_key_holders)
    for holder, mode in host_key_holders:
        assert str(holder).startswith(node_dirs[0] + "/"), f"a host key outside its node: {holder}"
        assert str(holder).endswith(NODE_HOST_KEY_FILES), f"an unexpected copy on the node: {holder}"
        assert mode == 0o600, f"{holder} has mode {mode:o}"
    assert not any(Path(d).exists() for d in node_dirs), "a deleted node's disk is left"


@dataclass
class Smoke:
    """``nodewright smoke`` as an operator runs it, and what it left."""

    url: str
    api_token: str
    evidence_dir: Path
    name: str = ""
    done: subprocess.CompletedProcess[str] = field(init=False)

    def run(self, *args: str) -> dict[str, Any]:
        """Run it; its summary.json."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
        env.update({"NODEWRIGHT_URL": self.url, "NODEWRIGHT_TOKEN": self.api_token})
        command = [sys.executable, "-m", "nodewright.cli", "smoke", "--evidence-dir", str(self.evidence_dir),
                   "--junit", str(self.junit), *args]  # fmt: skip
        self.done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert self.done.returncode == 0, self.done.stdout + self.done.stderr
        (folder,) = self.evidence_dir.iterdir()
        self.name = folder.name
        summary: dict[str, Any] = json.loads((folder / "summary.json").read_text())
        return summary

    @property
    def junit(self) -> Path:
        return self.evidence_dir.parent / "smoke-junit.xml"

    @property
    def summary_md(self) -> Path:
        return self.evidence_dir / self.name / "summary.md"


def run_cycles(
    api: httpx.Client,
    sim: SimServer,
    token: str,
    ctx: AppContext,
    host_keys: dict[str, str],
    host_key_holders: list[tuple[Path, int]],
    node_dirs: list[str],
    smoke: Smoke,
) -> tuple[int, list[int], list[int]]:
    """Connect the provider; one node made ready by ``nodewright smoke --keep`` then deleted, one
    failed in provisioning then deleted, one refused by the provider then deleted. The provider id,
    node ids and job ids."""
    body = {"kind": "hetzner", "name": "canary", "token": token, "api_endpoint": sim.api_url,
            "ssh_port": sim.config.ssh_port}  # fmt: skip
    connected = api.post("/api/providers", json=body)
    assert connected.status_code == 201, connected.text
    provider_id: int = connected.json()["id"]
    assert api.post(f"/api/providers/{provider_id}/check").status_code == 200
    base = {"provider_id": provider_id, "location": "fsn1", "server_type": "cx23", "image": "ubuntu-24.04"}
    node_ids: list[int] = []
    job_ids: list[int] = []

    def create(name: str, **extra: str) -> int:
        created = api.post("/api/nodes", json={**base, "name": name, **extra})
        assert created.status_code == 202, created.text
        node_ids.append(created.json()["node"]["id"])
        job_ids.append(created.json()["job"]["id"])
        return node_ids[-1]

    def keep_host_key(node_id: int) -> str:
        with ctx.database.session() as session:
            row = session.get(Node, node_id)
            assert row is not None and row.host_key_secret_id is not None
            key = ctx.box.load(session, row.host_key_secret_id).reveal()
        host_keys[f"host private key of node {node_id}"] = key
        return key

    def release(node_id: int) -> None:
        keep_host_key(node_id)
        released = api.delete(f"/api/nodes/{node_id}")
        assert released.status_code == 202, released.text
        job_ids.append(released.json()["job"]["id"])
        # A failed node is "failed" until the release job starts: wait for the job, not the node.
        deadline = time.monotonic() + 90
        while api.get(f"/api/jobs/{job_ids[-1]}").json()["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the release job did not finish"
            time.sleep(0.3)
        gone = api.get(f"/api/nodes/{node_id}").json()
        assert gone["status"] == "released", gone["error"]

    # 1. smoke --keep: create -> ready (the command's reports are searched too) -> delete
    summary = smoke.run("--provider", "canary", "--keep")
    ready_id = int(summary["node_id"])
    node_ids.append(ready_id)
    job_ids.append(int(summary["provision_job"]))
    ready = api.get(f"/api/nodes/{ready_id}").json()
    assert ready["status"] == "ready" and summary["ok"] and summary["kept"], (ready["error"], summary)
    node_dir = str(httpx.get(f"{sim.base_url}/_sim/servers").json()["servers"][0]["ssh"]["node"]["directory"])
    node_dirs.append(node_dir)
    for holder in canary.files_holding([Path(node_dir)], keep_host_key(ready_id)):
        host_key_holders.append((holder, stat.S_IMODE(holder.stat().st_mode)))
    watch_and_pause(api, ready_id)
    release(ready_id)

    # 2. a profile task fails -> failed -> delete
    failing_id = create("canary-fails", profile="canary-fails")
    failed = wait_for(api, failing_id, "failed", "ready")
    assert failed["status"] == "failed" and failed["error"]["code"] == "provisioning_failed", failed
    node_dirs.append(
        str(httpx.get(f"{sim.base_url}/_sim/servers").json()["servers"][0]["ssh"]["node"]["directory"])
    )
    release(failing_id)

    # 3. the provider refuses the server -> failed -> delete
    with sim.control() as control:
        control.add_fault("error", method="POST", path="/v1/servers", code="resource_unavailable", count=None)
        refused_id = create("canary-refused")
        refused = wait_for(api, refused_id, "failed", "ready")
        control.clear_faults()
    assert refused["status"] == "failed" and refused["error"]["code"] == "capacity_unavailable", refused
    release(refused_id)
    assert httpx.get(f"{sim.base_url}/_sim/servers").json()["servers"] == []
    assert len(host_keys) == len(node_ids) == 3
    return provider_id, node_ids, job_ids


def read_everything(
    admin: httpx.Client,
    web: httpx.Client,
    users: dict[Role, RoleUser],
    provider_id: int,
    node_ids: list[int],
    job_ids: list[int],
) -> None:
    """Every read endpoint and page that shows a node, job, provider or the audit log."""
    listed = admin.get("/api/jobs?limit=200").json()["items"]
    all_jobs = sorted({*job_ids, *(j["id"] for j in listed)})
    paths = ["/api/nodes", "/api/jobs?limit=200", "/api/orphans", "/api/providers",
             f"/api/providers/{provider_id}", "/api/audit?limit=500", "/api/gates", "/metrics", "/readyz",
             "/healthz"]  # fmt: skip
    for node_id in node_ids:
        paths += [f"/api/nodes/{node_id}", f"/api/nodes/{node_id}/evidence"]
    for job_id in all_jobs:
        paths += [f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/events?limit=1000"]
    for path in paths:
        answer = admin.get(path)
        assert answer.status_code == 200, (path, answer.text)
    for job_id in job_ids:  # finished: their streams end after the last event
        stream = admin.get(f"/api/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
        assert stream.status_code == 200 and "data:" in stream.text, stream.text
    dashboard_login(web, users[Role.operator].username)
    pages = ["/", "/nodes", "/providers", f"/providers?catalog={provider_id}", "/jobs"]
    pages += [f"/nodes/{n}" for n in node_ids] + [f"/jobs/{j}" for j in all_jobs]
    for page in pages:
        shown = web.get(page)
        assert shown.status_code == 200, (page, shown.text[:500])


def add_webhook(api: httpx.Client, receiver: Receiver, webhook_secrets: dict[str, str]) -> int:
    """A webhook endpoint for every event, its secret rotated once (both sign during the overlap)."""
    created = api.post("/api/webhooks", json={"name": "canary", "url": receiver.url})
    assert created.status_code == 201, created.text
    hook_id: int = created.json()["id"]
    webhook_secrets["webhook secret"] = created.json()["secret"]
    rotated = api.post(f"/api/webhooks/{hook_id}/rotate", json={})
    assert rotated.status_code == 200, rotated.text
    webhook_secrets["rotated webhook secret"] = rotated.json()["secret"]
    return hook_id


def watch_and_pause(api: httpx.Client, node_id: int) -> None:
    """While the node is ready: the watcher checks it (over SSH, on the worker), then a maintenance
    window covers it, is read back and ended."""
    deadline = time.monotonic() + 120
    while not api.get(f"/api/nodes/{node_id}/health").json()["checks"]:
        assert time.monotonic() < deadline, "the watcher never checked the ready node"
        time.sleep(0.5)
    pause = api.post("/api/maintenance", json={"node_id": node_id, "reason": "kernel canary",
                                                "duration_seconds": 600})  # fmt: skip
    assert pause.status_code == 201, pause.text
    assert api.get("/api/nodes", params={"health": "paused"}).json()["total"] == 1
    assert api.get(f"/api/nodes/{node_id}/health").status_code == 200
    assert api.delete(f"/api/maintenance/{pause.json()['id']}").status_code == 200


def wait_for_deliveries(api: httpx.Client, hook_id: int) -> None:
    """Every node event of the cycle delivered (a deadline, not a timing assertion)."""
    wanted = {"node.ready", "node.failed", "node.released"}
    deadline = time.monotonic() + 120
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = api.get(f"/api/webhooks/{hook_id}/deliveries").json()
        if wanted <= {r["event_type"] for r in rows} and all(r["status"] == "succeeded" for r in rows):
            return
        time.sleep(0.5)
    raise AssertionError(f"deliveries not done: {[(r['event_type'], r['status']) for r in rows]}")


def read_watching_and_webhooks(
    admin: httpx.Client,
    admin_web: httpx.Client,
    users: dict[Role, RoleUser],
    node_ids: list[int],
    hook_id: int,
) -> None:
    """The watching and webhook read endpoints, and the /webhooks pages (admin)."""
    paths = ["/api/maintenance?all=true", "/api/webhooks", f"/api/webhooks/{hook_id}",
             f"/api/webhooks/{hook_id}/deliveries"]  # fmt: skip
    paths += [
        f"/api/nodes?health={h}" for h in ("passing", "failing", "degraded", "unknown", "paused", "unwatched")
    ]
    paths += [f"/api/nodes/{n}/health?limit=500" for n in node_ids]
    for path in paths:
        answer = admin.get(path)
        assert answer.status_code == 200, (path, answer.text)
    dashboard_login(admin_web, users[Role.admin].username)
    for page in ("/webhooks", f"/webhooks?endpoint={hook_id}"):
        shown = admin_web.get(page)
        assert shown.status_code == 200, (page, shown.text[:500])
