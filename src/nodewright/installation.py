"""Where a local command finds the installation it works on, and a refusal when there is none.

Only ``serve``, ``demo``, ``worker`` and ``db upgrade`` may create a data directory (and with SQLite
the database in it). Every other local command (``users``, ``tokens``, ``gates``, ``secrets``,
``db current``) works on an installation that exists: run from another directory it refuses with
the path it looked in, instead of quietly creating a new, empty ``.nodewright/`` there. An
installation exists when its database holds nodewright's schema (an empty file a failed start left
behind is not one) and, unless the keys come from NODEWRIGHT_SECRET_KEYS, its data directory (which
holds the key file) exists.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from nodewright.config import ConfigError, Settings

SETUP_COMMANDS = "`nodewright serve`, `nodewright demo`, `nodewright worker` or `nodewright db upgrade`"


class InstallationMissing(Exception):
    """No installation where the settings point: the message names the path and what to do."""

    def __init__(self, looked_in: Path | str, what: str) -> None:
        self.looked_in = looked_in
        super().__init__(
            f"no nodewright installation here: {what} {looked_in}. Run this command where the "
            "installation is (the directory `nodewright serve` runs in), or point NODEWRIGHT_DATA_DIR "
            "(and NODEWRIGHT_DATABASE_URL) at it; a new installation is made by "
            f"{SETUP_COMMANDS}."
        )


class InstallationUnreadable(Exception):
    """The installation is there but this user may not read it."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(
            f"cannot read {path}: {error.strerror or error}; run this as the installation's owner "
            "(the user `nodewright serve` runs as)"
        )


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (any driver; percent-escapes decoded as SQLAlchemy does);
    None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"NODEWRIGHT_DATABASE_URL is not a database URL: {url.split('@')[-1]!r}") from None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a URI filename (``?uri=true``)
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


def _has_schema(path: Path) -> bool:
    """Whether a SQLite file holds nodewright's schema, read without writing or creating anything."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return False
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()
    return row is not None


def require(settings: Settings) -> None:
    """Raise ``InstallationMissing`` (or ``InstallationUnreadable``) unless the installation exists."""
    database = sqlite_file(settings.resolved_database_url)
    checking: Path = settings.data_dir
    try:
        if database is not None:
            checking = database.resolve()
            if not checking.is_file():
                raise InstallationMissing(checking, "the database does not exist:")
            if not _has_schema(checking):
                raise InstallationMissing(checking, "the database holds no nodewright schema:")
        checking = settings.data_dir.resolve()
        if settings.secret_keys is None and not checking.is_dir():
            raise InstallationMissing(
                checking,
                "the data directory (which holds the key file"
                + (", and on PostgreSQL is made by `db upgrade` or `serve`" if database is None else "")
                + ") does not exist:",
            )
    except PermissionError as exc:
        raise InstallationUnreadable(checking, exc) from None
