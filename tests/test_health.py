"""Health scores: scorecards computed set-based into one row per account per day, on SQLite
and PostgreSQL, with band-change events that journeys enter on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from campaigns.engine import health
from campaigns.journeys.scorecards import parse_scorecards
from campaigns.journeys.segments import parse_segments
from campaigns.store.enums import EventKind, TaskStatus
from campaigns.store.models import (
    Account,
    Contact,
    Enrollment,
    Event,
    HealthScore,
    Journey,
    JourneyVersion,
    Message,
    Task,
    UsageMetric,
)

DAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)

SEGMENTS = parse_segments(
    """
tiers:
  high_touch: {when: "arr >= 5000000"}
  tech_touch: {when: true}
segments:
  health_red: {when: "health_band == 'red'"}
  slipping: {when: "health_change_7d is not none and health_change_7d <= -10"}
"""
)

SCORECARDS = """
bands: {red: 0, yellow: 40, green: 70}
scorecards:
  tech:
    tiers: [tech_touch]
    measures:
      users:
        usage: active_users
        window: 7 days
        aggregate: avg
        score: {linear: [0, 10]}
        weight: 50
      nps:
        survey: nps
        window: 90 days
        aggregate: nps
        score: {bands: [{below: 0, score: 0}, {below: 30, score: 50}, {score: 100}]}
        weight: 30
      overdue:
        tasks: overdue
        score: {linear: [2, 0]}
        weight: 20
  big:
    tiers: [high_touch]
    bands: {red: 0, yellow: 50, green: 80}
    measures:
      renewal:
        field: days_to_renewal
        score: {bands: [{below: 30, score: 20}, {score: 100}]}
        weight: 1
      admins:
        contacts: count
        when: "contact.role == 'admin'"
        score: {bands: [{below: 1, score: 0}, {score: 100}]}
        weight: 1
      clicks:
        email: click_rate
        window: 30 days
        score: {linear: [0, 50]}
        weight: 2
