"""Tuning in the engine: a step's variants and a best_of step's channels are allocated per
segment by Thompson sampling on the step's goal, from the stats; the allocation and why are
stored; a contact keeps the arm drawn."""

from __future__ import annotations

import random
import textwrap
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from campaigns.clock import FakeClock
from campaigns.engine.core import Engine
from campaigns.engine.deploy import deploy
from campaigns.insight import stats, tuning
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.segments import parse_segments
from campaigns.store.models import (
    Account,
    Allocation,
    Contact,
    Enrollment,
    InAppMessage,
    Journey,
    Message,
    Stat,
    Task,
)
from tests.kit import LINKS

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
SEGMENTS = parse_segments("tiers:\n  everyone: {when: true}\n")
VARIANTS = textwrap.dedent(
    """\
    journey: tuned
    name: Tuned
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: hello
        goal: clicked
        email:
          template: onboarding_tips
          subject: Tips
          variants:
            - {id: plain, subject: Tips}
            - {id: urgent, subject: "Don't miss these tips"}
    """
)
CHANNELS = textwrap.dedent(
    """\
    journey: routed
    name: Routed
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: reach
        channel: best_of [email, task]
        goal: clicked
        email: {template: onboarding_tips, subject: Tips}
        task: {title: "Call {{ contact.name }}", per: contact}
    """
)


IN_APP = textwrap.dedent(
    """\
    journey: nudged
    name: 機能のご案内
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: nudge
        channel: best_of [email, in_app]
        goal: clicked
        email: {template: onboarding_tips, subject: {en: Tips, ja: 活用のヒント}}
        in_app: {title: {en: Try reports, ja: レポートを使ってみましょう}, body: {en: Faster now,
            ja: 速くなりました}, url: "https://app.example.com/reports"}
    """
)


def setup(db, text: str, n: int, key: str, start: int = 0) -> int:
    with db.session() as s, s.begin():
        account = s.scalar(select(Account).where(Account.external_id == "A"))
        if account is None:
            account = Account(
                external_id="A", name="A", arr=Decimal(1), owner_email="csm@example.com"
            )
            s.add(account)
            s.flush()
        s.add_all(
            [
                Contact(account_id=account.id, email=f"t{i}@example.com", name=f"T {i}")
                for i in range(start, start + n)
            ]
        )
        deploy(s, parse_journey(text, f"{key}.yaml"), text, f"{key}.yaml")
        return s.scalar(select(Journey.id).where(Journey.key == key))


def engine_for(build_engine, sink, seed: int) -> Engine:
    return build_engine(
        transport=sink,
        clock=FakeClock(START),
        segments=SEGMENTS,
        settings={"frequency_cap": 10},
        links=LINKS,
        tuner=tuning.Tuner(rng=random.Random(seed)),
    )


def tick(build_engine, sink, seed: int) -> None:
    """One scheduler pass with a seeded tuner."""
    engine = engine_for(build_engine, sink, seed)
    try:
        engine.tick()
    finally:
        engine.transport.close()


def seed(
    db,
    journey_id: int,
    step: str,
    column: str,
    arms: dict[str, tuple[int, int]],
    trials_metric: str = "sent",
    goal: str = "clicked",
) -> None:
    counts: Counter = Counter()
    for arm, (successes, trials) in arms.items():
        variant, channel = (arm, "email") if column == "variant" else ("", arm)
        counts[
            (
                journey_id,
                step,
                channel,
                variant,
                "everyone",
                "",
                START.date(),
                tuning.TRIALS.get(arm, trials_metric) if column == "channel" else trials_metric,
            )
        ] += trials
        counts[(journey_id, step, channel, variant, "everyone", "", START.date(), goal)] += (
            successes
        )
    with db.session() as s, s.begin():
        stats.add(s, counts)


def test_a_better_variant_gets_most_new_sends_and_the_allocation_is_stored(
    db, smtp_sink, build_engine
):
    journey_id = setup(db, VARIANTS, 300, "tuned")
    seed(
        db, journey_id, "hello", "variant", {"plain": (4, 200), "urgent": (40, 200)}
    )  # 2% vs 20% clicked
    tick(build_engine, smtp_sink, seed=7)
    with db.session() as s:
        split = Counter(s.scalars(select(Message.variant)))
        # P(urgent is best) ~ 1, so it gets 0.1/2 + 0.9 = 95% of draws: ~285 of 300.
        assert split["urgent"] > 250 and split["plain"] >= 1, split
        rows = s.scalars(select(Allocation).where(Allocation.arm == "urgent")).all()
        assert (
            rows
            and rows[0].trials == 200
            and rows[0].successes == 40
            and rows[0].p_best > 0.99
            and abs(rows[0].share - 0.95) < 0.01
        )
        assert set(s.scalars(select(Enrollment.segment))) == {"everyone"}


def test_before_the_minimum_sample_the_split_is_even(db, smtp_sink, build_engine):
    journey_id = setup(db, VARIANTS, 300, "tuned")
    seed(
        db, journey_id, "hello", "variant", {"plain": (0, 50), "urgent": (25, 50)}
    )  # under 100 trials each: no leaning yet
    tick(build_engine, smtp_sink, seed=11)
    with db.session() as s:
        split = Counter(s.scalars(select(Message.variant)))
    assert 110 <= split["urgent"] <= 190 and split["plain"] + split["urgent"] == 300, (
        split
    )  # 150 +- 4.6 sd


