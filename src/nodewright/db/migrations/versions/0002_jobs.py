"""jobs: jobs, steps (checkpoints), events (append-only log), workers (heartbeats)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 20:18:30.618800
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nodewright.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("resource_key", sa.String(length=128), nullable=True),
        sa.Column("dedup_key", sa.String(length=256), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("run_after", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_claim", ["state", "priority", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_resource_key"), ["resource_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_state"), ["state"], unique=False)
        batch_op.create_index(
            "uq_jobs_holding_resource_key",
            ["resource_key"],
            unique=True,
            sqlite_where=sa.text("state IN ('running', 'canceling')"),
            postgresql_where=sa.text("state IN ('running', 'canceling')"),
        )
        batch_op.create_index(
            "uq_jobs_pending_dedup_key",
            ["dedup_key"],
            unique=True,
            sqlite_where=sa.text("state IN ('queued', 'running', 'retry_wait')"),
            postgresql_where=sa.text("state IN ('queued', 'running', 'retry_wait')"),
        )

    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("started_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workers_heartbeat_at"), ["heartbeat_at"], unique=False)

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
        sa.UniqueConstraint("job_id", "seq", name="uq_job_events_job_id_seq"),
    )
    op.create_table(
        "job_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("started_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", nodewright.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_steps_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_steps")),
        sa.UniqueConstraint("job_id", "name", name="uq_job_steps_job_id_name"),
    )


def downgrade() -> None:
    op.drop_table("job_steps")
    op.drop_table("job_events")
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workers_heartbeat_at"))

    op.drop_table("workers")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_jobs_pending_dedup_key",
            sqlite_where=sa.text("state IN ('queued', 'running', 'retry_wait')"),
            postgresql_where=sa.text("state IN ('queued', 'running', 'retry_wait')"),
        )
        batch_op.drop_index(
            "uq_jobs_holding_resource_key",
            sqlite_where=sa.text("state IN ('running', 'canceling')"),
            postgresql_where=sa.text("state IN ('running', 'canceling')"),
        )
        batch_op.drop_index(batch_op.f("ix_jobs_state"))
        batch_op.drop_index(batch_op.f("ix_jobs_resource_key"))
        batch_op.drop_index(batch_op.f("ix_jobs_kind"))
        batch_op.drop_index("ix_jobs_claim")

    op.drop_table("jobs")
