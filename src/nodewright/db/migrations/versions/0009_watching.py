"""watching: node health, check history and daily roll-up, sweep clock, maintenance pauses

New tables only; ``nodes.status`` gains the value ``degraded`` (a string column: no change).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nodewright.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = nodewright.db.types.UTCDateTime(timezone=True)
    op.create_table(
        "node_health",
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("consecutive_successes", sa.Integer(), nullable=False),
        sa.Column("last_check_at", when, nullable=True),
        sa.Column("last_ok", sa.Boolean(), nullable=True),
        sa.Column("next_check_at", when, nullable=True),
        sa.Column("failing_since", when, nullable=True),
        sa.Column("degraded_since", when, nullable=True),
        sa.Column("last_failure", sa.JSON(), nullable=False),
        sa.Column("grace_until", when, nullable=True),
        sa.Column("updated_at", when, nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_node_health")),
    )
    with op.batch_alter_table("node_health", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_node_health_health"), ["health"], unique=False)
        batch_op.create_index(batch_op.f("ix_node_health_next_check_at"), ["next_check_at"], unique=False)
    op.create_table(
        "node_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("at", when, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_checks")),
    )
    with op.batch_alter_table("node_checks", schema=None) as batch_op:
        batch_op.create_index("ix_node_checks_node_at", ["node_id", "id"], unique=False)
    op.create_table(
        "node_check_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_check_days")),
    )
    with op.batch_alter_table("node_check_days", schema=None) as batch_op:
        batch_op.create_index("uq_node_check_days_node_day", ["node_id", "day"], unique=True)
    op.create_table(
        "watch_sweeps",
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("listed_at", when, nullable=True),
        sa.Column("list_error", sa.Text(), nullable=True),
        sa.Column("servers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_watch_sweeps")),
    )
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("selector", sa.JSON(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("starts_at", when, nullable=False),
        sa.Column("ends_at", when, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_windows")),
    )
    with op.batch_alter_table("maintenance_windows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_maintenance_windows_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_maintenance_windows_ends_at"), ["ends_at"], unique=False)


def downgrade() -> None:
    # A degraded node was a ready one as far as the older code knows.
    op.execute("UPDATE nodes SET status = 'ready' WHERE status = 'degraded'")
    op.drop_table("maintenance_windows")
    op.drop_table("watch_sweeps")
    op.drop_table("node_check_days")
    op.drop_table("node_checks")
    op.drop_table("node_health")
