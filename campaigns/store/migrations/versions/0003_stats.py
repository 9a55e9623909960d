"""stats: pre-aggregated counts for reports; the tuner's allocations; first human open/click/answer per message;
"counted" markers on the rows the stats roll up

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import campaigns.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "stats",
        sa.Column("id", big, nullable=False),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("count", big, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats")),
        sa.UniqueConstraint("journey_id", "step_id", "channel", "variant", "segment", "tier", "day", "metric", name="uq_stats_key"),
    )
    op.create_table(
        "allocations",
        sa.Column("id", big, nullable=False),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("at", campaigns.store.models.UTCDateTime(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("p_best", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
    )
    op.create_index("ix_allocations_step", "allocations", ["journey_id", "step_id", "at"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("opened_at", campaigns.store.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("clicked_at", campaigns.store.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("answered_at", campaigns.store.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("counted", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("counted", sa.SmallInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("counted", sa.SmallInteger(), nullable=False, server_default="0"))
    op.create_index("ix_messages_uncounted", "messages", ["id"], sqlite_where=sa.text("counted = 0"), postgresql_where=sa.text("NOT counted"))
    op.create_index("ix_enrollments_uncounted", "enrollments", ["id"], sqlite_where=sa.text("counted < 3"), postgresql_where=sa.text("counted < 3"))


def downgrade() -> None:
    op.drop_index("ix_enrollments_uncounted", "enrollments")
    op.drop_index("ix_messages_uncounted", "messages")
    for table in ("tasks", "enrollments"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("counted")
    with op.batch_alter_table("messages") as batch:
        for column in ("counted", "answered_at", "clicked_at", "opened_at"):
            batch.drop_column(column)
    op.drop_index("ix_allocations_step", "allocations")
    op.drop_table("allocations")
    op.drop_table("stats")
