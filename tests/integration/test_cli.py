"""The ``nodewright`` command as an operator runs it: a real subprocess, its own data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.config import Settings
from tests.support.live_server import free_port

NODEWRIGHT = [sys.executable, "-m", "nodewright.cli"]


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NODEWRIGHT, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    (tmp_path / "data").mkdir(mode=0o700)  # the installation these commands work on
    env["NODEWRIGHT_DATA_DIR"] = str(tmp_path / "data")
    env["NODEWRIGHT_DATABASE_URL"] = db_url
    return env


def test_users_and_tokens_commands(cli_env: dict[str, str]) -> None:
    created = run(["users", "create", "--local", "--username", "ops", "--role", "operator"], cli_env)
    assert created.returncode == 0, created.stderr
    assert "password: " in created.stdout  # generated and printed once

    piped = run(
        ["users", "create", "--local", "--username", "reader", "--role", "viewer"],
        cli_env,
        stdin="a long piped password\n",
    )
    assert piped.returncode == 0, piped.stderr
    assert "password:" not in piped.stdout

    token = run(["tokens", "create", "--local", "--user", "ops", "--name", "laptop"], cli_env)
    assert token.returncode == 0, token.stderr
    plaintext = token.stdout.strip().splitlines()[-1]
    assert plaintext.startswith("nwt_")

    settings = Settings(
        data_dir=Path(cli_env["NODEWRIGHT_DATA_DIR"]), database_url=cli_env["NODEWRIGHT_DATABASE_URL"]
    )
    with TestClient(create_app(settings, start_workers=False)) as client:
        me = client.get("/api/me", headers={"Authorization": f"Bearer {plaintext}"})
        assert me.status_code == 200 and me.json() == {
            "actor": "user:ops/token:laptop",
            "username": "ops",
            "role": "operator",
        }


def test_bad_input_gives_message_and_exit_code(cli_env: dict[str, str]) -> None:
    bad_role = run(["users", "create", "--local", "--username", "x", "--role", "root"], cli_env)
    assert bad_role.returncode == 2
    assert "role: must be one of viewer, operator, admin" in bad_role.stderr
    assert "Traceback" not in bad_role.stderr

    short = run(["users", "create", "--local", "--username", "y"], cli_env, stdin="short\n")
    assert short.returncode == 2 and "password: must be at least 12 characters" in short.stderr

    no_user = run(["tokens", "create", "--local", "--user", "ghost", "--name", "n"], cli_env)
    assert no_user.returncode == 3 and "no user named 'ghost'" in no_user.stderr  # not found
    taken = run(["users", "create", "--local", "--username", "y"], cli_env)
    assert taken.returncode == 0, taken.stderr
    again = run(["users", "create", "--local", "--username", "y"], cli_env)
    assert again.returncode == 4 and "already exists" in again.stderr  # refused: a conflict
    assert run(["users", "reset-password", "--local", "ghost"], cli_env).returncode == 3
    assert run(["tokens", "revoke", "--local", "424242"], cli_env).returncode == 3
    broken = run(["db", "current"], {**cli_env, "NODEWRIGHT_DATABASE_URL": "postgres//x"})
    assert broken.returncode == 2 and "Traceback" not in broken.stderr, broken.stderr


def test_wrong_secret_key_stops_with_clear_message(cli_env: dict[str, str]) -> None:
    assert run(["users", "create", "--local", "--username", "ops"], cli_env).returncode == 0
    wrong = {**cli_env, "NODEWRIGHT_SECRET_KEYS": Fernet.generate_key().decode()}
    result = run(["users", "create", "--local", "--username", "ops2"], wrong)
    assert result.returncode == 4  # refused: these keys cannot read this installation
    assert "do not match this database" in result.stderr
    assert "Traceback" not in result.stderr
    assert wrong["NODEWRIGHT_SECRET_KEYS"] not in result.stderr + result.stdout


def test_secrets_rotate_command(cli_env: dict[str, str]) -> None:
    assert run(["users", "create", "--local", "--username", "ops"], cli_env).returncode == 0
    keyfile = Path(cli_env["NODEWRIGHT_DATA_DIR"]) / "secret.keys"
    before = keyfile.read_text().split()
    result = run(["secrets", "rotate"], cli_env)
    assert result.returncode == 0, result.stderr
    after = keyfile.read_text().split()
    assert len(after) == len(before) + 1 and after[1:] == before
    assert all(key not in result.stdout for key in after)
    # Still starts and reads its stored secrets (the session-signing key) after rotation.
    assert run(["users", "create", "--local", "--username", "ops3"], cli_env).returncode == 0


def test_bad_database_url_is_a_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env["NODEWRIGHT_DATA_DIR"] = str(tmp_path)
    env["NODEWRIGHT_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    result = run(["db", "upgrade"], env)
    assert result.returncode == 5  # unreachable
    assert "database unavailable" in result.stderr and "Traceback" not in result.stderr


def test_db_upgrade_and_current(cli_env: dict[str, str]) -> None:
    up = run(["db", "upgrade"], cli_env)
    assert up.returncode == 0, up.stderr
    current = run(["db", "current"], cli_env)
    assert current.returncode == 0
    revision = up.stdout.strip().split()[-1]
    assert f"database: {revision}; code: {revision}" in current.stdout


def test_serve_keeps_secret_keys_out_of_its_environment(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every child of `serve` (process-mode job workers, ssh, ansible-runner, which writes its
    environment into artifacts) inherits os.environ: the master keys must not be in it."""
    import uvicorn

    from nodewright.cli import server
    from nodewright.config import load_settings

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("NODEWRIGHT_SECRET_KEYS", key)
    monkeypatch.setenv("NODEWRIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NODEWRIGHT_DATABASE_URL", db_url)
    monkeypatch.setenv("NODEWRIGHT_EMBEDDED_WORKERS", "0")
    monkeypatch.setenv("NODEWRIGHT_PORT", str(free_port()))
    seen: dict[str, object] = {}

    def fake_run(self: uvicorn.Server, sockets: object = None) -> None:  # the server is not under test
        seen["environment"] = dict(os.environ)
        seen["app"] = self.config.app
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    server._run_server(load_settings(), banner="test")
    environment = seen["environment"]
    assert isinstance(environment, dict)
    assert "NODEWRIGHT_SECRET_KEYS" not in environment
    assert key not in "\n".join(environment.values())
    # The running app still has its keys.
    with TestClient(seen["app"]) as client:  # type: ignore[arg-type]
        assert client.get("/readyz").status_code == 200