"""


def cards():
    return parse_scorecards(SCORECARDS, "scorecards.yaml", SEGMENTS)


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def seed(session) -> dict[str, int]:
    """Three accounts whose scores the test works out by hand."""
    a = Account(external_id="A", name="Alpha", arr=100_000)  # tech touch
    b = Account(
        external_id="B", name="株式会社ベータ", arr=100_000
    )  # tech touch, no data but tasks
    c = Account(
        external_id="C", name="Gamma", arr=9_000_000, renewal_date=DAY + timedelta(days=20)
    )  # high touch
    session.add_all([a, b, c])
    session.flush()
    # Alpha: active users 4, 6, 8 in the window (avg 6), and 100 outside it (ignored).
    for offset, value in ((0, 4), (1, 6), (6, 8), (7, 100)):
        session.add(
            UsageMetric(
                account_id=a.id,
                metric="active_users",
                day=DAY - timedelta(days=offset),
                value=value,
            )
        )
    journey = Journey(key="nps", name="NPS")
    session.add(journey)
    session.flush()
    version = JourneyVersion(
        journey_id=journey.id,
        number=1,
        source_path="nps.yaml",
        source_text="",
        source_hash="x",
        definition={"steps": [{"id": "ask", "blocks": {"survey": {"scale": "nps"}}}]},
    )
    session.add(version)
    people = [Contact(email=f"p{i}@a.example.com", account_id=a.id) for i in range(3)]
    admin = Contact(email="admin@c.example.com", account_id=c.id, role="admin")
    user = Contact(email="user@c.example.com", account_id=c.id, role="user")
    session.add_all([*people, admin, user])
    session.flush()
    # Alpha's answers: p0 said 3 then 10 (the latest counts: promoter), p1 9, p2 5: NPS = 100 *
    # (2 promoters - 1 detractor) / 3 = 33.3; a machine's 0 is not read.
    for contact, value, when, classification in (
        (people[0], "3", at(DAY - timedelta(days=20)), "human"),
        (people[0], "10", at(DAY - timedelta(days=10)), "human"),
        (people[1], "9", at(DAY - timedelta(days=5)), "human"),
        (people[2], "5", at(DAY - timedelta(days=2)), "human"),
        (people[2], "0", at(DAY - timedelta(days=1)), "machine"),
    ):
        session.add(
            Event(
                kind=EventKind.ANSWER,
                contact_id=contact.id,
                account_id=a.id,
                journey_id=journey.id,
                step_id="ask",
                value=value,
                classification=classification,
                occurred_at=when,
            )
        )
    # Alpha: one overdue task, one open but not yet due; Beta: three overdue.
    for account, due, n in ((a, NOW - timedelta(days=1), 1), (a, NOW + timedelta(days=1), 1)):
        for _ in range(n):
            session.add(Task(account_id=account.id, title="call", status="open", due_at=due))
    for _ in range(3):
        session.add(Task(account_id=b.id, title="call", status="open", due_at=NOW - timedelta(1)))
    session.add(Task(account_id=b.id, title="done", status=TaskStatus.DONE, due_at=NOW))
    # Gamma: 4 emails sent in the window, 1 clicked by a person; an older one is not read.
    for k in range(4):
        session.add(
            Message(
                contact_id=admin.id,
                step_id="s",
                attempt_key=str(k),
                channel="email",
                status="sent",
                sent_at=at(DAY - timedelta(days=3)),
                clicked_at=at(DAY - timedelta(days=2)) if k == 0 else None,
            )
        )
    session.add(
        Message(
            contact_id=admin.id,
            step_id="old",
            channel="email",
            status="sent",
            sent_at=at(DAY - timedelta(days=40)),
            clicked_at=at(DAY - timedelta(days=40)),
        )
    )
    session.flush()
    return {"a": a.id, "b": b.id, "c": c.id}


def test_hand_computed_scores_for_a_small_scorecard(db):
    with db.session() as session, session.begin():
        ids = seed(session)
        run = health.compute(session, cards(), SEGMENTS, DAY, NOW)
    assert run.scored == 3
    with db.session() as session:
        rows = {r.account_id: r for r in session.scalars(select(HealthScore))}
        accounts = {a.id: a for a in session.scalars(select(Account))}
    alpha, beta, gamma = rows[ids["a"]], rows[ids["b"]], rows[ids["c"]]

    # Alpha (tech): users avg(4, 6, 8) = 6 -> linear 0..10 -> 60; NPS (2 - 1) / 3 = 33.33 ->
    # band "below 30 -> 50"? no: 33.3 is not below 30 -> 100; overdue 1 -> linear 2..0 -> 50.
    # score = (50*60 + 30*100 + 20*50) / 100 = (3000 + 3000 + 1000) / 100 = 70.0 -> green.
    assert alpha.scorecard == "tech"
    assert alpha.measures["users"] == {
        "value": 6.0,
        "score": 60.0,
        "weight": 50.0,
        "contribution": 30.0,
    }
    assert alpha.measures["nps"]["value"] == pytest.approx(33.33)
    assert alpha.measures["nps"]["score"] == 100.0
    assert alpha.measures["overdue"]["value"] == 1.0 and alpha.measures["overdue"]["score"] == 50
    assert alpha.score == 70.0 and alpha.band == "green"

    # Beta (tech): no usage and no answers: both left out, only overdue counts, its weight
    # re-normalised: 3 overdue -> linear 2..0 clamps to 0 -> score 0 -> red.
    assert beta.measures["users"] == {
        "value": None,
        "score": None,
        "weight": 50.0,
        "contribution": None,
    }
    assert beta.measures["overdue"]["contribution"] == 0.0
    assert beta.score == 0.0 and beta.band == "red"

    # Gamma (big, its own bands): renewal in 20 days -> 20; one admin -> 100; clicks 1 of 4 =
    # 25% -> linear 0..50 -> 50. score = (1*20 + 1*100 + 2*50) / 4 = 220 / 4 = 55.0 -> yellow
    # (50 <= 55 < 80). Contributions: 5.0 + 25.0 + 25.0 = 55.
    assert gamma.scorecard == "big"
    assert gamma.measures["renewal"]["value"] == 20.0
    assert gamma.measures["admins"]["value"] == 1.0
    assert gamma.measures["clicks"]["value"] == 25.0
    assert [gamma.measures[m]["contribution"] for m in ("renewal", "admins", "clicks")] == [
        5.0,
        25.0,
        25.0,
    ]
    assert gamma.score == 55.0 and gamma.band == "yellow"

    # The accounts carry the latest health.
    assert (accounts[ids["a"]].health_score, accounts[ids["a"]].health_band) == (70, "green")
    assert (accounts[ids["c"]].health_score, accounts[ids["c"]].health_band) == (55, "yellow")
    assert accounts[ids["c"]].health_scored_on == DAY
    assert run.bands == {
        ("tech_touch", "green"): 1,
        ("tech_touch", "red"): 1,
        ("high_touch", "yellow"): 1,
    }


def test_a_band_change_is_recorded_once_and_a_rerun_the_same_day_changes_nothing(db):
    with db.session() as session, session.begin():
        ids = seed(session)
        yesterday = DAY - timedelta(days=1)
        first = health.compute(session, cards(), SEGMENTS, yesterday, NOW)
        assert first.previous_day is None and not first.events
        # Alpha loses its users: today's only row says 0.
        session.query(UsageMetric).delete()
        session.add(UsageMetric(account_id=ids["a"], metric="active_users", day=DAY, value=0))
        run = health.compute(session, cards(), SEGMENTS, DAY, NOW)
        again = health.compute(session, cards(), SEGMENTS, DAY, NOW)
    # Alpha yesterday: the window is the 7 days to yesterday: users avg(6, 8, 100) = 38 ->
    # clamped 100; nps 100; overdue 50: (5000 + 3000 + 1000) / 100 = 90, green.
    # Today: users 0 -> 0: (0 + 3000 + 1000) / 100 = 40 -> yellow.
    assert run.previous_day == yesterday
    assert run.events == {"health_band_changed": 1, "health_dropped": 1, "health_yellow": 1}
    assert not again.events and again.scored == 3
    with db.session() as session:
        events = session.scalars(select(Event).where(Event.kind == EventKind.CUSTOM)).all()
        alpha = session.get(Account, ids["a"])
        rows = session.scalars(select(HealthScore).where(HealthScore.account_id == ids["a"])).all()
    assert sorted(e.name for e in events) == [
        "health_band_changed",
        "health_dropped",
        "health_yellow",
    ]
    changed = next(e for e in events if e.name == "health_band_changed")
    assert changed.account_id == ids["a"] and changed.contact_id is None
    assert changed.data == {"from": "green", "to": "yellow", "score": 40.0, "previous_score": 90.0}
    assert changed.dedupe_key == f"health:{ids['a']}:{DAY.isoformat()}:health_band_changed"
    assert len(rows) == 2  # one per day, the rerun replaced today's
    assert alpha.health_band == "yellow" and alpha.health_score == 40
    # 7 and 30 days ago were not scored: no change to show.
    assert alpha.health_change_7d is None


def test_changes_over_7_and_30_days_and_rules_that_read_them(db):
    from campaigns.engine.audience import count

    with db.session() as session, session.begin():
        ids = seed(session)
        session.add(
            UsageMetric(
                account_id=ids["a"], metric="active_users", day=DAY - timedelta(30), value=10
            )
        )
        week_ago = health.compute(session, cards(), SEGMENTS, DAY - timedelta(days=7), NOW)
        month_ago = health.compute(session, cards(), SEGMENTS, DAY - timedelta(days=30), NOW)
        session.query(UsageMetric).delete()
        health.compute(session, cards(), SEGMENTS, DAY, NOW)
        # a backfill of an older day does not overwrite the newest health
        health.compute(session, cards(), SEGMENTS, DAY - timedelta(days=3), NOW)
        counts = {c.name: c.accounts for c in count(session, SEGMENTS, DAY)}
    assert week_ago.scored == month_ago.scored == 3
    with db.session() as session:
        accounts = {a.external_id: a for a in session.scalars(select(Account))}
        rows = {(r.account_id, r.day): r.score for r in session.scalars(select(HealthScore))}
    a, b, c = accounts["A"], accounts["B"], accounts["C"]
    d7, d30 = DAY - timedelta(days=7), DAY - timedelta(days=30)
    # Alpha, 30 days ago: users avg(10) -> 100; no answer yet (left out); no task overdue yet
    # (due yesterday) -> 100: 100. A week ago: users 100 (clamped); p0's latest answer 10
    # -> NPS 100 -> 100; overdue 0 -> 100: 100. Today: no usage (left out), NPS 33 -> 100 (w30),
    # 1 overdue -> 50 (w20): 4000 / 50 = 80. Changes: -20 and -20.
    assert (rows[(a.id, d30)], rows[(a.id, d7)], rows[(a.id, DAY)]) == (100.0, 100.0, 80.0)
    assert (a.health_score, a.health_change_7d, a.health_change_30d) == (80, -20.0, -20.0)
    # Beta: only its overdue tasks count: none overdue before yesterday (100), 3 today (0).
    assert (b.health_score, b.health_band, b.health_change_7d) == (0, "red", -100.0)
    # Gamma, 30 days ago: renewal in 50 days -> 100, 1 admin -> 100, the 40-day-old email
    # clicked -> 100%: 100. A week ago: renewal in 27 -> 20, admin 100, no email in the
    # window (left out): (20 + 100) / 2 = 60. Today 55: changes -5 and -45.
    assert (rows[(c.id, d30)], rows[(c.id, d7)]) == (100.0, 60.0)
    assert (c.health_score, c.health_change_7d, c.health_change_30d) == (55, -5.0, -45.0)
    # The backfill of 3 days ago (Beta green then) did not overwrite today's health.
    assert all(x.health_scored_on == DAY for x in (a, b, c))
    # Segment rules read the band and the change: Beta is red; Alpha and Beta slipped 10+.
    assert counts["health_red"] == 1 and counts["slipping"] == 2


def test_the_first_tick_of_a_day_scores_it_and_a_journey_enters_on_health_red(
    db, build_engine, clock
):
    from campaigns.engine.deploy import deploy
    from campaigns.journeys.parse import parse_journey

    source = """
