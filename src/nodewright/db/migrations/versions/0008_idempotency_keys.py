"""idempotency keys: scoped to the calling user, expiring after 24 hours

The key used to be a column of ``nodes``, unique across every user. It moves to its own table,
unique per (scope, key). Keys younger than 24 hours are carried over, scoped to the user named in
the node's ``created_by`` (``user:<name>`` or ``user:<name>/token:<label>``); older ones had expired.
``node_id`` carries no foreign key, like ``nodes.job_id``: on SQLite a batch migration of ``nodes``
recreates the table, and a cascading key would delete every live key with it.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

import nodewright.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TTL = dt.timedelta(hours=24)


def _keys_table() -> sa.TableClause:
    when = nodewright.db.types.UTCDateTime(timezone=True)
    return sa.table(
        "idempotency_keys",
        sa.column("scope", sa.String()),
        sa.column("key", sa.String()),
        sa.column("request_digest", sa.String()),
        sa.column("node_id", sa.Integer()),
        sa.column("created_at", when),
        sa.column("expires_at", when),
    )


def _nodes_table() -> sa.TableClause:
    return sa.table(
        "nodes",
        sa.column("id", sa.Integer()),
        sa.column("idempotency_key", sa.String()),
        sa.column("request_digest", sa.String()),
        sa.column("created_by", sa.String()),
        sa.column("created_at", nodewright.db.types.UTCDateTime(timezone=True)),
    )


def upgrade() -> None:
    dt_type = nodewright.db.types.UTCDateTime(timezone=True)
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("created_at", dt_type, nullable=False),
        sa.Column("expires_at", dt_type, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_idempotency_keys_node_id"), ["node_id"], unique=False)
        batch_op.create_index("uq_idempotency_keys_scope_key", ["scope", "key"], unique=True)

    bind = op.get_bind()
    nodes = _nodes_table()
    now = dt.datetime.now(dt.UTC)
    users = {name: uid for uid, name in bind.execute(sa.text("SELECT id, username FROM users"))}
    carried = []
    for node_id, key, digest, created_by, created_at in bind.execute(
        sa.select(
            nodes.c.id,
            nodes.c.idempotency_key,
            nodes.c.request_digest,
            nodes.c.created_by,
            nodes.c.created_at,
        ).where(nodes.c.idempotency_key.is_not(None), nodes.c.created_at > now - TTL)
    ):
        name = (
            created_by.removeprefix("user:").split("/token:", 1)[0]
            if created_by.startswith("user:")
            else None
        )
        scope = f"user:{users[name]}" if name in users else f"actor:{created_by}"[:64]
        carried.append(
            {
                "scope": scope,
                "key": key,
                "request_digest": digest or "",
                "node_id": node_id,
                "created_at": created_at,
                "expires_at": created_at + TTL,
            }
        )
    if carried:
        op.bulk_insert(_keys_table(), carried)

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_nodes_idempotency_key"), type_="unique")
        batch_op.drop_column("idempotency_key")


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=128), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_nodes_idempotency_key"), ["idempotency_key"])
    # Back to one key across all users: the newest node keeps a key several users shared.
    bind = op.get_bind()
    nodes, seen = _nodes_table(), set()
    keys = _keys_table()
    for key, node_id in bind.execute(sa.select(keys.c.key, keys.c.node_id).order_by(keys.c.node_id.desc())):
        if key not in seen:
            seen.add(key)
            bind.execute(sa.update(nodes).where(nodes.c.id == node_id).values(idempotency_key=key))
    op.drop_table("idempotency_keys")