def test_best_of_routes_to_the_channel_that_gets_answers_and_keeps_it(db, smtp_sink, build_engine):
    journey_id = setup(db, CHANNELS, 100, "routed")
    seed(db, journey_id, "reach", "channel", {"email": (5, 500), "task": (60, 120)})  # 1% vs 50%
    tick(build_engine, smtp_sink, seed=3)
    with db.session() as s:
        tasks = len(s.scalars(select(Task)).all())
        emails = len(
            s.scalars(
                select(Message).where(Message.step_id == "reach", Message.attempt_key == "1")
            ).all()
        )
        assert tasks + emails == 100 and tasks > 85, (tasks, emails)
        # Each enrollment remembers the channel it drew, and that is the one it got.
        tasked = set(s.scalars(select(Task.enrollment_id)))
        for enrollment in s.scalars(select(Enrollment)):
            assert (enrollment.context["arms"]["reach"] == "task") == (enrollment.id in tasked)


def in_app_counts(db) -> dict[tuple[str, str, str], int]:
    with db.session() as s:
        rows = s.execute(
            select(Stat.channel, Stat.segment, Stat.metric, func.sum(Stat.count))
            .where(Stat.metric.like("in_app_%"))
            .group_by(Stat.channel, Stat.segment, Stat.metric)
        )
        return {(channel, segment, metric): int(n) for channel, segment, metric, n in rows}


def test_in_app_messages_created_and_clicked_are_the_in_app_arms_trials_and_successes(
    db, smtp_sink, build_engine, build_app
):
    journey_id = setup(db, IN_APP, 260, "nudged")
    tick(build_engine, smtp_sink, seed=4)  # nothing measured yet: an even split
    with db.session() as s:
        in_app = s.scalars(select(InAppMessage.id).order_by(InAppMessage.id)).all()
        emails = (
            s.scalar(select(func.count()).select_from(Message).where(Message.step_id == "nudge"))
            or 0
        )
    assert len(in_app) + emails == 260 and len(in_app) >= 100 and emails >= 100, (
        len(in_app),
        emails,
    )
    assert in_app_counts(db) == {("in_app", "everyone", "in_app_created"): len(in_app)}
    tick(build_engine, smtp_sink, seed=4)  # nothing new: nothing counted again
    assert in_app_counts(db) == {("in_app", "everyone", "in_app_created"): len(in_app)}

    # The product shows every in-app message and 60% are followed; some acknowledgements repeat.
    app = build_app(clock=FakeClock(START), api_keys=("tuning-key-0123456789",))
    client, auth = app.test_client(), {"Authorization": "Bearer tuning-key-0123456789"}
    followed = in_app[: len(in_app) * 6 // 10]
    for n, item in enumerate(in_app):
        assert client.post(f"/api/v1/in-app/{item}/seen", headers=auth).status_code == 200
        for _ in range(2 if item in followed else 0):
            assert client.post(f"/api/v1/in-app/{item}/clicked", headers=auth).status_code == 200
        if n % 7 == 0:
            client.post(f"/api/v1/in-app/{item}/seen", headers=auth)
    assert in_app_counts(db) == {
        ("in_app", "everyone", "in_app_created"): len(in_app),
        ("in_app", "everyone", "in_app_seen"): len(in_app),
        ("in_app", "everyone", "in_app_clicked"): len(followed),
    }
    with db.session() as s:
        arms = {
            arm.name: arm
            for arm in tuning.counts(
                s, journey_id, "nudge", "everyone", ["email", "in_app"], "channel", "clicked"
            )
        }
        shown = {
            arm.name: arm
            for arm in tuning.counts(
                s, journey_id, "nudge", "everyone", ["email", "in_app"], "channel", "opened"
            )
        }
    assert (arms["in_app"].successes, arms["in_app"].trials) == (len(followed), len(in_app))
    assert (arms["email"].successes, arms["email"].trials) == (0, emails)  # nobody clicked an email
    assert shown["in_app"].successes == len(in_app)

    # Newcomers now go to the in-app arm: P(in_app is best) ~ 1, so ~95% of them.
    setup(db, IN_APP, 100, "nudged", start=260)
    tick(build_engine, smtp_sink, seed=4)
    with db.session() as s:
        newcomers = s.scalars(
            select(Enrollment).where(
                Enrollment.contact_id.in_(
                    select(Contact.id).where(
                        Contact.email.in_([f"t{i}@example.com" for i in range(260, 360)])
                    )
                )
            )
        ).all()
        split = Counter(e.context["arms"]["nudge"] for e in newcomers)
        allocation = s.scalars(
            select(Allocation).where(Allocation.arm == "in_app").order_by(Allocation.id.desc())
        ).first()
    assert split["in_app"] > 85 and split["in_app"] + split["email"] == 100, split
    assert (
        allocation is not None
        and allocation.trials == len(in_app)
        and allocation.successes == len(followed)
        and allocation.p_best > 0.99
    )
    assert (
        in_app_counts(db)[("in_app", "everyone", "in_app_created")] == len(in_app) + split["in_app"]
    )
