"""Trigger points open one task per trigger and account, set-based on each tick: a health
band drop, a detractor's answer, a usage drop, a custom event, narrowed by a ``when:`` rule;
a second firing while the task is open opens no twin, and a rerun opens nothing twice. The
owner (each task by mail) gets the notice over real SMTP, in their language."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.triggers import TriggerSet, parse_triggers
from campaigns.store.enums import EventKind, MessageStatus, TaskStatus
from campaigns.store.models import Account, Contact, Journey, Message, Task, UsageMetric
from campaigns.store.users import add_user
from campaigns.tracking.events import record_event

SEGMENTS = textwrap.dedent(
    """\
    tiers:
      high_touch: {when: "arr >= 5000000"}
      tech_touch: {when: true}
    """
)
TRIGGERS = textwrap.dedent(
    """\
    fallback_owner: cs-team@example.com
    triggers:
      health_red:
        on: {health: red}
        when: tier == 'high_touch'
        priority: urgent
        due: 4 hours
        title:
          en: "Call {{ account.name }}: health is red"
          ja: "{{ account.name }}に電話：ヘルスが赤"
      detractor:
        on: {answer: nps}
        priority: high
        title: "Detractor at {{ account.name }}: NPS {{ event.score }}"
      usage_drop:
        on: {usage: active_users, drop: 30%, days: 7}
        title: "Usage fell {{ event.drop }}% at {{ account.name }}"
      churn_risk:
        on: {event: cancellation_requested}
        kind: meeting
        title: "Save {{ account.name }}"
    """
)
NPS_JOURNEY = textwrap.dedent(
    """\
    journey: nps
    name: NPS
    segments: [tech_touch]
    entry: {trigger: event, event: nps_requested}
    steps:
      - id: ask
        survey:
          scale: nps
          template: nps_survey
          subject: "How likely?"
    """
)
JA_OWNER = "suzuki@example.com"
EN_OWNER = "jane@example.com"


@pytest.fixture
def triggers() -> TriggerSet:
    return parse_triggers(TRIGGERS, "triggers.yaml")


@pytest.fixture
def accounts(db, clock):
    """Big (high touch, Japanese owner with a user row), Small (tech touch, English owner
    without one), Orphan (no owner); a contact each."""
    ids = {}
    with db.session() as s, s.begin():
        for name, arr, owner in (
            ("株式会社ビッグ", 9_000_000, JA_OWNER),
            ("Small Co", 10_000, EN_OWNER),
            ("Orphan", 10_000, None),
        ):
            account = Account(
                external_id=name, name=name, arr=Decimal(arr), currency="JPY", owner_email=owner
            )
            s.add(account)
            s.flush()
            s.add(Contact(account_id=account.id, email=f"c{account.id}@example.org", name="C"))
            ids[name] = account.id
        user = add_user(s, JA_OWNER, "correct horse battery", clock.now(), name="鈴木 一郎")
        user.locale = "ja"
    return ids


@pytest.fixture
def engine(build_engine, smtp_sink, triggers, accounts):
    return build_engine(transport=smtp_sink, segments=SEGMENTS, triggers=lambda: triggers)


def health_event(db, clock, account_id: int, name: str, band_from: str, band_to: str) -> None:
    now = clock.now()
    with db.session() as s, s.begin():
        for event_name in (name, "health_band_changed", f"health_{band_to}"):
            record_event(
                s,
                now,
                kind=EventKind.CUSTOM,
                name=event_name,
                account_id=account_id,
                dedupe_key=f"health:{account_id}:{now.date()}:{event_name}",
                data={"from": band_from, "to": band_to, "score": 30, "previous_score": 55},
            )


def tasks(db, trigger: str | None = None) -> list[Task]:
    with db.session() as s:
        query = select(Task).order_by(Task.id)
        if trigger:
            query = query.where(Task.trigger == trigger)
        return list(s.scalars(query))


def later(clock, minutes: int = 2) -> None:
    clock.advance(timedelta(minutes=minutes))  # past the events' trust lag


def test_a_band_change_opens_exactly_one_task_for_two_ticks_and_two_events(
    db, engine, clock, accounts
):
    big = accounts["株式会社ビッグ"]
    health_event(db, clock, big, "health_dropped", "yellow", "red")
    later(clock)
    engine.tick()
    engine.tick()
    clock.advance(timedelta(days=1))
    health_event(db, clock, big, "health_dropped", "yellow", "red")  # again, while it is open
    later(clock)
    engine.tick()
    opened = tasks(db, "health_red")
    assert len(opened) == 1
    task = opened[0]
    assert task.account_id == big and task.owner_email == JA_OWNER
    assert task.priority == "urgent" and task.status == TaskStatus.OPEN
    assert task.title == "株式会社ビッグに電話：ヘルスが赤"  # the owner's language
    assert task.open_key == f"trigger:health_red:{big}"
    assert task.due_at == task.created_at + timedelta(hours=4)


def test_the_when_rule_keeps_the_trigger_to_its_tier(db, engine, clock, accounts):
    health_event(db, clock, accounts["Small Co"], "health_dropped", "green", "red")
    later(clock)
    engine.tick()
    assert tasks(db, "health_red") == []


def test_after_the_task_is_done_a_new_drop_opens_a_new_one(db, engine, clock, accounts):
    from campaigns.engine.tasks import complete_task

    big = accounts["株式会社ビッグ"]
    health_event(db, clock, big, "health_dropped", "yellow", "red")
    later(clock)
    engine.tick()
    with db.session() as s, s.begin():
        complete_task(s, tasks(db, "health_red")[0].id, clock.now())
    engine.tick()  # the old event is behind the mark: nothing again
    assert len(tasks(db, "health_red")) == 1
    clock.advance(timedelta(days=3))
    health_event(db, clock, big, "health_dropped", "green", "red")
    later(clock)
    engine.tick()
    assert [t.status for t in tasks(db, "health_red")] == [TaskStatus.DONE, TaskStatus.OPEN]


def answer(db, clock, contact_email: str, score: int, *, human: bool = True) -> None:
    with db.session() as s, s.begin():
        contact = s.scalar(select(Contact).where(Contact.email == contact_email))
        journey = s.scalar(select(Journey).where(Journey.key == "nps"))
        assert contact is not None and journey is not None
        record_event(
            s,
            clock.now(),
            kind=EventKind.ANSWER,
            value=str(score),
            contact_id=contact.id,
            account_id=contact.account_id,
            journey_id=journey.id,
            step_id="ask",
            classification="human" if human else "machine",
        )


@pytest.fixture
def nps(db, accounts):
    with db.session() as s, s.begin():
        deploy(s, parse_journey(NPS_JOURNEY, "nps.yaml"), NPS_JOURNEY, "nps.yaml")


def test_a_detractor_answer_opens_a_high_priority_task_about_the_contact(
    db, engine, clock, accounts, nps
):
    small = accounts["Small Co"]
    email = f"c{small}@example.org"
    answer(db, clock, email, 9)  # a promoter: nothing
    answer(db, clock, f"c{accounts['株式会社ビッグ']}@example.org", 3, human=False)  # a machine
    answer(db, clock, email, 4)
    later(clock)
    engine.tick()
    opened = tasks(db, "detractor")
    assert len(opened) == 1
    task = opened[0]
    assert task.account_id == small and task.priority == "high"
    assert task.title == "Detractor at Small Co: NPS 4"
    assert task.contact_id is not None and task.owner_email == EN_OWNER
    # high: 1 business day (the clock starts on a Tuesday)
    assert task.due_at == task.created_at + timedelta(days=1)


def test_an_account_with_no_owner_goes_to_the_fallback_owner(db, engine, clock, accounts, nps):
    answer(db, clock, f"c{accounts['Orphan']}@example.org", 0)
    later(clock)
    engine.tick()
    assert [t.owner_email for t in tasks(db, "detractor")] == ["cs-team@example.com"]


def usage(db, account_id: int, days: dict[date, float]) -> None:
    with db.session() as s, s.begin():
        for day, value in days.items():
            s.add(UsageMetric(account_id=account_id, metric="active_users", day=day, value=value))


def test_a_usage_drop_of_30_percent_opens_a_task_and_a_smaller_one_does_not(
    db, engine, clock, accounts
):
    today = clock.now().date()
    small, big = accounts["Small Co"], accounts["株式会社ビッグ"]
    before = {today - timedelta(days=d): 10.0 for d in range(8, 15)}
    usage(db, small, {**before, **{today - timedelta(days=d): 6.0 for d in range(1, 8)}})
    usage(db, big, {**before, **{today - timedelta(days=d): 8.0 for d in range(1, 8)}})
    engine.tick()
    engine.tick()
    opened = tasks(db, "usage_drop")
    assert [t.account_id for t in opened] == [small]
    assert opened[0].title == "Usage fell 40.0% at Small Co"
    assert opened[0].priority == "normal"


def test_a_custom_event_by_name_opens_a_meeting(db, engine, clock, accounts):
    with db.session() as s, s.begin():
        record_event(
            s,
            clock.now(),
            kind=EventKind.CUSTOM,
            name="cancellation_requested",
            account_id=accounts["Small Co"],
        )
    later(clock)
    engine.tick()
    (task,) = tasks(db, "churn_risk")
    assert task.kind == "meeting" and task.title == "Save Small Co"


def test_the_owner_who_takes_each_task_gets_one_notice_over_smtp(
    db, engine, clock, accounts, smtp_sink
):
    health_event(db, clock, accounts["株式会社ビッグ"], "health_dropped", "yellow", "red")
    later(clock)
    engine.tick()
    engine.tick()
    (message,) = [m for m in smtp_sink.parsed() if m["To"].addresses[0].addr_spec == JA_OWNER]
    assert message["Subject"] == "[タスク] 株式会社ビッグに電話：ヘルスが赤"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] is None
    text = message.get_body(("plain",)).get_content()
    assert "トリガー「health_red」" in text and "緊急" in text
    with db.session() as s:
        (row,) = s.scalars(select(Message).where(Message.step_id.like("task:%"))).all()
        assert row.status == MessageStatus.SENT and row.attempt_key == "owner"
        assert (
            s.scalar(select(func.count()).select_from(Task).where(Task.notified_at.is_(None))) == 0
        )


def test_a_rerun_of_the_pass_opens_nothing_twice(db, build_engine, clock, accounts, triggers):
    from campaigns.engine import triggers as engine_triggers
    from campaigns.journeys.segments import parse_segments

    health_event(db, clock, accounts["株式会社ビッグ"], "health_dropped", "yellow", "red")
    later(clock)
    segset = parse_segments(SEGMENTS)
    for _ in range(2):
        with db.session() as s, s.begin():
            engine_triggers.fire(s, triggers, segset, clock.now())
    assert len(tasks(db)) == 1


def test_tasks_opened_by_triggers_are_counted_outside_every_journey(db, engine, clock, accounts):
    from campaigns.store.models import Stat

    health_event(db, clock, accounts["株式会社ビッグ"], "health_dropped", "yellow", "red")
    later(clock)
    engine.tick()
    with db.session() as s:
        rows = s.execute(select(Stat.journey_id, Stat.metric, Stat.count)).all()
    assert (0, "task_created", 1) in [tuple(r) for r in rows]


def test_business_days_skip_the_weekend_in_the_team_zone():
    from campaigns.journeys.triggers import Sla

    friday_evening_tokyo = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 18:00 JST, Friday
    due = Sla(business_days=1).due(friday_evening_tokyo, "Asia/Tokyo")
    assert due == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday 18:00 JST
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert Sla(business_days=2).due(saturday, "Asia/Tokyo") == datetime(
        2026, 12, 2, 3, 0, tzinfo=UTC
    )  # counted from Monday: Tuesday, Wednesday
