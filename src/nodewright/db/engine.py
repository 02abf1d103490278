"""Engine creation with the per-dialect settings nodewright relies on.

Bound parameters are hidden from error messages and logs: they can carry ciphertext, hashes or
whatever a caller passed, and database errors end up in logs.

SQLite: WAL (readers never block the writer), a busy timeout, foreign keys on, and transactions begun
by us, not by pysqlite: pysqlite only opens a transaction before DML, so a SELECT-then-UPDATE would not
be atomic. A connection can ask for ``BEGIN IMMEDIATE`` (take the write lock up front) through the
execution option ``sqlite_begin="IMMEDIATE"``; writers use it to avoid lock-upgrade deadlocks.
PostgreSQL: psycopg 3.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

SQLITE_BUSY_TIMEOUT_MS = 15_000
SQLITE_WAL_SIZE_LIMIT = 64 * 1024 * 1024


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` and route them to psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, echo=echo, pool_size=pool_size)
    return create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        future=True,
    )


def private_sqlite_file(url: str) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644 under the usual umask:
    password hashes, the audit log and ciphertexts readable by every local user when the data
    directory is not private). SQLite gives its -wal and -shm files the mode of the database file,
    so they follow. A file left readable by an earlier version is tightened."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            try:
                info = name.stat()
                if info.st_mode & 0o077 and info.st_uid == os.getuid():
                    name.chmod(0o600)
            except OSError:
                continue
    except OSError:
        return  # a missing directory: SQLite reports it as the real error


def _sqlite_engine(url: str, *, echo: bool, pool_size: int) -> Engine:
    private_sqlite_file(url)
    engine = create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        # Up to ``pool_size`` connections stay open between sessions; beyond that any number more
        # (never a wait for a free one), closed when given back. Opening a connection per session
        # cost a fifth of an API request's time in the connect-time PRAGMAs, and closing the last
        # one checkpointed the WAL. No process forks with these open: workers are spawned and
        # subprocesses close inherited descriptors.
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=-1,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Connections stay open in the pool, so the WAL is rarely removed: after a checkpoint it is
        # cut back to this size instead of staying at its largest.
        cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_SIZE_LIMIT}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
