"""lease tokens: every claim on an enrollment carries a fencing token, and the number of
runs in a row that ended without their holder releasing the enrollment

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("lease_token", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("unfinished_runs", sa.SmallInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("unfinished_runs")
        batch.drop_column("lease_token")
