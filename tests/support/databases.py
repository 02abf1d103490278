"""Per-test databases on SQLite and PostgreSQL, each migrated to head and isolated.

Migrating once per session into a template and cloning it per test keeps isolation complete (every
test gets its own database, so multi-process tests see committed data) and cheap: SQLite copies a
file, PostgreSQL uses ``CREATE DATABASE ... TEMPLATE``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nodewright.db import migrate
from nodewright.db.engine import make_engine, normalize_url

POSTGRES_ENV = "NODEWRIGHT_TEST_POSTGRES_URL"
_counter = itertools.count()


def postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    return normalize_url(url) if url else None


def build_sqlite_template(directory: Path) -> Path:
    path = directory / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def clone_sqlite(template: Path, directory: Path) -> str:
    target = directory / "nodewright.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


class PostgresTemplates:
    """Creates a migrated template database once, then one clone per test."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.prefix = f"nwtest_{os.getpid()}"
        self.template = f"{self.prefix}_tmpl"
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", future=True)

    def _url_for(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create_template(self) -> None:
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.template}"'))
        engine = make_engine(self._url_for(self.template))
        migrate.upgrade(engine)
        engine.dispose()

    def clone(self) -> tuple[str, str]:
        name = f"{self.prefix}_{next(_counter)}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        return name, self._url_for(name)

    def drop(self, name: str) -> None:
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self.drop(self.template)
        self._admin.dispose()

    def fresh_empty(self) -> Iterator[str]:
        """An empty database (no migrations), for migration tests."""
        name = f"{self.prefix}_empty_{next(_counter)}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield self._url_for(name)
        finally:
            self.drop(name)
