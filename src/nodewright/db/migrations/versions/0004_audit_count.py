"""audit count and job event notifications

- ``audit_events.count``: one row stands for a run of identical refusals (a throttled sign-in flood).
- PostgreSQL only: a trigger notifies ``nodewright_job_events`` with the job id of every new job
  event, so each ``serve`` process follows all open event streams over one LISTEN connection
  (events are written by workers in other processes and on other machines).

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-30 00:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION nodewright_job_event_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('nodewright_job_events', NEW.job_id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
FOR EACH ROW EXECUTE FUNCTION nodewright_job_event_notify()
"""


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("count", sa.Integer(), server_default="1", nullable=False))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS job_events_notify ON job_events")
        op.execute("DROP FUNCTION IF EXISTS nodewright_job_event_notify()")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("count")
