"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 18:59:18.318639
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import campaigns.store.models
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('arr', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('ltv', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('plan', sa.String(length=64), nullable=True),
    sa.Column('contract_status', sa.String(length=32), nullable=False),
    sa.Column('contract_start', sa.Date(), nullable=True),
    sa.Column('renewal_date', sa.Date(), nullable=True),
    sa.Column('industry', sa.String(length=64), nullable=True),
    sa.Column('company_size', sa.Integer(), nullable=True),
    sa.Column('owner_email', sa.String(length=320), nullable=True),
    sa.Column('health_score', sa.Integer(), nullable=True),
    sa.Column('tier', sa.String(length=64), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('external_id', name=op.f('uq_accounts_external_id'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_industry'), ['industry'], unique=False)
        batch_op.create_index(batch_op.f('ix_accounts_plan'), ['plan'], unique=False)
        batch_op.create_index(batch_op.f('ix_accounts_renewal_date'), ['renewal_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_accounts_tier'), ['tier'], unique=False)

    op.create_table('journeys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('current_version_id', sa.Integer(), nullable=True),
    sa.Column('created_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['current_version_id'], ['journey_versions.id'], name=op.f('fk_journeys_current_version_id_journey_versions'), use_alter=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journeys')),
    sa.UniqueConstraint('key', name=op.f('uq_journeys_key'))
    )
    op.create_table('suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=True),
    sa.Column('created_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppressions')),
    sa.UniqueConstraint('email', name=op.f('uq_suppressions_email'))
    )
    op.create_table('contacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('role', sa.String(length=64), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('subscribed', sa.Boolean(), nullable=False),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_contacts_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    sa.UniqueConstraint('email', name=op.f('uq_contacts_email'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contacts_account_id'), ['account_id'], unique=False)

    op.create_table('journey_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('source_path', sa.String(length=1024), nullable=False),
    sa.Column('source_text', sa.Text(), nullable=False),
    sa.Column('source_hash', sa.String(length=64), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_journey_versions_journey_id_journeys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_versions')),
    sa.UniqueConstraint('journey_id', 'number', name=op.f('uq_journey_versions_journey_id')),
    sa.UniqueConstraint('journey_id', 'source_hash', name='uq_journey_versions_hash')
    )
    with op.batch_alter_table('journey_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journey_versions_journey_id'), ['journey_id'], unique=False)

    op.create_table('enrollments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('journey_version_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('entry_key', sa.String(length=128), nullable=False),
    sa.Column('segment', sa.String(length=64), nullable=True),
    sa.Column('tier', sa.String(length=64), nullable=True),
    sa.Column('holdout', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('current_step', sa.String(length=128), nullable=True),
    sa.Column('next_run_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=128), nullable=True),
    sa.Column('context', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('entered_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('exit_reason', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_enrollments_contact_id_contacts')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_enrollments_journey_id_journeys')),
    sa.ForeignKeyConstraint(['journey_version_id'], ['journey_versions.id'], name=op.f('fk_enrollments_journey_version_id_journey_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollments')),
    sa.UniqueConstraint('journey_id', 'contact_id', 'entry_key', name='uq_enrollments_entry')
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollments_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index('ix_enrollments_due', ['state', 'next_run_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrollments_journey_id'), ['journey_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrollments_journey_version_id'), ['journey_version_id'], unique=False)

    op.create_table('in_app_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('journey_id', sa.Integer(), nullable=True),
    sa.Column('step_id', sa.String(length=128), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=512), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.Column('created_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('seen_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('clicked_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_in_app_messages_contact_id_contacts')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_in_app_messages_enrollment_id_enrollments')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_in_app_messages_journey_id_journeys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_in_app_messages')),
    sa.UniqueConstraint('enrollment_id', 'step_id', name='uq_in_app_messages_step')
    )
    with op.batch_alter_table('in_app_messages', schema=None) as batch_op:
        batch_op.create_index('ix_in_app_contact', ['contact_id', 'seen_at'], unique=False)

    op.create_table('messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=True),
    sa.Column('step_id', sa.String(length=128), nullable=False),
    sa.Column('attempt_key', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=True),
    sa.Column('variant', sa.String(length=64), nullable=True),
    sa.Column('template', sa.String(length=255), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('to_address', sa.String(length=320), nullable=True),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('tries', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('links', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('not_before', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_messages_contact_id_contacts')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_messages_enrollment_id_enrollments')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_messages_journey_id_journeys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('enrollment_id', 'step_id', 'attempt_key', name='uq_messages_attempt'),
    sa.UniqueConstraint('message_id', name=op.f('uq_messages_message_id'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_contact_created', ['contact_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_journey_id'), ['journey_id'], unique=False)
        batch_op.create_index('ix_messages_status', ['status'], unique=False)

    op.create_table('tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('journey_id', sa.Integer(), nullable=True),
    sa.Column('step_id', sa.String(length=128), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('owner_email', sa.String(length=320), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('title', sa.String(length=512), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('due_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_tasks_account_id_accounts')),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_tasks_contact_id_contacts')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_tasks_enrollment_id_enrollments')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_tasks_journey_id_journeys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks')),
    sa.UniqueConstraint('enrollment_id', 'step_id', name='uq_tasks_step')
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tasks_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_tasks_owner_status', ['owner_email', 'status', 'due_at'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('journey_id', sa.Integer(), nullable=True),
    sa.Column('step_id', sa.String(length=128), nullable=True),
    sa.Column('value', sa.String(length=2048), nullable=True),
    sa.Column('classification', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('dedupe_key', sa.String(length=128), nullable=True),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('occurred_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', campaigns.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_events_account_id_accounts')),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_events_contact_id_contacts')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_events_enrollment_id_enrollments')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_events_journey_id_journeys')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_events_message_id_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_events_dedupe_key'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_contact_kind', ['contact_id', 'kind', 'occurred_at'], unique=False)
        batch_op.create_index('ix_events_message_kind', ['message_id', 'kind'], unique=False)
        batch_op.create_index('ix_events_name', ['name', 'occurred_at'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_name')
        batch_op.drop_index('ix_events_message_kind')
        batch_op.drop_index('ix_events_contact_kind')

    op.drop_table('events')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_owner_status')
        batch_op.drop_index(batch_op.f('ix_tasks_account_id'))

    op.drop_table('tasks')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_status')
        batch_op.drop_index(batch_op.f('ix_messages_journey_id'))
        batch_op.drop_index('ix_messages_contact_created')

    op.drop_table('messages')
    with op.batch_alter_table('in_app_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_in_app_contact')

    op.drop_table('in_app_messages')
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollments_journey_version_id'))
        batch_op.drop_index(batch_op.f('ix_enrollments_journey_id'))
        batch_op.drop_index('ix_enrollments_due')
        batch_op.drop_index(batch_op.f('ix_enrollments_contact_id'))

    op.drop_table('enrollments')
    with op.batch_alter_table('journey_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journey_versions_journey_id'))

    op.drop_table('journey_versions')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contacts_account_id'))

    op.drop_table('contacts')
    op.drop_table('suppressions')
    op.drop_table('journeys')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_tier'))
        batch_op.drop_index(batch_op.f('ix_accounts_renewal_date'))
        batch_op.drop_index(batch_op.f('ix_accounts_plan'))
        batch_op.drop_index(batch_op.f('ix_accounts_industry'))

    op.drop_table('accounts')
    
