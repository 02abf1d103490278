"""providers: provider connections (encrypted token, status, rate-limit snapshot, client SSH key)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 00:08:29.472568
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nodewright.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_secret_id", sa.Integer(), nullable=False),
        sa.Column("token_fingerprint", sa.String(length=32), nullable=False),
        sa.Column("api_endpoint", sa.String(length=255), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=False),
        sa.Column("ssh_user", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("last_checked_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("unavailable_since", nodewright.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error_code", sa.String(length=64), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("last_error_hint", sa.Text(), nullable=True),
        sa.Column("last_error_retryable", sa.Boolean(), nullable=True),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("rate_remaining", sa.Float(), nullable=True),
        sa.Column("rate_reset_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rate_observed_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("client_key_secret_id", sa.Integer(), nullable=True),
        sa.Column("client_key_public", sa.Text(), nullable=True),
        sa.Column("client_key_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("client_key_provider_id", sa.Integer(), nullable=True),
        sa.Column("catalog", sa.JSON(), nullable=True),
        sa.Column("catalog_fetched_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("learned_timings", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_key_secret_id"],
            ["stored_secrets.id"],
            name=op.f("fk_provider_connections_client_key_secret_id_stored_secrets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["token_secret_id"],
            ["stored_secrets.id"],
            name=op.f("fk_provider_connections_token_secret_id_stored_secrets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_connections")),
        sa.UniqueConstraint("name", name=op.f("uq_provider_connections_name")),
    )


def downgrade() -> None:
    op.drop_table("provider_connections")
