"""account journeys: an enrollment may have an account and no contact (an account
journey's), one per account and entry key; the enrollments' journey and version indexes and
foreign keys go (the unique keys lead with the journey; journeys and versions are never
deleted); tasks.open_key: one open task per account and step; messages.contact_id may be
empty (an account journey's mail to its owner is about no one contact); an in-app message is
unique per enrollment, step and contact (an account journey shows it to each recipient)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        # Journeys and versions are never deleted; the two checks were 40% of enrolling a
        # million contacts on PostgreSQL (bench/enrol.py).
        batch.drop_constraint("fk_enrollments_journey_id_journeys", type_="foreignkey")
        batch.drop_constraint(
            "fk_enrollments_journey_version_id_journey_versions", type_="foreignkey"
        )
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.alter_column("contact_id", existing_type=sa.Integer(), nullable=True)
        batch.create_foreign_key(
            op.f("fk_enrollments_account_id_accounts"), "accounts", ["account_id"], ["id"]
        )
    op.create_index(op.f("ix_enrollments_account_id"), "enrollments", ["account_id"])
    # Written for every entrant and read by nothing: the unique keys lead with journey_id,
    # and versions are read by id (enrolling a million contacts spends less on indexes).
    op.drop_index("ix_enrollments_journey_id", table_name="enrollments")
    op.drop_index("ix_enrollments_journey_version_id", table_name="enrollments")
    op.create_index(
        "uq_enrollments_account_entry",
        "enrollments",
        ["journey_id", "account_id", "entry_key"],
        unique=True,
        sqlite_where=sa.text("contact_id IS NULL"),
        postgresql_where=sa.text("contact_id IS NULL"),
    )
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("open_key", sa.String(length=160), nullable=True))
        batch.create_unique_constraint(op.f("uq_tasks_open_key"), ["open_key"])
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("contact_id", existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("in_app_messages") as batch:
        batch.drop_constraint("uq_in_app_messages_step", type_="unique")
        batch.create_unique_constraint(
            "uq_in_app_messages_step", ["enrollment_id", "step_id", "contact_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("in_app_messages") as batch:
        batch.drop_constraint("uq_in_app_messages_step", type_="unique")
        batch.create_unique_constraint("uq_in_app_messages_step", ["enrollment_id", "step_id"])
    op.execute("DELETE FROM messages WHERE contact_id IS NULL")
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("contact_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint(op.f("uq_tasks_open_key"), type_="unique")
        batch.drop_column("open_key")
    op.create_index("ix_enrollments_journey_version_id", "enrollments", ["journey_version_id"])
    op.create_index("ix_enrollments_journey_id", "enrollments", ["journey_id"])
    op.drop_index("uq_enrollments_account_entry", table_name="enrollments")
    op.drop_index(op.f("ix_enrollments_account_id"), table_name="enrollments")
    op.execute("DELETE FROM enrollments WHERE contact_id IS NULL")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_constraint(op.f("fk_enrollments_account_id_accounts"), type_="foreignkey")
        batch.create_foreign_key(
            "fk_enrollments_journey_id_journeys", "journeys", ["journey_id"], ["id"]
        )
        batch.create_foreign_key(
            "fk_enrollments_journey_version_id_journey_versions",
            "journey_versions",
            ["journey_version_id"],
            ["id"],
        )
        batch.alter_column("contact_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("account_id")
