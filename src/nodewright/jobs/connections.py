"""Transactions for the engine's hot path: Core statements on long-lived per-thread connections.

Claiming and finishing run for every job, so they skip the ORM and do not open a connection per
transaction: on SQLite that would take a connection from the pool (or open one, replaying the
PRAGMAs, when the pool is drained); on PostgreSQL it would pay the pool's pre-ping. Each thread
keeps its own connection; a connection that fails is dropped and replaced on next use.

On PostgreSQL those held connections come from an engine of their own (no pool limit), never from
the ``Database``'s pool: a worker keeps up to two per executor thread for its whole life, and taking
them from the shared pool would leave none for the handlers' steps and the heartbeat monitor once
the concurrency reaches the pool size.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from nodewright.db.database import Database


class Connections:
    def __init__(self, database: Database, *, reuse: bool = True) -> None:
        self.database = database
        self.is_sqlite = database.is_sqlite
        self._reuse = reuse
        self._engine: Engine = database.engine
        if reuse and not self.is_sqlite:
            # hide_parameters as the main engine (db/engine.py): an error's bound parameters can hold a
            # job's result, args or error, and database errors end up in logs.
            self._engine = create_engine(database.engine.url, poolclass=NullPool, hide_parameters=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Connection] = []

    def _connection(self, slot: str = "conn") -> Connection:
        conn: Connection | None = getattr(self._local, slot, None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._engine.connect()
            if slot == "auto":
                conn.execution_options(isolation_level="AUTOCOMMIT")
            setattr(self._local, slot, conn)
            with self._lock:
                self._all.append(conn)
        return conn

    def _discard(self, conn: Connection) -> None:
        for slot in ("conn", "auto"):
            if getattr(self._local, slot, None) is conn:
                setattr(self._local, slot, None)
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        try:
            conn.invalidate()
            conn.close()
        except Exception:  # noqa: S110  (already broken; nothing more to do)
            pass

    @contextmanager
    def begin(self, *, write: bool = False) -> Iterator[Connection]:
        """A transaction that commits on success; ``write`` takes SQLite's write lock at BEGIN."""
        if not self._reuse:
            with self.database.engine.connect() as conn:
                if self.is_sqlite:
                    conn.execution_options(sqlite_begin="IMMEDIATE" if write else "DEFERRED")
                with conn.begin():
                    yield conn
            return
        conn = self._connection()
        if self.is_sqlite:
            conn.execution_options(sqlite_begin="IMMEDIATE" if write else "DEFERRED")
        try:
            with conn.begin():
                yield conn
        except DBAPIError as exc:
            # An integrity error (a lost claim race) leaves the connection fine; a broken one is replaced.
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                self._discard(conn)
            raise

    @contextmanager
    def single(self) -> Iterator[Connection]:
        """PostgreSQL only: an autocommit connection for one self-contained atomic statement (a
        data-modifying CTE), which saves the BEGIN and COMMIT round trips of the hot path."""
        if self.is_sqlite:
            raise RuntimeError("single-statement mode is for PostgreSQL")
        if not self._reuse:
            with self.database.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                with conn.begin():
                    yield conn
            return
        conn = self._connection("auto")
        try:
            with conn.begin():
                yield conn
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                self._discard(conn)
            raise

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        if self._engine is not self.database.engine:
            self._engine.dispose()


def as_connections(source: Database | Connections) -> Connections:
    return source if isinstance(source, Connections) else Connections(source, reuse=False)
