"""``nodewright users reset-password --local`` does what the API's reset does: the password, piped in
or generated, is one the user must change at the next sign-in (README, "Users and tokens")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support.cli import invoke


def test_a_local_reset_with_a_piped_password_must_be_changed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    env = {"NODEWRIGHT_DATA_DIR": str(data)}
    assert invoke(["db", "upgrade"], env).returncode == 0
    made = invoke(["users", "create", "--local", "--username", "bob"], env, stdin="bobs-own-password-1\n")
    assert made.returncode == 0, made
    reset = invoke(["users", "reset-password", "--local", "bob"], env, stdin="a-new-password-for-bob\n")
    assert reset.returncode == 0, reset
    assert "password:" not in reset.stdout  # piped: not printed back
    conn = sqlite3.connect(data / "nodewright.db")
    try:
        row = conn.execute("SELECT must_change_password FROM users WHERE username = 'bob'").fetchone()
    finally:
        conn.close()
    assert row == (1,)
