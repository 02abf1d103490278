"""Migrations run from empty to head and back down to empty on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from nodewright.db import migrate
from nodewright.db.base import Base
from nodewright.db.engine import make_engine
from tests.support.databases import PostgresTemplates


@pytest.fixture
def empty_url(db_kind: str, tmp_path: Path, postgres_templates: PostgresTemplates | None) -> Iterator[str]:
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    assert postgres_templates is not None
    yield from postgres_templates.fresh_empty()


def test_upgrade_to_head_and_downgrade_to_base(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.is_at_head(engine)
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)  # and up again: downgrade left nothing behind that blocks it
        assert migrate.is_at_head(engine)
    finally:
        engine.dispose()


def test_models_match_migrations(database: object) -> None:
    """Autogenerate finds nothing to do: the models and the migration chain agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from nodewright.db.database import Database

    assert isinstance(database, Database)
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_concurrent_upgrades_serialise(empty_url: str) -> None:
    """Several processes starting at once (serve on several machines) migrate exactly once."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from nodewright.db import migrate\n"
        "from nodewright.db.engine import make_engine\n"
        "engine = make_engine(sys.argv[1])\n"
        "migrate.upgrade(engine)\n"
        "print(migrate.current_revision(engine))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    head = migrate.head_revision()
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == head
