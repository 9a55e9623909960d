"""A user who takes a daily digest gets no notice per task, and once a day, at the digest
hour in the team's zone, one email listing exactly their new tasks and their overdue ones
(none of another owner's, none already digested, none closed), by account, the most
pressing first, escalations marked. Real SMTP (aiosmtpd), parsed with ``email``."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.triggers import parse_triggers
from campaigns.store.enums import EventKind, MessageStatus, TaskStatus
from campaigns.store.models import Account, Contact, Message, Task, User
from campaigns.store.users import add_user
from campaigns.tracking.events import record_event

DIGEST = "dana@example.com"  # takes a digest, in Japanese
OTHER = "olga@example.com"  # takes a digest too
EACH = "eve@example.com"  # one mail per task
PASSWORD = "correct horse battery"
# 07:00 in Tokyo on Wednesday 2026-11-25: an hour before the digest.
BEFORE_HOUR = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
SETTINGS = {"task_time_zone": "Asia/Tokyo", "task_digest_hour": 8}
TRIGGERS = textwrap.dedent(
    """\
    escalation: {default: lead@example.com}
    triggers:
      churn_risk:
        on: {event: cancellation_requested}
        priority: urgent
        title: "Save {{ account.name }}"
    """
)
JOURNEY = textwrap.dedent(
    """\
    journey: kickoff
    name: Kickoff
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: call
        task: {kind: call, title: "Kickoff call with {{ account.name }}", due: 5 days}
    """
)


@pytest.fixture
def world(db, clock):
    """Accounts of each owner, and tasks of the digest owner in every state."""
    clock.set(BEFORE_HOUR)
    now = clock.now()
    ids: dict[str, int] = {}
    with db.session() as s, s.begin():
        for email, name, mode, locale in (
            (DIGEST, "田中 ダナ", "digest", "ja"),
            (OTHER, "Olga", "digest", None),
            (EACH, "Eve", "each", None),
        ):
            user = add_user(s, email, PASSWORD, now, name=name)
            user.task_mail, user.locale = mode, locale
        for key, name, owner in (
            ("alpha", "株式会社アルファ", DIGEST),
            ("beta", "Beta Ltd", DIGEST),
            ("other", "Other Inc", OTHER),
            ("each", "Each Co", EACH),
        ):
            account = Account(
                external_id=key, name=name, arr=Decimal(1), currency="JPY", owner_email=owner
            )
            s.add(account)
            s.flush()
            ids[key] = account.id

        def task(key: str, title: str, **values: object) -> None:
            values.setdefault("due_at", now + timedelta(days=3))
            s.add(
                Task(
                    account_id=ids[key],
                    owner_email=values.pop("owner", DIGEST),
                    title=title,
                    created_at=now - timedelta(hours=1),
                    **values,
                )
            )

        task("alpha", "new low", priority="low")
        task("alpha", "new urgent", priority="urgent")
        task("beta", "overdue, told before", due_at=now - timedelta(hours=2), notified_at=now)
        task("beta", "digested before, not due", notified_at=now - timedelta(days=1))
        task("beta", "done", status=TaskStatus.DONE, completed_at=now)
        task("other", "olga's task", owner=OTHER)
    return ids


@pytest.fixture
def engine(build_engine, smtp_sink, world):
    found = parse_triggers(TRIGGERS, "triggers.yaml")
    return build_engine(transport=smtp_sink, settings=SETTINGS, triggers=lambda: found)


def mail_to(smtp_sink, address: str) -> list:
    return [
        parsed
        for (_, rcpt, _), parsed in zip(smtp_sink.messages, smtp_sink.parsed(), strict=True)
        if rcpt[0] == address
    ]


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def test_no_digest_before_the_hour_in_the_team_zone(engine, smtp_sink):
    engine.tick()
    assert mail_to(smtp_sink, DIGEST) == []


def test_the_digest_holds_exactly_the_owners_new_and_overdue_tasks(db, engine, clock, smtp_sink):
    clock.advance(timedelta(hours=1))  # 08:00 in Tokyo
    engine.tick()
    (digest,) = mail_to(smtp_sink, DIGEST)
    assert digest["Subject"] == "タスクのお知らせ（2026年11月25日（水））：新規2件・期限超過1件"
    text = text_of(digest)
    for shown in ("new low", "new urgent", "overdue, told before"):
        assert shown in text
    for hidden in ("digested before", "done", "olga's task"):
        assert hidden not in text
    # Grouped by account, the most pressing first.
    assert text.index("株式会社アルファ") < text.index("Beta Ltd")
    assert text.index("new urgent") < text.index("new low")
    assert "【緊急】new urgent" in text and "（期限超過）" in text
    with db.session() as s:
        owner = s.scalar(select(User).where(User.email == DIGEST))
        assert owner is not None and owner.digest_sent_at == clock.now()
        listed = s.scalars(
            select(Task.title).where(Task.notified_at == clock.now(), Task.owner_email == DIGEST)
        ).all()
        (row,) = s.scalars(
            select(Message).where(Message.attempt_key == "digest", Message.to_address == DIGEST)
        ).all()
    assert sorted(listed) == ["new low", "new urgent", "overdue, told before"]
    assert row.status == MessageStatus.SENT and row.step_id == f"digest:{owner.id}:2026-11-25"


def test_one_digest_per_user_per_day(engine, clock, smtp_sink):
    clock.advance(timedelta(hours=1))
    engine.tick()
    clock.advance(timedelta(hours=5))
    engine.tick()
    assert len(mail_to(smtp_sink, DIGEST)) == 1
    assert len(mail_to(smtp_sink, OTHER)) == 1  # Olga's own, in English
    (olga,) = mail_to(smtp_sink, OTHER)
    assert "olga's task" in text_of(olga) and "new urgent" not in text_of(olga)
    assert olga["Subject"].startswith("Your tasks, November 25, 2026: 1 new, 0 overdue")


def test_the_next_days_digest_lists_only_what_is_new_or_still_overdue(
    db, engine, clock, smtp_sink, world
):
    clock.advance(timedelta(hours=1))
    engine.tick()
    with db.session() as s, s.begin():
        s.add(
            Task(
                account_id=world["beta"],
                owner_email=DIGEST,
                title="tomorrow's new",
                due_at=clock.now() + timedelta(days=5),
                created_at=clock.now(),
            )
        )
    clock.advance(timedelta(days=1))
    engine.tick()
    _first, second = mail_to(smtp_sink, DIGEST)
    text = text_of(second)
    assert "tomorrow's new" in text and "overdue, told before" in text
    assert "new low" not in text and "new urgent" not in text
    # The overdue task was escalated meanwhile: the digest says so.
    assert "lead@example.comへエスカレーション済み" in text


def test_digest_users_get_no_mail_per_task(db, engine, clock, smtp_sink, world):
    with db.session() as s, s.begin():
        for key in ("alpha", "each"):
            s.add(Contact(account_id=world[key], email=f"buyer@{key}.example", name="Buyer"))
            record_event(
                s,
                clock.now(),
                kind=EventKind.CUSTOM,
                name="cancellation_requested",
                account_id=world[key],
            )
        deploy(s, parse_journey(JOURNEY, "kickoff.yaml"), JOURNEY, "kickoff.yaml")
    engine.tick()  # 07:00 in Tokyo: no digest yet; the journey's tasks open
    clock.advance(timedelta(minutes=5))
    engine.tick()  # the trigger's tasks open
    assert mail_to(smtp_sink, DIGEST) == []
    subjects = sorted(m["Subject"] for m in mail_to(smtp_sink, EACH))
    assert subjects == ["[Task] Kickoff call with Each Co", "[Task] Save Each Co"]
    with db.session() as s:
        fresh = s.scalars(
            select(Task.title).where(Task.owner_email == DIGEST, Task.notified_at.is_(None))
        ).all()
    assert "Save 株式会社アルファ" in fresh and "Kickoff call with 株式会社アルファ" in fresh
    clock.advance(timedelta(hours=1))
    engine.tick()
    (digest,) = mail_to(smtp_sink, DIGEST)
    assert "Save 株式会社アルファ" in text_of(digest)
