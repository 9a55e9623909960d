"""The shipped renewal and webinar playbooks run end to end on the shipped segments and
templates: real database (SQLite and PostgreSQL), real SMTP (aiosmtpd on loopback), a fake
clock moved a day at a time.

- the high-touch renewal plans once per account: an account with 4 contacts gets 1 task, and
  its QBR invitation goes to its decision makers only;
- the low-touch renewal reminds on the days 90, 60 and 30 before the renewal date, whenever
  the account entered (120, 80, 45 or 20 days out), and sends nothing after the renewal date;
- the webinar reminder goes the day before ``starts_at`` to the contacts who said yes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import load_journey
from campaigns.journeys.segments import load_segments
from campaigns.store.enums import EventKind, MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, Message, Task

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = load_segments(ROOT / "journeys" / "segments.yaml")
TOKYO = ZoneInfo("Asia/Tokyo")
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday, 10:00 in Tokyo
ROLES = ("admin", "user", "billing", "executive")


def deploy_shipped(db, name: str) -> None:
    path = ROOT / "journeys" / f"{name}.yaml"
    with db.session() as s:
        deploy(s, load_journey(path, segments=SEGMENTS), path.read_text("utf-8"), str(path))
        s.commit()


def add_account(db, key: str, *, arr: int, renews: date | None, roles=ROLES) -> int:
    with db.session() as s:
        account = Account(
            external_id=key,
            name=f"{key} 株式会社",
            arr=Decimal(arr),
            plan="business",
            contract_status="active",
            owner_email="csm@example.com",
            renewal_date=renews,
        )
        s.add(account)
        s.flush()
        for role in roles:
            s.add(
                Contact(
                    account_id=account.id,
                    email=f"{role}.{key.lower()}@example.com",
                    name=f"{role.title()} {key}",
                    role=role,
                    locale="ja",
                    time_zone="Asia/Tokyo",
                )
            )
        s.commit()
        return account.id


def days(engine, clock: FakeClock, count: int, hours: int = 24) -> None:
    """Tick now, then every ``hours`` for ``count`` days."""
    engine.tick()
    for _ in range(count * 24 // hours):
        clock.advance(timedelta(hours=hours))
        engine.tick()


def test_the_high_touch_renewal_plans_once_per_account(db, smtp_sink, build_engine):
    clock = FakeClock(START)
    today = START.astimezone(TOKYO).date()
    add_account(db, "BIG", arr=20_000_000, renews=today + timedelta(days=118))
    deploy_shipped(db, "high_touch_renewal")
    engine = build_engine(transport=smtp_sink, clock=clock, segments=SEGMENTS)
    days(engine, clock, 2)
    with db.session() as s:
        enrollments = s.scalars(select(Enrollment)).all()
        assert [(e.contact_id, e.state) for e in enrollments] == [(None, "waiting")]
        tasks = s.scalars(select(Task)).all()
        assert [t.step_id for t in tasks] == ["plan_renewal"]
    invited = sorted(
        parseaddr(str(m["To"]))[1]
        for m in smtp_sink.parsed()
        if "csm@example.com" not in str(m["To"])
    )
    assert invited == ["admin.big@example.com", "executive.big@example.com"]
    notices = [m for m in smtp_sink.parsed() if "csm@example.com" in str(m["To"])]
    assert len(notices) == 1  # the CSM hears of the one plan once


def sent_days(db, step: str) -> dict[str, list[date]]:
    """Per account key, the Tokyo days ``step``'s messages were sent on."""
    found: dict[str, list[date]] = {}
    with db.session() as s:
        rows = s.execute(
            select(Account.external_id, Message.sent_at)
            .join(Contact, Contact.id == Message.contact_id)
            .join(Account, Account.id == Contact.account_id)
            .where(Message.step_id == step, Message.status == MessageStatus.SENT)
        ).all()
    for key, sent_at in rows:
        found.setdefault(key, []).append(sent_at.astimezone(TOKYO).date())
    return found


def on_its_day(sent: date, anchor: date) -> bool:
    """Sent on the anchor's day, or on the next weekday when that day is a weekend."""
    return anchor <= sent <= anchor + timedelta(days=2) and sent.weekday() < 5


