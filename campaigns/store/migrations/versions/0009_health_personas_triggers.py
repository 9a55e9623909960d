"""Health scores, usage metrics, personas and trigger points.

- ``usage_metrics``: the daily product usage an account's product posts (one row per
  account, metric and day), which scorecards read over a window;
- ``health_scores``: one row per account per day, the score, its band and what each measure
  contributed; ``accounts.health_band`` and the changes over 7 and 30 days are the latest;
- ``contacts.title``: the job title personas may read;
- ``messages.persona``: the persona a message was chosen for (reports break down by it);
- tasks get a priority, the trigger that opened them and their escalation;
- users choose each task by mail or a daily digest, and name who their tasks escalate to.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "usage_metrics",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_usage_metrics_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "metric", "day", name=op.f("pk_usage_metrics")),
    )
    op.create_index("ix_usage_metrics_day", "usage_metrics", ["day"])
    op.create_table(
        "health_scores",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("scorecard", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("band", sa.String(length=16), nullable=True),
        sa.Column("measures", JSON, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        # No foreign key: accounts are not deleted, and the check of 250k rows a day was 2.5 s
        # of the day's scoring on PostgreSQL (bench/health.py).
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("pk_health_scores")),
    )
    op.create_index("ix_health_scores_day_band", "health_scores", ["day", "band"])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("health_band", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("health_change_7d", sa.Float(), nullable=True))
        batch.add_column(sa.Column("health_change_30d", sa.Float(), nullable=True))
        batch.add_column(sa.Column("health_scored_on", sa.Date(), nullable=True))
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("title", sa.String(length=255), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("persona", sa.String(length=64), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("priority", sa.String(length=8), nullable=False, server_default="normal")
        )
        batch.add_column(sa.Column("trigger", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("escalated_to", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_tasks_status_due", "tasks", ["status", "due_at"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("task_mail", sa.String(length=16), nullable=False, server_default="each")
        )
        batch.add_column(sa.Column("escalate_to", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("team", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("digest_sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        for column in ("digest_sent_at", "team", "escalate_to", "task_mail"):
            batch.drop_column(column)
    op.drop_index("ix_tasks_status_due", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        for column in ("notified_at", "escalated_to", "escalated_at", "trigger", "priority"):
            batch.drop_column(column)
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("persona")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("title")
    with op.batch_alter_table("accounts") as batch:
        for column in ("health_scored_on", "health_change_30d", "health_change_7d", "health_band"):
            batch.drop_column(column)
    op.drop_index("ix_health_scores_day_band", table_name="health_scores")
    op.drop_table("health_scores")
    op.drop_index("ix_usage_metrics_day", table_name="usage_metrics")
    op.drop_table("usage_metrics")