journey: rescue
name: Rescue
enrol: account
segments: [everyone]
entry: {trigger: event, event: health_red}
steps:
  - id: call
    task: {kind: call, title: "Health is red: {{ account.name }}", due: 2 days}
"""
    segset = parse_segments("tiers:\n  everyone: {when: true}\n")
    scorecard = parse_scorecards(
        "scorecards:\n  all:\n    default: true\n    measures:\n      users:\n"
        "        usage: active_users\n        window: 7 days\n        aggregate: avg\n"
        "        score: {linear: [0, 10]}\n        weight: 1\n",
        "scorecards.yaml",
        segset,
    )
    with db.session() as session, session.begin():
        account = Account(external_id="A", name="Alpha")
        session.add(account)
        session.flush()
        session.add(Contact(email="a@example.com", account_id=account.id, role="admin"))
        for offset in range(7):
            day = clock.now().date() - timedelta(days=offset)
            session.add(UsageMetric(account_id=account.id, metric="active_users", day=day, value=9))
        deploy(session, parse_journey(source, "rescue.yaml", segments=segset), source, "rescue")
        account_id = account.id
    engine = build_engine(segments=segset, scorecards=lambda: scorecard)
    first = engine.tick()
    assert first.health is not None and first.health.bands == {("everyone", "green"): 1}
    assert engine.tick().health is None  # once a day
    with db.session() as session, session.begin():
        session.query(UsageMetric).delete()
        session.add(
            UsageMetric(
                account_id=account_id,
                metric="active_users",
                day=clock.now().date() + timedelta(days=1),
                value=1,
            )
        )
    clock.advance(timedelta(days=1))
    second = engine.tick()
    assert second.health is not None and second.health.events["health_red"] == 1
    assert second.entered["rescue"] == 1
    engine.tick()
    with db.session() as session:
        enrollments = session.scalars(select(Enrollment)).all()
        tasks = session.scalars(select(Task)).all()
    assert len(enrollments) == 1 and enrollments[0].account_id == account_id
    assert [t.title for t in tasks] == ["Health is red: Alpha"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(-1000, 1000).map(lambda x: round(x, 3))),
        min_size=3,
        max_size=3,
    ),
    low=st.integers(-10_000, 10_000).map(lambda n: n / 100),
    span=st.integers(50, 10_000).map(lambda n: n / 100),
    weights=st.lists(st.integers(0, 10), min_size=3, max_size=3),
)
def test_the_sql_scores_as_the_scorecard_says(sqlite_db, values, low, span, weights):
    """Any values, linear ranges and weights: the statement gives what
    :meth:`Scorecard.combine` and :meth:`Measure.points` give in Python."""
    if sum(weights) == 0:
        weights[0] = 1
    text = "scorecards:\n  all:\n    default: true\n    measures:\n"
    for i, w in enumerate(weights):
        kind = (
            f"score: {{linear: [{low!r}, {round(low + span, 2)!r}]}}"
            if i != 1
            else "score: {bands: [{below: 0, score: 10}, {below: 50, score: 60}, {score: 90}]}"
        )
        text += f"      m{i}: {{field: attributes.m{i}, {kind}, weight: {w}}}\n"
    segset = parse_segments("tiers:\n  everyone: {when: true}\n")
    scorecard = parse_scorecards(text, "s.yaml", segset)
    card = scorecard.scorecards[0]
    with sqlite_db.session() as session, session.begin():
        session.query(HealthScore).delete()
        session.query(Account).delete()
        attributes = {f"m{i}": v for i, v in enumerate(values) if v is not None}
        session.add(Account(external_id="X", name="X", attributes=attributes))
        session.flush()
        health.compute(session, scorecard, segset, DAY, NOW)
        row = session.scalars(select(HealthScore)).one()
    points = {m.name: m.points(values[i]) for i, m in enumerate(card.measures)}
    expected = card.combine(points)
    assert row.score == (pytest.approx(expected, abs=0.101) if expected is not None else None)
    for m in card.measures:
        got = row.measures[m.name]["score"]
        want = points[m.name]
        assert got == (pytest.approx(want, abs=0.101) if want is not None else None)
