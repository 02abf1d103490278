"""Helpers for the secret-canary test: look for a secret in every place it must never reach."""

from __future__ import annotations

from sqlalchemy import MetaData, select

from nodewright.db.database import Database


def database_dump(database: Database) -> str:
    """Every value of every table, as text (the whole database in plaintext, as an attacker sees it)."""
    metadata = MetaData()
    metadata.reflect(database.engine)
    parts: list[str] = []
    with database.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                parts.append(" ".join(str(v) for v in row))
    return "\n".join(parts)
