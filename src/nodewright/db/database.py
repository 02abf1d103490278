"""One ``Database`` object per process: the engine plus session factories.

``session()`` is a unit of work that commits on success and rolls back on error. ``write=True``
takes SQLite's write lock at BEGIN, so read-modify-write transactions cannot deadlock on upgrade;
on PostgreSQL it changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from nodewright.db.engine import make_engine


class Database:
    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine if engine is not None else make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        if write and self.is_sqlite:
            conn = self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")
            session = Session(bind=conn, expire_on_commit=False)
        else:
            conn = None
            session = self._factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
            if conn is not None:
                conn.close()

    def dispose(self) -> None:
        self.engine.dispose()
