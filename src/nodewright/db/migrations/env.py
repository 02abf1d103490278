"""Alembic environment: always run with a connection handed in by ``nodewright.db.migrate``."""

from __future__ import annotations

from alembic import context

import nodewright.db.models  # noqa: F401  (registers every table)
from nodewright.db.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `nodewright db upgrade`, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
