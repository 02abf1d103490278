# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""``nodewright nodes`` and ``nodewright smoke`` as an operator runs them: real processes against a
real server, real SSH nodes at the simulator; the evidence of the smoke run is kept on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.cli import smoke_report
from nodewright.context import AppContext
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.fixtures.sim import ssh_sim_server  # noqa: F401
from tests.support.apps import RoleUser, create_role_users, make_settings
from tests.support.live_server import live_server
from tests.support.nodes import connect_sim
from tests.support.system import require_binary

pytestmark = pytest.mark.db_only(
    "sqlite", reason="the CLI talks HTTP; the database behind it is covered by the end-to-end tests"
)


def nodewright(
    args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodewright.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


@pytest.fixture
def served(
    db_url: str, tmp_path: Path, ssh_sim_server: SimServer
) -> Iterator[tuple[str, dict[Role, RoleUser], int]]:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    settings = make_settings(db_url, tmp_path / "data", embedded_workers=2, job_poll_interval=0.2)
    app = create_app(settings)
    with TestClient(app) as client, live_server(app) as url:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        users = create_role_users(ctx)
        yield url, users, connect_sim(client, users[Role.admin].headers, ssh_sim_server)


def env_for(url: str, user: RoleUser | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env["NODEWRIGHT_URL"] = url
    if user is not None:
        env["NODEWRIGHT_TOKEN"] = user.token
    return env


def test_smoke_runs_the_whole_path_and_keeps_the_evidence(
    served: tuple[str, dict[Role, RoleUser], int], tmp_path: Path, ssh_sim_server: SimServer
) -> None:
    """No --provider (there is one connection); summary.md and the JUnit report say what the JSON
    files hold: what was made where, every stage, provider call and check, and the release."""
    url, users, provider = served
    env = env_for(url, users[Role.operator])
    junit = tmp_path / "reports" / "smoke.xml"
    run = nodewright(["smoke", "--evidence-dir", str(tmp_path / "ev"), "--junit", str(junit),
                      "--profile", "baseline", "--location", "fsn1", "--type", "cx23"], env)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "smoke passed" in run.stdout and "summary.md" in run.stdout
    (folder,) = (tmp_path / "ev").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["ok"] and summary["status"] == "ready" and summary["released"]
    assert summary["provider_id"] == provider and summary["reasons"] == []
    assert summary["checks"] and all(summary["checks"].values())
    assert {s["result"] for s in summary["stages"].values()} == {"passed"}
    evidence = json.loads((folder / "evidence.json").read_text())["evidence"]
    assert evidence["acquisition"]["calls"] and evidence["host_key"]["fingerprint"].startswith("SHA256:")
    log = json.loads((folder / "provision-log.json").read_text())
    assert any(e["message"] == "node ready" for e in log["items"])
    released = json.loads((folder / "evidence-released.json").read_text())["evidence"]
    release_calls = released["release"]["calls"]  # the release's provider calls are evidence too
    assert release_calls[0]["method"] == "DELETE" and release_calls[-1]["status"] == 404
    assert released["release"]["actions"][0]["command"] == "delete_server"
    assert users[Role.operator].token not in "".join(p.read_text() for p in folder.iterdir())

    text = (folder / "summary.md").read_text()
    assert text.startswith("# nodewright smoke: PASSED\n")
    made, acquisition = json.loads((folder / "node.json").read_text()), evidence["acquisition"]
    for shown in (
        made["name"], f"id {made['id']}", f"id {provider}, hetzner", "fsn1", "cx23", "ubuntu-24.04",
        "baseline", str(acquisition["server_id"]), acquisition["addresses"]["ipv4"],
        evidence["host_key"]["fingerprint"], f"provision {summary['provision_job']}",
        f"release {summary['release_job']}",
    ):  # fmt: skip
        assert shown in text, shown
    for stage, record in evidence["stages"].items():
        assert f"| {stage} " in text and f"{record['seconds']:.3f}" in text
    for call in [*acquisition["calls"], *release_calls]:
        assert call["correlation_id"] in text and call["endpoint"] in text
    for action in [*acquisition["actions"], *released["release"]["actions"]]:
        assert f"| {action['id']} " in text
    assert "## Ansible recap" in text and "| node " in text and "changed" in text
    for check in evidence["checks"]:
        assert check["name"] in text
    assert "deleted at the provider and confirmed gone" in text

    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "nodewright smoke"
    cases = [c.get("name") for c in suite.iter("testcase")]
    assert cases == [*smoke_report.STAGES, *(c["name"] for c in evidence["checks"])]
    assert suite.get("failures") == suite.get("errors") == suite.get("skipped") == "0"
    assert httpx.get(ssh_sim_server.base_url + "/_sim/servers").json()["servers"] == []

    listed = nodewright(["nodes", "list", "--all", "--json"], env)
    assert listed.returncode == 0 and json.loads(listed.stdout)["items"][0]["status"] == "released"
    # Without --all a released node is not listed, in any format (scripts act on live nodes).
    live = nodewright(["nodes", "list", "--json"], env)
    assert live.returncode == 0 and json.loads(live.stdout)["items"] == []
    assert "1 released: --all" in nodewright(["nodes", "list"], env).stdout


def test_cli_refusals_are_clear(served: tuple[str, dict[Role, RoleUser], int], tmp_path: Path) -> None:
    url, users, provider = served
    create = ["nodes", "create", "--provider", str(provider), "--name", "cli-1", "--location", "fsn1",
              "--type", "cx23", "--image", "ubuntu-24.04"]  # fmt: skip
    no_token = nodewright(create, env_for(url, None))
    assert no_token.returncode == 2 and "NODEWRIGHT_TOKEN" in no_token.stderr
    viewer = nodewright(create, env_for(url, users[Role.viewer]))
    assert viewer.returncode == 4 and "operator" in viewer.stderr  # refused
    bad = nodewright([*create[:-2], "--image", "windows-11"], env_for(url, users[Role.operator]))
    assert bad.returncode == 2 and "image" in bad.stderr and "Traceback" not in bad.stderr
    bad_label = nodewright([*create, "--label", "nokey"], env_for(url, users[Role.operator]))
    assert bad_label.returncode == 2 and "key=value" in bad_label.stderr

    admin_put = httpx.put(
        f"{url}/api/gates", json={"provider_create": False}, headers=users[Role.admin].headers
    )
    assert admin_put.status_code == 200
    refused = nodewright(create, env_for(url, users[Role.operator]))
    assert (
        refused.returncode == 4
        and "[feature_disabled]" in refused.stderr
        and "provider_create" in refused.stderr
        and "hint:" in refused.stderr
    )
    assert nodewright(["nodes", "list"], env_for(url, users[Role.viewer])).returncode == 0
    down = nodewright(["nodes", "list", "--url", "http://127.0.0.1:9"], env_for(url, users[Role.viewer]))
    assert down.returncode == 5 and "cannot reach" in down.stderr  # unreachable


def test_nodes_ssh_logs_in_with_the_pinned_key_and_names_take_the_place_of_ids(
    served: tuple[str, dict[Role, RoleUser], int], tmp_path: Path
) -> None:
    """An operator's key on a node, then `nodes ssh NAME -- command` as that operator: ssh with the
    host key pinned from the API, the profile's admin user; after release, a clear refusal."""
    url, users, provider = served
    env = env_for(url, users[Role.operator])
    key = tmp_path / "ops"
    subprocess.run(
        [require_binary("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
    )
    create = ["nodes", "create", "--provider", str(provider), "--name", "ssh-1", "--location", "fsn1",
              "--type", "cx23", "--image", "ubuntu-24.04", "--ssh-key", f"{key}.pub",
              "--wait", "-o", "json"]  # fmt: skip
    created = nodewright(create, env)
    assert created.returncode == 0, created.stdout + created.stderr
    ready = json.loads(created.stdout)  # stdout is the answer alone; the progress went to stderr
    assert ready["status"] == "ready"
    assert "accepted" in created.stderr

    remote = "id -un; cat /etc/nodewright/node.json"
    inside = nodewright(["nodes", "ssh", "ssh-1", "-i", str(key), "--", remote], {**env, "SSH_AUTH_SOCK": ""})
    assert inside.returncode == 0, inside.stdout + inside.stderr
    login, marker = inside.stdout.split("\n", 1)
    assert login == "nodewright" and json.loads(marker)["node_id"] == ready["id"]
    status = nodewright(
        ["nodes", "ssh", "ssh-1", "-i", str(key), "--", "exit 7"], {**env, "SSH_AUTH_SOCK": ""}
    )
    assert status.returncode == 7  # the remote command's status is the command's

    deleted = nodewright(["nodes", "delete", "ssh-1", "--wait"], env)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    after = nodewright(["nodes", "ssh", "ssh-1", "-i", str(key)], env)
    assert after.returncode == 4 and "released" in after.stderr and "Traceback" not in after.stderr
