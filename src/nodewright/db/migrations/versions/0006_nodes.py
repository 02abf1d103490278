"""nodes: nodes, orphan servers and feature gates

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nodewright.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dt = nodewright.db.types.UTCDateTime(timezone=True)
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("contract", sa.String(length=32), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("server_type", sa.String(length=64), nullable=False),
        sa.Column("image", sa.String(length=128), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("profile", sa.String(length=63), nullable=False),
        sa.Column("ssh_authorized_keys", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_hint", sa.Text(), nullable=True),
        sa.Column("error_retryable", sa.Boolean(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("server_id", sa.Integer(), nullable=True),
        sa.Column("server_name", sa.String(length=63), nullable=True),
        sa.Column("server_status", sa.String(length=16), nullable=True),
        sa.Column("ssh_address", sa.String(length=64), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=True),
        sa.Column("ssh_user", sa.String(length=32), nullable=True),
        sa.Column("host_public_key", sa.Text(), nullable=True),
        sa.Column("host_key_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("host_key_secret_id", sa.Integer(), nullable=True),
        sa.Column("price_hourly", sa.String(length=32), nullable=True),
        sa.Column("price_monthly", sa.String(length=32), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("request_digest", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", dt, nullable=False),
        sa.Column("updated_at", dt, nullable=False),
        sa.Column("ready_at", dt, nullable=True),
        sa.Column("released_at", dt, nullable=True),
        sa.ForeignKeyConstraint(
            ["host_key_secret_id"],
            ["stored_secrets.id"],
            name=op.f("fk_nodes_host_key_secret_id_stored_secrets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["provider_connections.id"],
            name=op.f("fk_nodes_provider_id_provider_connections"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_nodes_idempotency_key")),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nodes_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_nodes_provider_id"), ["provider_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_nodes_status"), ["status"], unique=False)
        batch_op.create_index(
            "uq_nodes_live_name",
            ["name"],
            unique=True,
            sqlite_where=sa.text("status != 'released'"),
            postgresql_where=sa.text("status != 'released'"),
        )
    op.create_table(
        "feature_gates",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_feature_gates")),
    )

    op.create_table(
        "orphan_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("ipv4", sa.String(length=64), nullable=True),
        sa.Column("first_seen_at", dt, nullable=False),
        sa.Column("last_seen_at", dt, nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["provider_connections.id"],
            name=op.f("fk_orphan_servers_provider_id_provider_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orphan_servers")),
    )
    with op.batch_alter_table("orphan_servers", schema=None) as batch_op:
        batch_op.create_index("uq_orphan_servers_provider_server", ["provider_id", "server_id"], unique=True)


def downgrade() -> None:
    op.drop_table("orphan_servers")
    op.drop_table("feature_gates")
    op.drop_table("nodes")
