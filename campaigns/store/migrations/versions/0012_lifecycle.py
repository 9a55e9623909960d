"""Journey lifecycle and the audit log.

- ``journeys.status`` now reads ``draft``, ``live``, ``paused`` or ``archived``: ``active``
  becomes ``live``;
- ``journeys.paused_at``: since when a paused journey holds;
- ``audit_log``: who deployed, edited, paused, resumed, archived, took someone out or
  exported, and when.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import campaigns.store.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.add_column(sa.Column("paused_at", campaigns.store.models.UTCDateTime(), nullable=True))
    op.execute("UPDATE journeys SET status = 'live' WHERE status = 'active'")
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
        ),
        sa.Column("at", campaigns.store.models.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(320), nullable=False),
        sa.Column("detail", campaigns.store.models.JSONType, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_target", "audit_log", ["target_kind", "target", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_target", "audit_log")
    op.drop_index("ix_audit_log_at", "audit_log")
    op.drop_table("audit_log")
    op.execute("UPDATE journeys SET status = 'active' WHERE status = 'live'")
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("paused_at")
