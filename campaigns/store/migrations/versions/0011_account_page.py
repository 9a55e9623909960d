"""Indexes for the account page and "My accounts".

- ``events(account_id, occurred_at)`` for the events of an account that name no contact
  (``health_band_changed``, an account's product events): the account page's timeline reads
  them, and without it each page scanned every event. Partial, so the hot path that records
  contacts' hits pays nothing for it;
- ``accounts(owner_email, health_score)`` for a CSM's own accounts, sorted by health.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_account_occurred",
        "events",
        ["account_id", "occurred_at"],
        sqlite_where=sa.text("contact_id IS NULL"),
        postgresql_where=sa.text("contact_id IS NULL"),
    )
    op.create_index("ix_accounts_owner_health", "accounts", ["owner_email", "health_score"])


def downgrade() -> None:
    op.drop_index("ix_accounts_owner_health", table_name="accounts")
    op.drop_index("ix_events_account_occurred", table_name="events")
