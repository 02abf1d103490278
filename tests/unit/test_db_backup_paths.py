"""``nodewright db backup PATH`` when the path is awkward: a name too long for the file system, a
directory it cannot write, a file that appears while the copy is made. Each is one line and an exit
code, never a traceback, and never a file of someone else's overwritten."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nodewright.cli import backup
from tests.support.cli import Done, invoke


@pytest.fixture
def installation(tmp_path: Path) -> dict[str, str]:
    """A SQLite installation as ``installation.require`` recognises one (its schema's version table)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    conn = sqlite3.connect(data / "nodewright.db")
    conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
    conn.execute("INSERT INTO alembic_version VALUES ('x')")
    conn.commit()
    conn.close()
    url = f"sqlite:///{data / 'nodewright.db'}"
    return {"NODEWRIGHT_DATA_DIR": str(data), "NODEWRIGHT_DATABASE_URL": url}


def backup_to(target: Path, env: dict[str, str]) -> Done:
    return invoke(["db", "backup", str(target)], env)


def test_a_name_too_long_is_one_line_not_a_traceback(installation: dict[str, str], tmp_path: Path) -> None:
    done = backup_to(tmp_path / ("a" * 250 + ".db"), installation)
    assert done.returncode == 1, done
    assert done.stderr.startswith("error: cannot write the backup") and "too long" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_database_error_while_copying_is_one_line(
    installation: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_source: Path, partial: Path) -> None:
        partial.write_bytes(b"half")
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(backup, "_copy", broken)
    done = backup_to(tmp_path / "copy.db", installation)
    assert done.returncode == 1, done
    assert "database is locked" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # the partial copy is gone too


def test_a_file_made_while_copying_is_never_overwritten(
    installation: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "copy.db"
    real = backup._copy

    def racing(source: Path, partial: Path) -> None:
        real(source, partial)
        target.write_text("someone else's file")  # after the check that it did not exist

    monkeypatch.setattr(backup, "_copy", racing)
    done = backup_to(target, installation)
    assert done.returncode == 4, done
    assert "appeared while the copy was made" in done.stderr
    assert target.read_text() == "someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "data"]  # no partial left


def test_the_backup_says_how_to_restore_it_without_the_old_wal(
    installation: dict[str, str], tmp_path: Path
) -> None:
    """A -wal file the old database left (a process killed) would be replayed onto the restored copy:
    it is removed first, and the command says so."""
    done = backup_to(tmp_path / "copy.db", installation)
    assert done.returncode == 0, done
    database = Path(installation["NODEWRIGHT_DATA_DIR"]) / "nodewright.db"
    assert f"{database}-wal" in done.stdout and f"{database}-shm" in done.stdout
