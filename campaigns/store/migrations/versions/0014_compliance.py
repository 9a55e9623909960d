"""Consent, erasure and outgoing events (issue 15).

- ``accounts.country`` and ``contacts.country``: whose rule on marketing mail applies;
- ``contacts.consent_basis``, ``consent_source``, ``consent_at``, ``consent_wording``: the
  current basis for marketing mail;
- ``consent_records``: the consent history, kept under a hash of the address;
- ``erased_addresses``: the hashed suppression an erased contact leaves;
- ``outbound_events``: the outgoing events, one row per event and subscriber.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import campaigns.store.models

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = campaigns.store.models.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("consent_basis", sa.String(24), nullable=True))
        batch.add_column(sa.Column("consent_source", sa.String(255), nullable=True))
        batch.add_column(sa.Column("consent_at", _TIME(), nullable=True))
        batch.add_column(sa.Column("consent_wording", sa.String(64), nullable=True))
    op.create_table(
        "consent_records",
        sa.Column("id", _ID, primary_key=True),
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("contacts.id", name="fk_consent_records_contact_id_contacts"),
            nullable=True,
        ),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("basis", sa.String(24), nullable=True),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("wording", sa.String(64), nullable=True),
        sa.Column("at", _TIME(), nullable=False),
        sa.Column("recorded_at", _TIME(), nullable=False),
        sa.Column("actor", sa.String(320), nullable=True),
        sa.Column("detail", campaigns.store.models.JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_records"),
    )
    op.create_index("ix_consent_records_contact", "consent_records", ["contact_id", "at"])
    op.create_index("ix_consent_records_email_hash", "consent_records", ["email_hash"])
    op.create_table(
        "erased_addresses",
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("erased_at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("email_hash", name="pk_erased_addresses"),
    )
    op.create_table(
        "outbound_events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("subscriber", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at", _TIME(), nullable=False),
        sa.Column("payload", campaigns.store.models.JSONType, nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TIME(), nullable=False),
        sa.Column("claimed_until", _TIME(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("delivered_at", _TIME(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbound_events"),
        sa.UniqueConstraint("uid", "subscriber", name="uq_outbound_events_uid"),
    )
    op.create_index("ix_outbound_events_due", "outbound_events", ["status", "next_attempt_at"])
    op.create_index("ix_outbound_events_contact", "outbound_events", ["contact_id"])


def downgrade() -> None:
    op.drop_index("ix_outbound_events_contact", "outbound_events")
    op.drop_index("ix_outbound_events_due", "outbound_events")
    op.drop_table("outbound_events")
    op.drop_table("erased_addresses")
    op.drop_index("ix_consent_records_email_hash", "consent_records")
    op.drop_index("ix_consent_records_contact", "consent_records")
    op.drop_table("consent_records")
    with op.batch_alter_table("contacts") as batch:
        for name in ("consent_wording", "consent_at", "consent_source", "consent_basis", "country"):
            batch.drop_column(name)
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("country")
