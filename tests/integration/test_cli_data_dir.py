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
        ["users", "reset-password", "admin"],
        ["users", "create", "--username", "ops"],
        ["tokens", "create", "--user", "ops", "--name", "laptop"],
        ["tokens", "revoke", "1"],
        ["gates"],
        ["gates", "set", "provider_create", "off"],
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
    created = run(["users", "create", "--username", "ops", "--role", "operator"], tmp_path, bare_env)
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
    result = run(["users", "create", "--username", "ops"], tmp_path, env)
    assert result.returncode == 3, result.stderr
    assert str(tmp_path / "gone.db") in result.stderr
    assert not (tmp_path / "gone.db").exists()
