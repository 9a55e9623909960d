"""Indexes for the account page and "My accounts".

- ``events(account_id, occurred_at)`` for the events of an account that name no contact
  (``health_band_changed``, an account's product events): the account page's timeline reads
  them, and without it each page scanned every event. Partial, so the hot path that records
  contacts' hits pays nothing for it;
- ``accounts(owner_email)`` for a CSM's own accounts ("My accounts"). Not with the health
  columns: the day's scoring (:mod:`campaigns.engine.health`) rewrites them for every
  account, and while no index holds them PostgreSQL updates the rows in place (HOT), in the
  room ``fillfactor = 50`` leaves on each page of ``accounts``: half of each page is free for
  the new versions of its rows (the update of 250k accounts went from 8.3 s to 4.3 s,
  bench/health.py); pages written before keep their fill until rewritten.

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
    op.create_index("ix_accounts_owner_email", "accounts", ["owner_email"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE accounts SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE accounts RESET (fillfactor)")
    op.drop_index("ix_accounts_owner_email", table_name="accounts")
    op.drop_index("ix_events_account_occurred", table_name="events")
