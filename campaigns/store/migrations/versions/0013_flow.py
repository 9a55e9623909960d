"""Indexes for a journey's live flow (:mod:`campaigns.insight.flow`).

- ``ix_enrollments_flow`` (journey, state, current step, holdout): the flowchart's counts
  of who is where are read from the index alone, and the page of who is at a step seeks
  straight to its rows;
- ``ix_messages_flow`` (journey, status, step): the messages sent per step are counted from
  the index alone, and the deferred ones found without reading the sent.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_enrollments_flow", "enrollments", ["journey_id", "state", "current_step", "holdout"]
    )
    op.create_index("ix_messages_flow", "messages", ["journey_id", "status", "step_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_flow", table_name="messages")
    op.drop_index("ix_enrollments_flow", table_name="enrollments")
