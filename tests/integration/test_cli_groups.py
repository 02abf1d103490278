# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""The API command groups (providers, jobs, orphans, audit, users, tokens) and ``nodes list`` as an
operator runs them: real subprocesses against a real server on loopback and the Hetzner simulator.
Each is checked in its table and its ``-o json``, with its exit codes; no provider token ever
appears in output, arguments or the environment of the command that reads it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import random_token, sim, sim_server  # noqa: F401
from tests.support.apps import RoleUser
from tests.support.cli import Done, invoke
from tests.support.live_server import live_server

pytestmark = pytest.mark.db_only("sqlite", reason="the CLI talks HTTP; the API tests cover the databases")


@dataclass
class Cli:
    url: str
    users: dict[Role, RoleUser]
    sim: SimServer

    def env(self, role: Role | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
        env["NODEWRIGHT_URL"] = self.url
        env["NO_COLOR"] = "1"
        if role is not None:
            env["NODEWRIGHT_TOKEN"] = self.users[role].token
        return env

    def run(self, args: list[str], *, role: Role | None = Role.admin, stdin: str = "") -> Done:
        """The command in this process (the command line as a subprocess costs a second per call;
        the one test that needs a process of its own starts one)."""
        return invoke(args, self.env(role), stdin)

    def json(self, args: list[str], role: Role = Role.admin) -> object:
        done = self.run([*args, "-o", "json"], role=role)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def cli(
    settings: Settings, app_context: AppContext, role_users: dict[Role, RoleUser], sim: SimServer
) -> Iterator[Cli]:
    app = create_app(settings, ctx=app_context, start_workers=False)
    with live_server(app) as url:
        yield Cli(url, role_users, sim)


def test_providers_add_list_show_check_catalog_rotate_remove(cli: Cli) -> None:
    token = random_token()
    # The token is read from stdin: while the command waits for it, neither its arguments nor its
    # environment hold it (what `ps` and /proc show other users).
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodewright.cli", "providers", "add", "--name", "lab", "--endpoint",
         cli.sim.api_url, "--ssh-port", str(cli.sim.config.ssh_port)],
        env=cli.env(Role.admin), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        seen = Path(f"/proc/{proc.pid}/cmdline").read_bytes() + Path(f"/proc/{proc.pid}/environ").read_bytes()
        out, err = proc.communicate(token + "\n", timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert token.encode() not in seen
    assert proc.returncode == 0, out + err
    assert "provider 1 lab (hetzner): ok" in out and token not in out + err

    listed = cli.run(["providers", "list"])
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "ID",
        "NAME",
        "KIND",
        "STATUS",
        "CHECKED",
        "BUDGET",
        "ENDPOINT",
    ]
    assert " lab " in listed.stdout and token not in listed.stdout
    rows = cli.json(["providers", "list"])
    assert isinstance(rows, list) and rows[0]["name"] == "lab" and token not in json.dumps(rows)
    assert "provider 1 lab" in cli.run(["providers", "show", "lab"]).stdout  # by name
    assert cli.run(["providers", "show", "nope"]).returncode == 3
    assert cli.run(["providers", "check", "1"]).returncode == 0

    catalog = cli.run(["providers", "catalog", "lab"])
    assert catalog.returncode == 0, catalog.stderr
    cells = [re.split(r"\s{2,}", line) for line in catalog.stdout.splitlines()[1:]]
    prices = [float(row[4]) for row in cells if row[4] != "-"]
    assert prices and prices == sorted(prices), catalog.stdout  # cheapest first
    assert "fsn1" in cli.run(["providers", "catalog", "lab", "--show", "locations"]).stdout
    assert cli.run(["providers", "catalog", "lab", "--show", "prices"]).returncode == 2

    new = random_token()
    rotated = cli.run(["providers", "rotate", "lab"], stdin=new + "\n")
    assert rotated.returncode == 0 and new not in rotated.stdout + rotated.stderr
    assert cli.run(["providers", "rotate", "lab"], stdin="\n").returncode == 2  # an empty token: usage
    assert cli.run(["providers", "remove", "lab"], role=Role.viewer).returncode == 4
    # The secret-canary check of the CLI's output paths: both tokens, in every format of every
    # command that shows the connection or its history.
    outputs = [out, err, rotated.stdout, rotated.stderr]
    for args in (["providers", "list"], ["providers", "show", "lab"], ["providers", "check", "lab"],
                 ["audit"], ["jobs", "list"]):  # fmt: skip
        for shape in ("table", "json", "yaml", "columns=id,name,token,token_fingerprint,detail"):
            done = cli.run([*args, "-o", shape])
            outputs += [done.stdout, done.stderr]
    assert all(secret not in text for secret in (token, new) for text in outputs)
    removed = cli.run(["providers", "remove", "lab", "--yes"])
    assert removed.returncode == 0, removed.stderr
    assert cli.json(["providers", "list"]) == []
    assert "no provider connections" in cli.run(["providers", "list"]).stdout


