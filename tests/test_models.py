"""The data model on both backends: constraints, JSON columns, aware timestamps, Japanese text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from campaigns.store.db import current_revision
from campaigns.store.enums import EnrollmentState, MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, Journey, JourneyVersion, Message


def _journey(session) -> tuple[Journey, JourneyVersion]:
    journey = Journey(key="j", name="J")
    session.add(journey)
    session.flush()
    version = JourneyVersion(
        journey_id=journey.id,
        number=1,
        source_path="j.yaml",
        source_text="x",
        source_hash="h",
        definition={},
    )
    session.add(version)
    session.flush()
    journey.current_version_id = version.id
    return journey, version


def test_schema_is_at_the_newest_migration(db):
    from alembic.script import ScriptDirectory

    from campaigns.store.db import MIGRATIONS

    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    assert len(heads) == 1, f"the migrations branch: {heads}"
    assert current_revision(db.engine) == heads[0]


def test_the_migrations_build_exactly_the_models(db):
    """Autogenerate against the migrated database finds nothing to add, drop or change."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from campaigns.store.models import Base

    with db.engine.connect() as conn:
        diffs = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
        )
    assert diffs == []


def test_account_and_contact_round_trip_japanese_and_json(db):
    with db.session() as s, s.begin():
        acct = Account(
            external_id="A-1",
            name="株式会社テスト",
            arr=Decimal("6000000.00"),
            renewal_date=date(2027, 3, 31),
            attributes={"地域": "関東", "seats": 40},
        )
        s.add(acct)
        s.flush()
        s.add(
            Contact(
                account_id=acct.id,
                email="taro@example.jp",
                name="山田 太郎",
                locale="ja",
                time_zone="Asia/Tokyo",
            )
        )
    with db.session() as s:
        contact = s.scalars(select(Contact)).one()
        assert contact.name == "山田 太郎"
        assert contact.account is not None
        assert contact.account.attributes == {"地域": "関東", "seats": 40}
        assert contact.account.arr == Decimal("6000000.00")
        assert contact.subscribed is True
        assert contact.created_at.tzinfo is not None


def test_contact_email_is_unique(db):
    with db.session() as s:
        s.add(Contact(email="a@example.com"))
        s.add(Contact(email="a@example.com"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_timestamps_come_back_aware_and_in_utc(db):
    tokyo = datetime(2027, 1, 5, 9, 0, tzinfo=UTC) + timedelta(hours=0)
    with db.session() as s, s.begin():
        _, version = _journey(s)
        contact = Contact(email="t@example.com")
        s.add(contact)
        s.flush()
        s.add(
            Enrollment(
                journey_id=version.journey_id,
                journey_version_id=version.id,
                contact_id=contact.id,
                next_run_at=tokyo,
            )
        )
    with db.session() as s:
        enrollment = s.scalars(select(Enrollment)).one()
        assert enrollment.next_run_at == tokyo
        assert enrollment.next_run_at.tzinfo is not None
        assert enrollment.state == EnrollmentState.ACTIVE


def test_naive_datetimes_are_refused(db):
    with db.session() as s:
        s.add(Contact(email="n@example.com", created_at=datetime(2027, 1, 1)))
        with pytest.raises(Exception, match="naive datetime"):
            s.commit()


def test_one_enrollment_per_contact_and_entry_key(db):
    with db.session() as s, s.begin():
        _, version = _journey(s)
        contact = Contact(email="e@example.com")
        s.add(contact)
        s.flush()
        ids = dict(
            journey_id=version.journey_id, journey_version_id=version.id, contact_id=contact.id
        )
    with db.session() as s:
        s.add(Enrollment(**ids, entry_key="segment"))
        s.add(Enrollment(**ids, entry_key="segment"))
        with pytest.raises(IntegrityError):
            s.commit()
    with db.session() as s, s.begin():
        s.add(Enrollment(**ids, entry_key="date:2027-03-31"))
        s.add(Enrollment(**ids, entry_key="date:2028-03-31"))


def test_a_step_is_written_once_per_attempt_key(db):
    with db.session() as s, s.begin():
        _, version = _journey(s)
        contact = Contact(email="m@example.com")
        s.add(contact)
        s.flush()
        enrollment = Enrollment(
            journey_id=version.journey_id, journey_version_id=version.id, contact_id=contact.id
        )
        s.add(enrollment)
        s.flush()
        key = dict(
            enrollment_id=enrollment.id, contact_id=contact.id, step_id="welcome", attempt_key="1"
        )
    with db.session() as s:
        s.add(Message(**key))
        s.add(Message(**key))
        with pytest.raises(IntegrityError):
            s.commit()
    with db.session() as s:
        assert s.scalars(select(Message)).all() == []
    with db.session() as s, s.begin():
        s.add(Message(**key))
    with db.session() as s:
        assert s.scalars(select(Message.status)).one() == MessageStatus.PENDING