def test_low_touch_renewal_reminders_go_on_their_days_and_never_after_the_renewal(
    db, smtp_sink, build_engine
):
    clock = FakeClock(START)
    today = START.astimezone(TOKYO).date()
    renewals = {key: today + timedelta(days=n) for key, n in (("D120", 120), ("D80", 80))}
    renewals |= {key: today + timedelta(days=n) for key, n in (("D45", 45), ("D20", 20))}
    for key, renews in renewals.items():
        add_account(db, key, arr=2_000_000, renews=renews)
    deploy_shipped(db, "low_touch_renewal")
    engine = build_engine(transport=smtp_sink, clock=clock, segments=SEGMENTS)
    days(engine, clock, 130, hours=12)

    due = {"reminder_90": 90, "reminder_60": 60}
    for step, before in due.items():
        got = sent_days(db, step)
        for key, renews in renewals.items():
            anchor = renews - timedelta(days=before)
            entered = renews - timedelta(days=min(90, (renews - today).days))
            expected = anchor >= entered
            assert (key in got) == expected, (step, key, got.get(key))
            if expected:
                # to the account's admin, billing and executive contacts, on the day
                assert len(got[key]) == 3
                assert all(on_its_day(d, anchor) for d in got[key]), (step, key, got[key])
    with db.session() as s:
        # nobody clicked, so at 30 days each account's CSM gets one call task, on its day
        tasks = s.execute(
            select(Account.external_id, Task.step_id, Task.created_at).join(
                Account, Account.id == Task.account_id
            )
        ).all()
        last_sends = s.execute(
            select(Account.external_id, Message.sent_at)
            .join(Contact, Contact.id == Message.contact_id)
            .join(Account, Account.id == Contact.account_id)
            .where(Message.status == MessageStatus.SENT)
        ).all()
    by_account = {key: (step, created) for key, step, created in tasks}
    assert sorted(by_account) == sorted(renewals)
    for key, (step, created) in by_account.items():
        assert step == "call_renewal"
        thirty = renewals[key] - timedelta(days=30)
        day = created.astimezone(TOKYO).date()
        assert day == max(thirty, today), (key, day)
    for key, sent_at in last_sends:
        assert sent_at.astimezone(TOKYO).date() < renewals[key]
    subjects = [str(m["Subject"]) for m in smtp_sink.parsed()]
    assert any("更新日まで90日" in subject for subject in subjects)
    assert any("更新日まで60日" in subject for subject in subjects)


@pytest.fixture
def webinar_world(db):
    """Four low-touch contacts at one account: two will say yes, one no, one nothing."""
    add_account(db, "WEB", arr=2_000_000, renews=date(2027, 9, 30), roles=ROLES[:2] + ROLES[3:])
    with db.session() as s:
        s.add(
            Contact(
                account_id=s.scalar(select(Account.id)),
                email="champion.web@example.com",
                name="Champion",
                role="champion",
                locale="en",
                time_zone="America/New_York",
            )
        )
        s.commit()
    deploy_shipped(db, "low_touch_webinar")


def test_the_webinar_reminder_goes_the_day_before_to_those_who_said_yes(
    db, smtp_sink, build_engine, webinar_world
):
    clock = FakeClock(datetime(2027, 1, 5, 1, 0, tzinfo=UTC))  # a Tuesday, 10:00 in Tokyo
    engine = build_engine(transport=smtp_sink, clock=clock, segments=SEGMENTS)
    engine.tick()
    answers = {"admin.web@example.com": "yes", "champion.web@example.com": "yes"}
    answers["user.web@example.com"] = "no"
    with db.session() as s:
        for message in s.scalars(select(Message).where(Message.step_id == "invite")):
            answer = answers.get(message.to_address or "")
            if answer:
                engine.record_event(
                    s,
                    kind=EventKind.RSVP,
                    value=answer,
                    contact_id=message.contact_id,
                    enrollment_id=message.enrollment_id,
                    step_id="invite",
                    message_id=message.id,
                )
        s.commit()
    days(engine, clock, 20, hours=1)
    with db.session() as s:
        reminders = s.execute(
            select(Message.to_address, Message.sent_at).where(
                Message.step_id == "day_before", Message.status == MessageStatus.SENT
            )
        ).all()
    starts = datetime(2027, 1, 20, 16, 0, tzinfo=TOKYO)
    assert sorted(to for to, _ in reminders) == sorted(
        a for a, answer in answers.items() if answer == "yes"
    )
    for to, sent_at in reminders:
        zone = ZoneInfo("America/New_York" if to.startswith("champion") else "Asia/Tokyo")
        local = sent_at.astimezone(zone)
        assert local.date() == (starts.astimezone(zone) - timedelta(days=1)).date(), (to, local)
        assert local.hour == 10
    arrived = [m for m in smtp_sink.parsed() if "明日" in str(m["Subject"])]
    assert sorted(parseaddr(str(m["To"]))[1] for m in arrived) == ["admin.web@example.com"]
