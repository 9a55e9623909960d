"""trigger points and mail to owners about no enrollment: ``trigger_marks`` keeps, per
trigger point, the last event it has read (the next pass reads only later ones); a message
to an owner with no enrollment (a trigger task's notice, an escalation, a daily digest) is unique by its
step and attempt key (``escalation:<task>``, ``digest:<user>:<day>``), so it is written once

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trigger_marks",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_trigger_marks")),
    )
    op.create_index(
        "uq_messages_unenrolled",
        "messages",
        ["step_id", "attempt_key"],
        unique=True,
        sqlite_where=sa.text("enrollment_id IS NULL AND channel = 'owner'"),
        postgresql_where=sa.text("enrollment_id IS NULL AND channel = 'owner'"),
    )


def downgrade() -> None:
    op.drop_index("uq_messages_unenrolled", table_name="messages")
    op.drop_table("trigger_marks")
