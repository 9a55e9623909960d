"""contact preferences: categories opted out of, and a pause; the journeys' current-version
foreign key, which 0001 left out on PostgreSQL (a ``use_alter`` constraint)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import campaigns.store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("opt_out", campaigns.store.models.JSONType, nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("paused_until", campaigns.store.models.UTCDateTime(), nullable=True))
    if op.get_bind().dialect.name != "sqlite":  # SQLite wrote it inline with the table
        op.create_foreign_key("fk_journeys_current_version_id_journey_versions", "journeys", "journey_versions", ["current_version_id"], ["id"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_journeys_current_version_id_journey_versions", "journeys", type_="foreignkey")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("paused_until")
        batch.drop_column("opt_out")
