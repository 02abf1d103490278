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


def test_0008_carries_live_idempotency_keys_over_to_their_users(empty_url: str) -> None:
    """Keys move from the global ``nodes.idempotency_key`` column to per-user keys: a key younger
    than 24 hours is kept, scoped to the user who made the node; an older one had expired."""
    import datetime as dt

    import sqlalchemy as sa

    from nodewright.db.types import UTCDateTime

    engine = make_engine(empty_url)
    now = dt.datetime.now(dt.UTC)
    tables = Base.metadata.tables
    old_nodes = sa.table(
        "nodes",
        *(
            sa.column(c, sa.String())
            for c in (
                "name",
                "contract",
                "location",
                "server_type",
                "image",
                "profile",
                "status",
                "idempotency_key",
                "request_digest",
                "created_by",
            )
        ),
        *(sa.column(c, sa.JSON()) for c in ("labels", "ssh_authorized_keys", "evidence")),
        *(sa.column(c, UTCDateTime()) for c in ("created_at", "updated_at")),
        sa.column("id", sa.Integer()),
        sa.column("provider_id", sa.Integer()),
    )
    try:
        migrate.upgrade(engine, "0007")
        with engine.begin() as conn:
            conn.execute(
                # The users table as it was at 0007 (later revisions add columns the model has).
                sa.insert(
                    sa.table(
                        "users",
                        *(sa.column(c) for c in ("id", "username", "password_hash", "role", "disabled")),
                        sa.column("created_at", UTCDateTime()),
                    )
                ).values(
                    id=7, username="ops", password_hash="x", role="operator", disabled=False, created_at=now
                )
            )
            conn.execute(sa.insert(tables["stored_secrets"]).values(id=1, purpose="p", ciphertext="c"))
            conn.execute(
                sa.insert(tables["provider_connections"]).values(
                    id=1, kind="hetzner", name="p", token_secret_id=1, token_fingerprint="f", created_by="x"
                )
            )
            for node_id, key, by, age in [
                (1, "fresh", "user:ops/token:laptop", 1),
                (2, "stale", "user:ops", 30),
            ]:
                at = now - dt.timedelta(hours=age)
                conn.execute(
                    sa.insert(old_nodes).values(
                        id=node_id,
                        name=f"n{node_id}",
                        contract="c",
                        provider_id=1,
                        location="l",
                        server_type="t",
                        image="i",
                        labels={},
                        profile="p",
                        ssh_authorized_keys=[],
                        status="ready",
                        evidence={},
                        idempotency_key=key,
                        request_digest="d",
                        created_by=by,
                        created_at=at,
                        updated_at=at,
                    )
                )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT scope, key, node_id FROM idempotency_keys")).all()
        assert [tuple(r) for r in rows] == [("user:7", "fresh", 1)]
        migrate.downgrade(engine, "0007")
        with engine.connect() as conn:
            back = conn.execute(sa.text("SELECT id, idempotency_key FROM nodes ORDER BY id")).all()
        assert [tuple(r) for r in back] == [(1, "fresh"), (2, None)]
    finally:
        engine.dispose()