def test_jobs_orphans_audit_and_nodes_list(cli: Cli, tmp_path: Path) -> None:
    assert cli.run(["providers", "add", "--name", "lab", "--endpoint", cli.sim.api_url],
                   stdin=random_token()).returncode == 0  # fmt: skip
    # A connection named with digits only stays reachable by its name (ids first, as hcloud does).
    assert cli.run(["providers", "add", "--name", "2024", "--endpoint", cli.sim.api_url],
                   stdin=random_token()).returncode == 0  # fmt: skip
    by_name = cli.json(["providers", "show", "2024"])
    assert isinstance(by_name, dict) and by_name["name"] == "2024" and by_name["id"] == 2
    by_id = cli.json(["providers", "show", "1"])
    assert isinstance(by_id, dict) and by_id["name"] == "lab"
    assert cli.run(["providers", "remove", "2024", "--yes"]).returncode == 0
    private = tmp_path / "id_ed25519"
    private.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    base = [
        "nodes",
        "create",
        "--provider",
        "1",
        "--location",
        "fsn1",
        "--type",
        "cx23",
        "--image",
        "ubuntu-24.04",
    ]
    refused = cli.run([*base, "--name", "web-1", "--ssh-key", str(private)])
    assert (
        refused.returncode == 2
        and "is a private key" in refused.stderr
        and "nothing was sent" in refused.stderr
    )
    nothing = cli.json(["nodes", "list"])
    assert isinstance(nothing, dict) and nothing["items"] == []
    assert "b3BlbnNzaC1rZXkt" not in json.dumps(cli.json(["audit"]))  # nothing of it reached the server

    created = cli.run([*base, "--name", "web-1"])
    assert created.returncode == 0, created.stderr
    listed = cli.run(["nodes", "list"])
    header = listed.stdout.splitlines()[0].split()
    assert header == ["ID", "NAME", "STATUS", "HEALTH", "ADDRESS", "WHERE", "EUR/MONTH", "AGE"], listed.stdout
    assert "web-1" in listed.stdout and "ago" in listed.stdout

    # No worker runs in this server: the job waits, and says so.
    jobs = cli.run(["jobs", "list"])
    assert jobs.returncode == 0 and "queued, waiting for a worker" in jobs.stdout, jobs.stdout
    page = cli.json(["jobs", "list", "--kind", "nodes.provision"])
    assert isinstance(page, dict)
    job_id = page["items"][0]["id"]
    assert f"job {job_id} nodes.provision: queued" in cli.run(["jobs", "show", str(job_id)]).stdout
    assert cli.run(["jobs", "show", "99999"]).returncode == 3
    assert cli.run(["jobs", "cancel", str(job_id)], role=Role.viewer).returncode == 4
    canceled = cli.run(["jobs", "cancel", str(job_id)])
    assert canceled.returncode == 0 and "canceled" in canceled.stdout, canceled.stdout + canceled.stderr
    follow = cli.run(["jobs", "logs", str(job_id), "--follow"])  # a finished job: prints and ends
    assert follow.returncode == 1 and f"job {job_id} canceled" in follow.stderr
    assert cli.run(["jobs", "list", "--state", "sleeping"]).returncode == 2

    logs = cli.run(["nodes", "logs", "web-1"])
    assert logs.returncode == 0, logs.stderr
    every = cli.run(["nodes", "logs", "web-1", "--all"])
    assert every.returncode == 0 and f"== job {job_id} (the node's latest)" in every.stdout, every.stdout
    followed = cli.run(["nodes", "logs", "web-1", "-f"])
    assert followed.returncode == 1 and f"job {job_id} canceled" in followed.stderr
    assert cli.run(["nodes", "logs", "nope"]).returncode == 3

    assert "no orphaned servers" in cli.run(["orphans", "list"]).stdout
    assert cli.json(["orphans", "list", "--provider", "lab"]) == []
    assert cli.run(["orphans", "adopt", "4242"]).returncode == 3

    audit = cli.run(["audit", "--action", "provider."])
    assert audit.returncode == 0 and "provider.create" in audit.stdout and "job.cancel" not in audit.stdout
    entries = cli.json(["audit", "--target", "job:"])
    assert isinstance(entries, dict) and [e["action"] for e in entries["items"]] == ["job.cancel"]
    assert cli.json(["audit", "--since", "2999-01-01T00:00:00"]) == {"items": [], "next_before_id": None}
    assert cli.run(["audit"], role=Role.operator).returncode == 4
    # An empty filter is a usage error in every command, never "no filter" or "matches nothing".
    for empty in (
        ["jobs", "list", "--kind", ""],
        ["audit", "--actor", " "],
        ["jobs", "list", "--resource", ""],
    ):
        refused = cli.run(empty)
        assert refused.returncode == 2 and "is empty" in refused.stderr, (empty, refused.stderr)


