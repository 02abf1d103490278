"""Local commands run where there is no installation: they refuse with the path they looked in
(exit 3) and create nothing; only serve, demo, worker and db upgrade make a data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NODEWRIGHT = [sys.executable, "-m", "nodewright.cli"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NODEWRIGHT, *args],
        cwd=cwd,
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def bare_env() -> dict[str, str]:
    """No NODEWRIGHT_* settings: the defaults (``./.nodewright``) apply, as for an operator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize(
    "args",
    [
        ["users", "reset-password", "--local", "admin"],
        ["users", "create", "--local", "--username", "ops"],
        ["tokens", "create", "--local", "--user", "ops", "--name", "laptop"],
        ["tokens", "revoke", "--local", "1"],
        ["gates", "--local"],
        ["gates", "set", "provider_create", "off", "--local"],
        ["secrets", "rotate"],
        ["db", "current"],
    ],
    ids=lambda a: "-".join(a[:2]) if len(a) > 1 else a[0],
)
def test_a_local_command_elsewhere_refuses_and_creates_nothing(
    args: list[str], tmp_path: Path, bare_env: dict[str, str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run(args, elsewhere, bare_env)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "no nodewright installation here" in result.stderr
    assert str(elsewhere / ".nodewright") in result.stderr  # the path it looked in
    assert "Traceback" not in result.stderr
    assert list(elsewhere.iterdir()) == []  # no empty .nodewright/ left behind


def test_db_upgrade_makes_the_installation_that_local_commands_then_use(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    upgraded = run(["db", "upgrade"], tmp_path, bare_env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / ".nodewright" / "nodewright.db").is_file()
    created = run(
        ["users", "create", "--local", "--username", "ops", "--role", "operator"], tmp_path, bare_env
    )
    assert created.returncode == 0, created.stderr
    assert "password: " in created.stdout


def test_an_explicit_sqlite_database_that_is_missing_is_named(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    (tmp_path / "data").mkdir()
    env = {
        **bare_env,
        "NODEWRIGHT_DATA_DIR": str(tmp_path / "data"),
        "NODEWRIGHT_DATABASE_URL": f"sqlite:///{tmp_path / 'gone.db'}",
    }
    result = run(["users", "create", "--local", "--username", "ops"], tmp_path, env)
    assert result.returncode == 3, result.stderr
    assert str(tmp_path / "gone.db") in result.stderr
    assert not (tmp_path / "gone.db").exists()


def test_keys_from_the_environment_make_no_data_directory(tmp_path: Path, bare_env: dict[str, str]) -> None:
    """SQLite elsewhere and keys in the environment: the installation is that database; a local
    command run in an empty directory uses it and leaves no `.nodewright/` behind."""
    from cryptography.fernet import Fernet

    env = {**bare_env, "NODEWRIGHT_DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'nw.db'}",
           "NODEWRIGHT_SECRET_KEYS": Fernet.generate_key().decode()}  # fmt: skip
    (tmp_path / "db").mkdir()
    setup = tmp_path / "setup"
    setup.mkdir()
    assert run(["db", "upgrade"], setup, env).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    created = run(["users", "create", "--local", "--username", "ops"], elsewhere, env)
    assert created.returncode == 0, created.stderr
    assert list(elsewhere.iterdir()) == []


def test_an_empty_database_file_is_no_installation(tmp_path: Path, bare_env: dict[str, str]) -> None:
    """What a failed first start can leave (an empty nodewright.db): refused, not migrated into a
    new installation with a user in it."""
    data = tmp_path / ".nodewright"
    data.mkdir()
    (data / "nodewright.db").touch()
    result = run(["users", "create", "--local", "--username", "ghost"], tmp_path, bare_env)
    assert result.returncode == 3 and "no nodewright schema" in result.stderr, result.stderr
    assert (data / "nodewright.db").stat().st_size == 0 and sorted(p.name for p in data.iterdir()) == [
        "nodewright.db"
    ]


@pytest.mark.parametrize("driver", ["sqlite", "sqlite+pysqlite"])
def test_sqlite_urls_are_read_as_sqlalchemy_reads_them(
    driver: str, tmp_path: Path, bare_env: dict[str, str]
) -> None:
    spaced = tmp_path / "my dir"
    spaced.mkdir()
    env = {**bare_env, "NODEWRIGHT_DATA_DIR": str(tmp_path / "data"),
           "NODEWRIGHT_DATABASE_URL": f"{driver}:///{str(spaced / 'nw.db').replace(' ', '%20')}"}  # fmt: skip
    missing = run(["users", "create", "--local", "--username", "ops"], tmp_path, env)
    assert missing.returncode == 3 and "my dir" in missing.stderr, missing.stderr
    assert list(spaced.iterdir()) == []
    assert run(["db", "upgrade"], tmp_path, env).returncode == 0
    created = run(["users", "create", "--local", "--username", "ops"], tmp_path, env)
    assert created.returncode == 0, created.stderr


def test_another_users_installation_is_a_clear_refusal(tmp_path: Path, bare_env: dict[str, str]) -> None:
    """Run as a user who may not read the installation: a message naming the path (exit 4 in the
    CLI), not a PermissionError traceback. Checked in this process with its effective uid switched
    (the interpreter lives where another user could not start it)."""
    from nodewright.config import ConfigError, Settings, _config_file
    from nodewright.installation import InstallationUnreadable, require

    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    assert run(["db", "upgrade"], tmp_path, bare_env).returncode == 0  # .nodewright is 0700, root's
    data = tmp_path / ".nodewright"
    settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'nodewright.db'}")
    os.seteuid(65534)
    try:
        with pytest.raises(InstallationUnreadable, match=r"nodewright\.db: Permission denied"):
            require(settings)
        os.environ["NODEWRIGHT_DATA_DIR"] = str(data)
        with pytest.raises(ConfigError, match="permission denied"):
            _config_file()
    finally:
        os.seteuid(0)
        os.environ.pop("NODEWRIGHT_DATA_DIR", None)
