"""Where a local command finds the installation it works on, and a refusal when there is none.

Only ``serve``, ``demo``, ``worker`` and ``db upgrade`` may create a data directory (and with SQLite
the database in it). Every other local command (``users``, ``tokens``, ``gates``, ``secrets``,
``db current``) works on an installation that exists: run from another directory it refuses with
the path it looked in, instead of quietly creating a new, empty ``.nodewright/`` there.
"""

from __future__ import annotations

from pathlib import Path

from nodewright.config import Settings

SETUP_COMMANDS = "`nodewright serve`, `nodewright demo`, `nodewright worker` or `nodewright db upgrade`"


class InstallationMissing(Exception):
    """No installation where the settings point: the message names the path and what to do."""

    def __init__(self, looked_in: Path, what: str) -> None:
        self.looked_in = looked_in
        super().__init__(
            f"no nodewright installation here: {what} {looked_in} does not exist. Run this command "
            "where the installation is (the directory `nodewright serve` runs in), or point "
            "NODEWRIGHT_DATA_DIR (and NODEWRIGHT_DATABASE_URL) at it; a new installation is made by "
            f"{SETUP_COMMANDS}."
        )


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for another database or an in-memory one)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix) :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def require(settings: Settings) -> None:
    """Raise ``InstallationMissing`` unless the installation exists: with SQLite its database file,
    and, unless the keys come from NODEWRIGHT_SECRET_KEYS, the data directory that holds the key
    file. (A PostgreSQL installation configured wholly by environment has no data directory.)"""
    database = sqlite_file(settings.resolved_database_url)
    if database is not None and not database.resolve().is_file():
        raise InstallationMissing(database.resolve(), "the database")
    data_dir = settings.data_dir.resolve()
    if settings.secret_keys is None and not data_dir.is_dir():
        raise InstallationMissing(data_dir, "the data directory")