def test_users_and_tokens_over_http(cli: Cli) -> None:
    listed = cli.run(["users", "list"])
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["ID", "USERNAME", "ROLE", "STATE", "CREATED"]
    assert "viewer-user" in listed.stdout
    assert "viewer-user is now operator" in cli.run(["users", "set-role", "viewer-user", "operator"]).stdout
    assert cli.run(["users", "set-role", "viewer-user", "root"]).returncode == 2
    assert cli.run(["users", "set-role", "nobody", "viewer"]).returncode == 3
    assert cli.run(["users", "disable", "operator-user"]).returncode == 0
    # A disabled user's token stops working at once.
    assert cli.run(["nodes", "list"], role=Role.operator).returncode == 4
    assert cli.run(["users", "enable", "operator-user"]).returncode == 0
    assert cli.run(["nodes", "list"], role=Role.operator).returncode == 0
    # The last enabled admin can be neither demoted nor disabled.
    last = cli.run(["users", "disable", "admin-user"])
    assert last.returncode == 4 and "last enabled admin" in last.stderr
    assert cli.run(["users", "set-role", "admin-user", "viewer"]).returncode == 4
    tokens = cli.run(["tokens", "list"])
    assert tokens.returncode == 0 and "admin-user" in tokens.stdout
    assert cli.users[Role.admin].token not in tokens.stdout
    rows = cli.json(["tokens", "list"])
    assert isinstance(rows, list) and all("token" not in row for row in rows)
    assert cli.run(["users", "list"], role=Role.viewer).returncode == 4


def test_gates_and_account_changes_over_http(cli: Cli) -> None:
    listed = cli.run(["gates"], role=Role.viewer)
    assert listed.returncode == 0 and listed.stdout.startswith("provider_create: on (default)"), listed.stdout
    assert cli.run(["gates", "set", "provider_create", "off"], role=Role.operator).returncode == 4
    switched = cli.run(["gates", "set", "provider_create", "off"])
    assert switched.returncode == 0, switched.stderr
    assert switched.stdout.startswith("provider_create: off (set by user:admin-user")
    assert switched.stdout.rstrip().endswith(f"on {cli.url}")
    gates = cli.json(["gates"])
    assert isinstance(gates, list) and gates[0]["name"] == "provider_create" and gates[0]["enabled"] is False
    assert cli.run(["gates", "set", "provider_create", "maybe"]).returncode == 2

    created = cli.run(["users", "create", "--username", "dana", "--role", "operator"])
    assert created.returncode == 0, created.stderr
    generated = created.stdout.split("password: ")[1].split()[0]
    assert len(generated) >= 12 and "first sign-in" in created.stdout
    piped = cli.run(["users", "create", "--username", "eve"], stdin="a long piped password\n")
    assert piped.returncode == 0 and "password:" not in piped.stdout
    assert cli.run(["users", "create", "--username", "eve"]).returncode == 4  # exists
    assert cli.run(["users", "create", "--username", "x"], role=Role.operator).returncode == 4

    reset = cli.run(["users", "reset-password", "dana"])
    assert reset.returncode == 0 and "sessions were ended" in reset.stdout, reset.stderr
    again = reset.stdout.split("password: ")[1].split()[0]
    assert again != generated
    assert cli.run(["users", "reset-password", "nobody"]).returncode == 3
    assert cli.run(["users", "reset-password", "dana"], stdin="short\n").returncode == 2

    token = cli.run(["tokens", "create", "--user", "dana", "--name", "ci"])
    assert token.returncode == 0, token.stderr
    plaintext = token.stdout.strip().splitlines()[-1]
    assert plaintext.startswith("nwt_")
    token_id = next(t["id"] for t in cli.json(["tokens", "list"]) if t["name"] == "ci")  # type: ignore[union-attr]
    assert cli.run(["tokens", "revoke", str(token_id)]).returncode == 0
    assert cli.run(["tokens", "revoke", "999999"]).returncode == 3
    audit = cli.json(["audit", "--target", "user:dana"])
    assert isinstance(audit, dict)
    assert {"user.create", "user.reset_password"} <= {e["action"] for e in audit["items"]}
    assert generated not in json.dumps(audit) and again not in json.dumps(audit)
