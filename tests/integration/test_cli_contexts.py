"""``nodewright login`` and ``nodewright context ...`` as an operator runs them: real subprocesses
against a real server on loopback. The token is verified before it is saved, saved 0600 in a 0700
directory, never printed, never sent to another server, and NODEWRIGHT_TOKEN / --url still win."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.security.roles import Role
from tests.support.apps import RoleUser
from tests.support.cli import Done, invoke
from tests.support.live_server import live_server

pytestmark = pytest.mark.db_only("sqlite", reason="the CLI talks HTTP; the API tests cover the databases")


@dataclass
class Cli:
    url: str
    users: dict[Role, RoleUser]
    config: Path

    def run(self, args: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> Done:
        base = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
        base["NODEWRIGHT_CLI_CONFIG"] = str(self.config)
        return invoke(args, {**base, **(env or {})}, stdin or "")


@pytest.fixture
def cli(
    settings: Settings, app_context: AppContext, role_users: dict[Role, RoleUser], tmp_path: Path
) -> Iterator[Cli]:
    app = create_app(settings, ctx=app_context, start_workers=False)
    with live_server(app) as url:
        yield Cli(url, role_users, tmp_path / "config" / "nodewright" / "contexts.json")


def test_login_verifies_saves_privately_and_later_commands_use_it(cli: Cli) -> None:
    admin = cli.users[Role.admin].token
    done = cli.run(["login", cli.url, "--name", "lab"], stdin=admin + "\n")
    assert done.returncode == 0, done.stderr
    assert "as admin-user (admin)" in done.stdout and "'lab' is active" in done.stdout
    assert admin not in done.stdout + done.stderr
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config.parent.stat().st_mode) == 0o700
    assert json.loads(cli.config.read_text())["active"] == "lab"

    listed = cli.run(["nodes", "list"])  # no URL, no token: the context's
    assert listed.returncode == 0, listed.stderr
    assert "no nodes" in listed.stdout

    shown = cli.run(["context", "list", "-o", "json"])
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert rows == [{"name": "lab", "active": True, "url": cli.url, "username": "admin-user", "role": "admin",
                     "saved_at": rows[0]["saved_at"]}]  # fmt: skip
    table = cli.run(["context", "list"])
    assert "* lab" in table.stdout and admin not in table.stdout
    assert cli.run(["context", "active"]).stdout.strip() == "lab"


def test_a_wrong_token_is_refused_and_nothing_is_saved(cli: Cli) -> None:
    done = cli.run(["login", cli.url], stdin="nw_not-a-token\n")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "error [" in done.stderr and "Traceback" not in done.stderr
    assert not cli.config.exists()
    empty = cli.run(["login", cli.url], stdin="\n")
    assert empty.returncode == 2 and "the token on stdin is empty" in empty.stderr
    not_url = cli.run(["login", "ftp://example"], stdin="x\n")
    assert not_url.returncode == 2 and "not an http(s) URL" in not_url.stderr


def test_environment_and_flags_win_and_the_token_never_goes_to_another_server(cli: Cli) -> None:
    assert cli.run(["login", cli.url], stdin=cli.users[Role.admin].token).returncode == 0
    # NODEWRIGHT_TOKEN wins: a viewer token cannot list webhooks (admin only) though the context can.
    assert cli.run(["webhooks", "list"]).returncode == 0
    viewer = {"NODEWRIGHT_TOKEN": cli.users[Role.viewer].token}
    as_viewer = cli.run(["webhooks", "list"], env={**viewer, "NODEWRIGHT_URL": cli.url})
    assert as_viewer.returncode == 4, as_viewer.stdout + as_viewer.stderr
    # A token without a URL does not go to the context's server: the command asks where it goes.
    unsure = cli.run(["webhooks", "list"], env=viewer)
    assert unsure.returncode == 2 and "pass --url" in unsure.stderr
    # Another server: the context's token is not sent there; the command says why it has none.
    elsewhere = cli.run(["nodes", "list", "--url", "http://127.0.0.1:9"])
    assert elsewhere.returncode == 2
    assert "no API token" in elsewhere.stderr and "is for " + cli.url in elsewhere.stderr
    # The same server spelled with its default port elsewhere is still the same server.
    same = cli.run(["nodes", "list", "--url", cli.url + "/"])
    assert same.returncode == 0, same.stderr


def test_use_delete_and_a_context_chosen_by_environment(cli: Cli) -> None:
    token = cli.users[Role.operator].token
    assert cli.run(["login", cli.url, "--name", "one"], stdin=token).returncode == 0
    assert cli.run(["login", cli.url, "--name", "two"], stdin=token).returncode == 0
    assert cli.run(["context", "active"]).stdout.strip() == "two"
    assert cli.run(["context", "use", "one"]).returncode == 0
    assert cli.run(["context", "active"]).stdout.strip() == "one"
    chosen = cli.run(["context", "active"], env={"NODEWRIGHT_CONTEXT": "two"})
    assert chosen.stdout.strip() == "two"
    unknown = cli.run(["nodes", "list"], env={"NODEWRIGHT_CONTEXT": "three"})
    assert unknown.returncode == 2 and "no context named 'three'" in unknown.stderr
    assert cli.run(["context", "use", "three"]).returncode == 3
    assert cli.run(["context", "delete", "one"]).returncode == 0
    gone = cli.run(["context", "active"])
    assert gone.returncode == 3 and "no active context" in gone.stderr
    assert cli.run(["context", "delete", "one"]).returncode == 3
    bad = cli.run(["login", cli.url, "--name", "../x"], stdin=token)
    assert bad.returncode == 2 and "context name" in bad.stderr


def test_a_contexts_file_other_users_can_read_is_refused(cli: Cli) -> None:
    assert cli.run(["login", cli.url], stdin=cli.users[Role.viewer].token).returncode == 0
    cli.config.chmod(0o644)
    refused = cli.run(["nodes", "list"])
    assert refused.returncode == 4
    assert "can be read by other users" in refused.stderr and "chmod 600" in refused.stderr
    cli.config.chmod(0o600)
    cli.config.write_text("{not json")
    broken = cli.run(["context", "list"])
    assert broken.returncode == 2 and "not a contexts file" in broken.stderr
