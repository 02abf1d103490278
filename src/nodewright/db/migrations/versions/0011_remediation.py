"""remediation: the ladder's steps per node, the fleet brake per connection, resend counting

New tables ``node_remediations`` and ``remediation_brakes``; ``node_health`` gains
``degraded_checks`` (failed checks since the node became degraded, for alert resends).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nodewright.db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = nodewright.db.types.UTCDateTime(timezone=True)
    op.create_table(
        "node_remediations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("old_server_id", sa.Integer(), nullable=True),
        sa.Column("new_server_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("started_at", when, nullable=True),
        sa.Column("finished_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_remediations")),
    )
    with op.batch_alter_table("node_remediations", schema=None) as batch_op:
        batch_op.create_index("ix_node_remediations_node", ["node_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_node_remediations_provider_id"), ["provider_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_node_remediations_state"), ["state"], unique=False)
    op.create_table(
        "remediation_brakes",
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("degraded", sa.Integer(), nullable=False),
        sa.Column("watched", sa.Integer(), nullable=False),
        sa.Column("threshold_percent", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("engaged_at", when, nullable=True),
        sa.Column("released_at", when, nullable=True),
        sa.Column("updated_at", when, nullable=False),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_remediation_brakes")),
    )
    with op.batch_alter_table("node_health", schema=None) as batch_op:
        batch_op.add_column(sa.Column("degraded_checks", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("node_health", schema=None) as batch_op:
        batch_op.drop_column("degraded_checks")
    op.drop_table("remediation_brakes")
    op.drop_table("node_remediations")