@pytest.mark.db_only("sqlite", reason="PostgreSQL is backed up with pg_dump; the command says so (below)")
def test_db_backup_is_a_consistent_private_copy_that_restores(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert run(["users", "create", "--local", "--username", "ops"], cli_env).returncode == 0
    backup = tmp_path / "backups" / "nodewright-1.db"
    backup.parent.mkdir()
    done = run(["db", "backup", str(backup)], cli_env)
    assert done.returncode == 0, done.stderr
    assert "keep a copy of them apart" in done.stdout and "secret.keys" in done.stdout
    assert backup.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in backup.parent.iterdir()] == ["nodewright-1.db"]  # no partial file left
    keys = (Path(cli_env["NODEWRIGHT_DATA_DIR"]) / "secret.keys").read_text().split()
    assert not any(key.encode() in backup.read_bytes() for key in keys)  # never the keys
    again = run(["db", "backup", str(backup)], cli_env)
    assert again.returncode == 4 and "exists" in again.stderr
    # Restore: the copy in place of the database (with the same keys) is the installation as it was.
    restored = {**cli_env, "NODEWRIGHT_DATABASE_URL": f"sqlite:///{backup}"}
    assert run(["users", "create", "--local", "--username", "ops"], restored).returncode == 4  # ops is there
    assert run(["users", "reset-password", "--local", "ops"], restored).returncode == 0
    on_postgres = {**cli_env, "NODEWRIGHT_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    refused = run(["db", "backup", str(tmp_path / "pg.db")], on_postgres)
    assert refused.returncode == 2 and "pg_dump" in refused.stderr, refused.stderr
