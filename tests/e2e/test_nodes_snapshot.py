# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""A golden image from a node: ``nodewright nodes snapshot`` makes a provider snapshot of a ready
node's server (create_image, as a job), and a node created with the image's id starts from that
disk, is reached with its own pinned host key, and becomes ready."""

from __future__ import annotations

from pathlib import Path

import hcloud
import httpx
import pytest
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.context import AppContext
from nodewright.security.roles import Role
from nodewright.sim.server import SimServer
from tests.e2e.test_nodes_cli import env_for, nodewright
from tests.fixtures.sim import random_token, ssh_sim_server  # noqa: F401
from tests.support.apps import create_role_users, make_settings
from tests.support.live_server import live_server
from tests.support.nodes import connect_sim
from tests.support.quick_profile import write_quick_profile
from tests.support.system import require_binary

pytestmark = pytest.mark.db_only(
    "sqlite", reason="a provider action behind an HTTP call; the job engine is covered on both databases"
)


def test_snapshot_a_node_then_create_a_node_from_it(
    db_url: str, tmp_path: Path, ssh_sim_server: SimServer
) -> None:
    require_binary("ssh-agent")
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    settings = make_settings(db_url, tmp_path / "data", embedded_workers=2, job_poll_interval=0.2)
    write_quick_profile(settings.resolved_profiles_dir / "quick")
    token = random_token()
    sdk = hcloud.Client(token=token, api_endpoint=ssh_sim_server.api_url)
    app = create_app(settings)
    with TestClient(app) as client, live_server(app) as url:
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        users = create_role_users(ctx)
        connect_sim(client, users[Role.admin].headers, ssh_sim_server, token=token)
        env = env_for(url, users[Role.operator])
        made = nodewright(["nodes", "create", "--name", "golden", "--profile", "quick", "--wait"], env)
        assert made.returncode == 0, made.stdout + made.stderr

        # A viewer may not; a bad description is a usage error before any request.
        refused = nodewright(["nodes", "snapshot", "golden"], env_for(url, users[Role.viewer]))
        assert refused.returncode == 4 and "operator role" in refused.stderr, refused.stderr
        bad = nodewright(["nodes", "snapshot", "golden", "--description", ""], env)
        assert bad.returncode == 2 and "--description" in bad.stderr

        run = nodewright(["nodes", "snapshot", "golden", "--description", "golden v1", "--wait"], env)
        assert run.returncode == 0, run.stdout + run.stderr
        last = run.stdout.strip().splitlines()[-1]
        assert last.startswith("image ") and "--image " in last, run.stdout
        assert "is being made from server" in run.stdout  # named before the wait ends
        image_id = last.split()[1].rstrip(":")
        golden = next(n for n in client.get("/api/nodes", headers=users[Role.viewer].headers).json()["items"])
        assert golden["status"] == "ready"  # the snapshot is not the node's job: nothing changed
        image = sdk.images.get_by_id(int(image_id))
        assert (image.type, image.description, image.created_from.id) == (
            "snapshot",
            "golden v1",
            golden["server"]["id"],
        )

        clone = nodewright(
            ["nodes", "create", "--name", "clone", "--profile", "quick", "--image", image_id, "--wait"], env
        )
        assert clone.returncode == 0, clone.stdout + clone.stderr
        server = sdk.servers.get_by_name("clone") or next(
            s for s in sdk.servers.get_all() if s.name.startswith("clone")
        )
        assert server.image is not None and server.image.id == int(image_id)
        missing = nodewright(
            ["nodes", "create", "--name", "nope", "--profile", "quick", "--image", "999999999"], env
        )
        assert missing.returncode != 0 and "image" in (missing.stdout + missing.stderr)
