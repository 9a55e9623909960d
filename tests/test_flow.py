"""A journey's flow: the flowchart's pure layout (no database), and its live counts per step
(waiting now, sent, held with the reason, converted) from a real engine run on SQLite and
PostgreSQL, worked out by hand and checked against the rows one by one."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from sqlalchemy import select

from campaigns.config import Limit
from campaigns.engine.deploy import deploy
from campaigns.engine.ratelimit import DomainRateLimiter
from campaigns.insight import flow
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import EnrollmentState, EventKind, MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, Journey, Message
from campaigns.web.flowchart import END, GOAL, Edge, layout, render
from tests.kit import START

SVG = "{http://www.w3.org/2000/svg}"

JOURNEY = textwrap.dedent(
    """\
    journey: flowtest
    name: 流れのテスト
    segments: [everyone]
    entry: {trigger: segment}
    goal: {event: renewed}
    sending_window: {days: weekdays, hours: "09:00-18:00", time_zone: contact}
    steps:
      - {id: hello, email: {template: onboarding_tips, subject: Tips}}
      - id: look
        wait_until: {opened: hello, timeout: 2 days}
      - id: route
        branch:
          - when: clicked('hello')
            goto: thanks
          - else: nudge
      - {id: nudge, email: {template: onboarding_tips, subject: Nudge}}
      - {id: rest, wait: 3 days}
      - {id: done, exit: nudged}
      - {id: thanks, email: {template: onboarding_tips, subject: Thanks}}
    """
)


# ---------------------------------------------------------------------------- layout


def test_layout_puts_steps_in_one_column_in_the_files_order():
    drawn = layout(parse_journey(JOURNEY, "flowtest.yaml"))
    steps = [n for n in drawn.nodes if n.is_step]
    assert [n.id for n in steps] == ["hello", "look", "route", "nudge", "rest", "done", "thanks"]
    assert len({n.x for n in steps}) == 1
    assert [n.y for n in steps] == sorted(n.y for n in steps)
    assert {n.id: n.kind for n in steps}["look"] == "wait until"


def test_layout_labels_branches_waits_and_exits_with_their_conditions():
    drawn = layout(parse_journey(JOURNEY, "flowtest.yaml"))
    edges = {(e.source, e.target): e for e in drawn.edges}
    assert edges[("route", "thanks")].label == "if clicked('hello')"
    assert edges[("route", "nudge")] == Edge("route", "nudge", "otherwise", None)
    assert edges[("look", "route")].label == "opened hello or after 2 days"
    assert edges[("done", END)].label == "exit: nudged"
    assert edges[("thanks", END)].label == ""
    assert ("done", "thanks") not in edges  # an exit step never runs on
    assert edges[("hello", "look")].lane is None  # straight down


def test_layout_gives_overlapping_jumps_their_own_lanes_and_shares_the_rest():
    drawn = layout(parse_journey(JOURNEY, "flowtest.yaml"))
    lanes = {(e.source, e.target): e.lane for e in drawn.edges if e.lane is not None}
    # route -> thanks spans rows 2..6, done -> End rows 5..7: they overlap
    assert lanes[("route", "thanks")] != lanes[("done", END)]
    short = layout(
        parse_journey(
            textwrap.dedent(
                """\
                journey: two
                name: Two
                segments: [everyone]
                entry: {trigger: segment}
                steps:
                  - id: a
                    branch:
                      - when: tier == 'x'
                        goto: c
                  - {id: b, wait: 1 day}
                  - {id: c, wait: 1 day}
                  - id: d
                    branch:
                      - when: tier == 'y'
                        goto: f
                  - {id: e, wait: 1 day}
                  - {id: f, wait: 1 day}
                """
            ),
            "two.yaml",
        )
    )
    jumps = {(e.source, e.target): e.lane for e in short.edges if e.lane is not None}
    assert jumps == {("a", "c"): 0, ("d", "f"): 0}  # apart: one lane for both


def test_layout_draws_the_goal_beside_the_steps():
    drawn = layout(parse_journey(JOURNEY, "flowtest.yaml"))
    goal = drawn.node(GOAL)
    assert goal.label == "renewed" and goal.x > max(n.x + n.w for n in drawn.nodes if n.is_step)
    assert drawn.width >= goal.x + goal.w
    plain = layout(parse_journey(JOURNEY.replace("goal: {event: renewed}\n", ""), "f.yaml"))
    assert GOAL not in {n.id for n in plain.nodes}


def test_render_escapes_names_cuts_long_conditions_and_keeps_them_in_a_tooltip():
    long = "clicked('hello') and tier == 'a very long tier <b>&</b> indeed'"
    text = JOURNEY.replace("when: clicked('hello')", f'when: "{long}"')
    drawn = layout(parse_journey(text, "flowtest.yaml"))
    counts = {"hello": flow.StepCounts(waiting=3, sent=4, reasons={"frequency cap": 1})}
    svg = str(render(drawn, counts, lambda s: f"/j/flowtest/steps/{s}?a=1&b=2", title="流れ <x>"))
    root = ET.fromstring(svg)  # well-formed
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "流れ <x>" in titles and f"if {long}" in titles
    labels = [
        "".join(t.itertext()) for t in root.iter(f"{SVG}text") if t.get("class") == "edge-label"
    ]
    assert any(label.endswith("…") for label in labels)
    hello = next(g for g in root.iter(f"{SVG}g") if g.get("data-step") == "hello")
    assert (hello.get("data-waiting"), hello.get("data-sent"), hello.get("data-held")) == (
        "3",
        "4",
        "1",
    )
    links = [a.get("href") for a in root.iter(f"{SVG}a")]
    assert "/j/flowtest/steps/hello?a=1&b=2" in links and len(links) == 7
    assert "<script" not in svg


# ---------------------------------------------------------------------------- live counts


def seed(db) -> None:
    """The journey deployed to six Tokyo contacts (one capped, at one email a day, by an
    earlier send; two at a domain that takes one email a minute) and two in London (outside
    the window at 10:00 Tokyo, the kit's start)."""
    with db.session() as s, s.begin():
        account = Account(external_id="A", name="株式会社テスト")
        s.add(account)
        s.flush()
        people = [
            ("tokyo0@example.com", "山田 太郎", "Asia/Tokyo"),
            ("tokyo1@example.com", "佐藤 花子", "Asia/Tokyo"),
            ("tokyo2@example.com", "鈴木 一郎", "Asia/Tokyo"),
            ("capped@example.com", "田中 次郎", "Asia/Tokyo"),
            ("slow0@slow.example", "Pat Slow", "Asia/Tokyo"),
            ("slow1@slow.example", "Sam Slow", "Asia/Tokyo"),
            ("london0@example.com", "Alex", "Europe/London"),
            ("london1@example.com", "Jo", "Europe/London"),
        ]
        for email, name, zone in people:
            s.add(Contact(account_id=account.id, email=email, name=name, time_zone=zone))
        s.flush()
        capped = s.scalars(select(Contact).where(Contact.email == "capped@example.com")).one()
        s.add(
            Message(
                contact_id=capped.id,
                step_id="earlier",
                channel="email",
                status=MessageStatus.SENT,
                sent_at=START - timedelta(hours=12),
                category="marketing",
            )
        )
        deploy(s, parse_journey(JOURNEY, "flowtest.yaml"), JOURNEY, "flowtest.yaml")


def engine_for(build_engine):
    """The engine of :func:`seed`'s scenario: one email a day, one a minute to slow.example."""
    return build_engine(
        settings={"frequency_cap": 1, "frequency_period": timedelta(days=1)},
        rate_limiter=DomainRateLimiter({"slow.example": Limit(1, 60)}),
    )


@pytest.fixture
def run(db, build_engine):
    """:func:`seed`, and one tick at the kit's start: Tuesday 10:00 in Tokyo."""
    seed(db)
    engine = engine_for(build_engine)
    engine.tick()
    return engine


def _flow(db) -> flow.Flow:
    with db.session() as s:
        found = flow.current(s, "flowtest")
        assert found is not None
        return flow.flow(s, *found)


def _by_rows(db) -> dict[str, dict[str, int]]:
    """The same counts, one row at a time in Python: the oracle."""
    result: dict[str, dict[str, int]] = {}
    with db.session() as s:
        for e in s.scalars(select(Enrollment)):
            if e.state in flow.NOW and e.current_step and not e.holdout:
                result.setdefault(e.current_step, {}).setdefault("waiting", 0)
                result[e.current_step]["waiting"] += 1
        for m in s.scalars(select(Message).where(Message.journey_id.is_not(None))):
            name = {"sent": "sent", "deferred": "held"}.get(m.status)
            if name:
                result.setdefault(m.step_id, {}).setdefault(name, 0)
                result[m.step_id][name] += 1
    return result


def test_counts_a_step_by_who_waits_what_was_sent_and_what_is_held_and_why(db, run):
    counts = _flow(db)
    hello = counts.steps["hello"]
    assert (hello.waiting, hello.sent, hello.held) == (4, 4, 4)
    assert hello.held_by_reason() == [
        ("sending window", 2),
        ("frequency cap", 1),
        ("rate limit", 1),
    ]
    assert counts.steps["look"].waiting == 4 and counts.steps["look"].sent == 0
    assert counts.totals.waiting == 8 and counts.enrolled == 8
    for step, c in counts.steps.items():
        row = _by_rows(db).get(step, {})
        assert (c.waiting, c.sent, c.held) == (
            row.get("waiting", 0),
            row.get("sent", 0),
            row.get("held", 0),
        ), step


def test_converted_counts_who_reached_the_goal_after_passing_the_step(db, run, clock):
    with db.session() as s, s.begin():
        taro = s.scalars(select(Contact).where(Contact.email == "tokyo0@example.com")).one()
        run.record_event(s, kind=EventKind.CUSTOM, name="renewed", contact_id=taro.id)
    run.tick()
    counts = _flow(db)
    assert counts.steps["hello"].converted == 1  # sent hello, then the goal, waiting at look
    assert counts.steps["look"].converted == 0  # the goal came while at look: not past it
    assert counts.totals.converted == 1 and counts.finished == {EnrollmentState.GOAL: 1}
    clock.set(START + timedelta(days=2, hours=1))  # Thursday 11:00 in Tokyo: the wait times out
    run.tick()
    with db.session() as s, s.begin():
        hanako = s.scalars(select(Contact).where(Contact.email == "tokyo1@example.com")).one()
        run.record_event(s, kind=EventKind.CUSTOM, name="renewed", contact_id=hanako.id)
    run.tick()
    counts = _flow(db)
    assert counts.steps["nudge"].sent >= 1
    assert counts.steps["nudge"].converted == 1
    assert counts.steps["look"].converted == 1 and counts.steps["route"].converted == 1
    assert counts.steps["rest"].converted == 0 and counts.steps["hello"].converted == 2
    assert counts.totals.converted == 2


def test_held_out_enrollments_are_apart_from_the_waiting(db, run):
    with db.session() as s, s.begin():
        e = s.scalars(select(Enrollment).where(Enrollment.current_step == "look")).first()
        assert e is not None
        e.holdout = True
    counts = _flow(db)
    assert counts.held_out == 1 and counts.steps["look"].waiting == 3


def test_totals_explain_enrolled_against_sent_for_the_journeys_list(db, run):
    with db.session() as s:
        journey_id = s.scalars(select(Journey.id).where(Journey.key == "flowtest")).one()
        totals = flow.totals(s)[journey_id]
    assert totals == flow.Totals(enrolled=8, in_progress=8, held=4, sent=4)
