"""The engine end to end: real database (SQLite and PostgreSQL), a real SMTP server on
loopback, a fake clock. A journey email -> wait -> branch -> survey / task runs for many
contacts; every expected message arrives exactly once, and the controls hold."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns.clock import FakeClock
from campaigns.content.mime import Sender
from campaigns.engine.core import Engine
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.segments import parse_segments
from campaigns.store.enums import EnrollmentState, EventKind, MessageStatus, SuppressionReason
from campaigns.store.models import Account, Contact, Enrollment, Message, Suppression, Task

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = parse_segments(
    "tiers:\n  low_touch: {when: arr >= 1000000}\n  tech_touch: {when: true}\n"
)
# Tuesday 2026-11-24, 10:00 in Tokyo.
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)

JOURNEY = textwrap.dedent(
    """\
    journey: check_in
    name: Check-in
    segments: [low_touch]
    entry: {trigger: segment}
    sending_window: {days: weekdays, hours: "09:00-18:00", time_zone: contact}
    steps:
      - id: welcome
        email:
          template: onboarding_welcome
          subject: {en: "Welcome, {{ contact.name }}", ja: "{{ contact.name }}様、ようこそ"}
      - id: pause
        wait: 2 days
      - id: route
        branch:
          - when: clicked('welcome')
            goto: ask_nps
          - else: call
      - id: ask_nps
        survey: {scale: nps, template: nps_survey,
            subject: {en: "How likely are you to recommend us?", ja: "おすすめ度を教えてください"}}
      - id: done
        exit: surveyed
      - id: call
        task:
          kind: call
          title: "Call {{ contact.name }} at {{ account.name }}"
          due: 2 days
          per: contact              # a call per person (by default, one per account)
    """
)


@pytest.fixture
def build(build_engine):
    """The kit's engines with the clock each test passes, this module's segments and a sender
    with a display name."""

    def make(sink, clock, *, cap: int = 10, links: dict[str, str] | None = None) -> Engine:
        return build_engine(
            transport=sink,
            clock=clock,
            segments=SEGMENTS,
            settings={"frequency_cap": cap},
            sender=Sender("cs@example.com", "Customer Success"),
            links=links,
        )

    return make


def populate(db, n: int) -> None:
    """``n`` low-touch contacts (every third Japanese), plus people who must get nothing."""
    with db.session() as s, s.begin():
        low = Account(
            external_id="LOW",
            name="株式会社ロー",
            arr=Decimal(2_000_000),
            owner_email="csm.sato@example.com",
            renewal_date=date(2027, 3, 31),
        )
        small = Account(external_id="SMALL", name="Small Co", arr=Decimal(10_000))
        s.add_all([low, small])
        s.flush()
        for i in range(n):
            japanese = i % 3 == 0
            s.add(
                Contact(
                    account_id=low.id,
                    email=f"c{i}@example.com",
                    name=f"山田 {i}" if japanese else f"Pat {i}",
                    locale="ja" if japanese else "en",
                    time_zone="Asia/Tokyo",
                )
            )
        s.add(
            Contact(
                account_id=low.id,
                email="suppressed@example.com",
                name="Sup",
                time_zone="Asia/Tokyo",
            )
        )
        s.add(
            Contact(
                account_id=low.id,
                email="unsub@example.com",
                name="Un",
                subscribed=False,
                time_zone="Asia/Tokyo",
            )
        )
        s.add(
            Contact(
                account_id=small.id, email="outside@example.com", name="Out", time_zone="Asia/Tokyo"
            )
        )
        s.add(Suppression(email="suppressed@example.com", reason=SuppressionReason.HARD_BOUNCE))


def deploy_journey(db, text: str = JOURNEY) -> None:
    with db.session() as s, s.begin():
        deploy(s, parse_journey(text, "check_in.yaml"), text, "check_in.yaml")


def recipients(sink) -> list[str]:
    return [to for _, tos, _ in sink.messages for to in tos]


def test_journey_runs_for_1000_contacts_and_every_message_arrives_once(db, smtp_sink, build):
    n = 1000
    populate(db, n)
    deploy_journey(db)
    clock = FakeClock(START)
    engine = build(smtp_sink, clock)

    first = engine.tick()
    assert first.entered == {
        "check_in": n + 2
    }  # the suppressed and unsubscribed enter, but get nothing
    assert sorted(recipients(smtp_sink)) == sorted(f"c{i}@example.com" for i in range(n))
    parsed = smtp_sink.parsed()
    japanese = next(m for m in parsed if m["To"].addresses[0].addr_spec == "c0@example.com")
    assert str(make_header(decode_header(japanese["Subject"]))) == "山田 0様、ようこそ"
    assert japanese.get_body(("plain",)) is not None and japanese.get_body(("html",)) is not None
    assert japanese["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert len({m["Message-ID"] for m in parsed}) == n

    # The same tick again, and a tick a day later: nothing is sent twice.
    engine.tick()
    clock.advance(timedelta(days=1))
    engine.tick()
    assert len(smtp_sink.messages) == n

    # Half the contacts click the welcome email (human clicks), then the wait ends.
    with db.session() as s, s.begin():
        clicked = s.execute(
            select(Message.enrollment_id, Message.contact_id).where(
                Message.step_id == "welcome",
                Message.status == MessageStatus.SENT,
                Message.to_address.like("c%0@example.com"),
            )
        ).all()
        for enrollment_id, contact_id in clicked:
            engine.record_event(
                s,
                kind=EventKind.CLICK,
                contact_id=contact_id,
                enrollment_id=enrollment_id,
                step_id="welcome",
            )
    clock.advance(timedelta(days=1, minutes=1))
    engine.tick()

    surveyed = sorted(to for to in recipients(smtp_sink)[n:] if to != "csm.sato@example.com")
    assert surveyed == sorted(f"c{i}@example.com" for i in range(0, n, 10))
    with db.session() as s:
        tasks = s.scalar(select(func.count()).select_from(Task))
        assert tasks == n - len(surveyed) + 2  # the suppressed and unsubscribed get a call too
        assert (
            s.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.owner_email == "csm.sato@example.com")
            )
            == tasks
        )
        states = dict(
            s.execute(select(Enrollment.state, func.count()).group_by(Enrollment.state)).all()
        )
        assert states == {EnrollmentState.COMPLETED: n + 2}
        suppressed = s.scalars(
            select(Message.status).where(
                Message.to_address.in_(["suppressed@example.com", "unsub@example.com"])
            )
        ).all()
        assert set(suppressed) == {MessageStatus.SUPPRESSED}
    owner_mails = [m for m in smtp_sink.messages if "csm.sato@example.com" in m[1]]
    assert len(owner_mails) == tasks
    assert "outside@example.com" not in recipients(smtp_sink)


def test_frequency_cap_defers_a_send_and_it_goes_later(db, smtp_sink, build):
    populate(db, 3)
    deploy_journey(db)
    clock = FakeClock(START)
    engine = build(smtp_sink, clock, cap=1)
    with db.session() as s, s.begin():
        contact = s.scalars(select(Contact).where(Contact.email == "c1@example.com")).one()
        s.add(
            Message(
                contact_id=contact.id,
                step_id="earlier",
                channel="email",
                status=MessageStatus.SENT,
                sent_at=START - timedelta(days=1),
                category="marketing",
            )
        )
    engine.tick()
    assert "c1@example.com" not in recipients(smtp_sink)
    with db.session() as s:
        held = s.scalars(select(Message).where(Message.to_address == "c1@example.com")).one()
        assert held.status == MessageStatus.DEFERRED and held.not_before == START + timedelta(
            days=6
        )
    clock.set(START + timedelta(days=6))
    engine.tick()
    assert recipients(smtp_sink).count("c1@example.com") == 1


def test_sending_window_holds_until_monday_morning_in_the_contacts_zone(db, smtp_sink, build):
    populate(db, 2)
    deploy_journey(db)
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # Saturday 12:00 in Tokyo
    clock = FakeClock(saturday)
    engine = build(smtp_sink, clock)
    engine.tick()
    assert smtp_sink.messages == []
    clock.set(datetime(2026, 11, 29, 23, 59, tzinfo=UTC))  # Monday 08:59 in Tokyo
    engine.tick()
    assert smtp_sink.messages == []
    clock.set(datetime(2026, 11, 30, 0, 0, tzinfo=UTC))  # Monday 09:00 in Tokyo
    engine.tick()
    assert sorted(recipients(smtp_sink)) == ["c0@example.com", "c1@example.com"]


def test_a_hard_bounce_suppresses_the_address_and_the_journey_goes_on(db, smtp_sink, build):
    populate(db, 2)
    deploy_journey(db)
    smtp_sink.refuse["c1@example.com"] = "550 5.1.1 No such user"
    engine = build(smtp_sink, FakeClock(START))
    engine.tick()
    assert recipients(smtp_sink) == ["c0@example.com"]
    with db.session() as s:
        bounced = s.scalars(select(Message).where(Message.to_address == "c1@example.com")).one()
        assert bounced.status == MessageStatus.BOUNCED
        assert (
            s.scalars(select(Suppression.reason).where(Suppression.email == "c1@example.com")).one()
            == SuppressionReason.HARD_BOUNCE
        )
        enrollment = s.get(Enrollment, bounced.enrollment_id)
        assert enrollment is not None and enrollment.current_step == "pause"


def test_a_goal_event_ends_the_enrollment_at_once(db, smtp_sink, build):
    text = JOURNEY.replace(
        "entry: {trigger: segment}", "entry: {trigger: segment}\ngoal: {event: renewed}"
    )
    populate(db, 2)
    deploy_journey(db, text)
    clock = FakeClock(START)
    engine = build(smtp_sink, clock)
    engine.tick()
    with db.session() as s, s.begin():
        account = s.scalars(select(Account).where(Account.external_id == "LOW")).one()
        engine.record_event(s, kind=EventKind.CUSTOM, name="renewed", account_id=account.id)
    engine.tick()
    with db.session() as s:
        reasons = set(s.scalars(select(Enrollment.exit_reason)))
        assert reasons == {"goal: renewed"}
        assert set(s.scalars(select(Enrollment.state))) == {EnrollmentState.GOAL}


def test_named_links_are_personalised_and_tracked(db, smtp_sink, build):
    populate(db, 1)  # c0 reads Japanese
    deploy_journey(db)
    engine = build(
        smtp_sink,
        FakeClock(START),
        links={
            "app": "https://app.example.com/{{ account.external_id }}",
            "docs": "https://docs.example.com/{{ contact.locale }}/start",
        },
    )
    engine.tick()
    with db.session() as s:
        links = s.scalars(select(Message.links).where(Message.to_address == "c0@example.com")).one()
    assert "https://app.example.com/LOW" in links and "https://docs.example.com/ja/start" in links
    html = smtp_sink.parsed()[0].get_body(("html",)).get_content()
    assert "https://cs.example.com/t/c/" in html and "https://docs.example.com" not in html
