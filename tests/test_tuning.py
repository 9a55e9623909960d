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

from sqlalchemy import select

from campaigns import stats, tuning
from campaigns.channels.email import transport_from_url
from campaigns.clock import FakeClock
from campaigns.deploy import deploy
from campaigns.dsl import parse_journey
from campaigns.engine import Engine, EngineSettings
from campaigns.models import Account, Allocation, Contact, Enrollment, Journey, Message, Task
from campaigns.render import Renderer, Sender
from campaigns.segments import parse_segments
from campaigns.templates import TemplateStore
from campaigns.tokens import Tokens

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
        task: {title: "Call {{ contact.name }}"}
    """
)


def setup(db, text: str, n: int, key: str) -> int:
    with db.session() as s, s.begin():
        account = Account(external_id="A", name="A", arr=Decimal(1), owner_email="csm@example.com")
        s.add(account)
        s.flush()
        s.add_all([Contact(account_id=account.id, email=f"t{i}@example.com", name=f"T {i}") for i in range(n)])
        deploy(s, parse_journey(text, f"{key}.yaml"), text, f"{key}.yaml")
        return s.scalar(select(Journey.id).where(Journey.key == key))


def engine_for(db, sink, seed: int) -> Engine:
    renderer = Renderer(TemplateStore(ROOT / "templates"), Tokens("tune-secret-0123456789", "https://cs.example.com"), Sender("cs@example.com"))
    return Engine(
        db.sessions, FakeClock(START), lambda: SEGMENTS, renderer, transport_from_url(sink.url), EngineSettings(frequency_cap=10),
        links={"docs": "https://docs.example.com/", "help": "https://help.example.com/"}, tuner=tuning.Tuner(rng=random.Random(seed)),
    )  # fmt: skip


def tick(db, sink, seed: int) -> None:
    """One scheduler pass with a seeded tuner."""
    engine = engine_for(db, sink, seed)
    try:
        engine.tick()
    finally:
        engine.transport.close()


def seed(db, journey_id: int, step: str, column: str, arms: dict[str, tuple[int, int]], trials_metric: str = "sent", goal: str = "clicked") -> None:
    counts: Counter = Counter()
    for arm, (successes, trials) in arms.items():
        variant, channel = (arm, "email") if column == "variant" else ("", arm)
        counts[(journey_id, step, channel, variant, "everyone", "", START.date(), tuning.TRIALS.get(arm, trials_metric) if column == "channel" else trials_metric)] += trials
        counts[(journey_id, step, channel, variant, "everyone", "", START.date(), goal)] += successes
    with db.session() as s, s.begin():
        stats.add(s, counts)


def test_a_better_variant_gets_most_new_sends_and_the_allocation_is_stored(db, smtp_sink):
    journey_id = setup(db, VARIANTS, 300, "tuned")
    seed(db, journey_id, "hello", "variant", {"plain": (4, 200), "urgent": (40, 200)})  # 2% vs 20% clicked
    tick(db, smtp_sink, seed=7)
    with db.session() as s:
        split = Counter(s.scalars(select(Message.variant)))
        # P(urgent is best) ~ 1, so it gets 0.1/2 + 0.9 = 95% of draws: ~285 of 300.
        assert split["urgent"] > 250 and split["plain"] >= 1, split
        rows = s.scalars(select(Allocation).where(Allocation.arm == "urgent")).all()
        assert rows and rows[0].trials == 200 and rows[0].successes == 40 and rows[0].p_best > 0.99 and abs(rows[0].share - 0.95) < 0.01
        assert set(s.scalars(select(Enrollment.segment))) == {"everyone"}


def test_before_the_minimum_sample_the_split_is_even(db, smtp_sink):
    journey_id = setup(db, VARIANTS, 300, "tuned")
    seed(db, journey_id, "hello", "variant", {"plain": (0, 50), "urgent": (25, 50)})  # under 100 trials each: no leaning yet
    tick(db, smtp_sink, seed=11)
    with db.session() as s:
        split = Counter(s.scalars(select(Message.variant)))
    assert 110 <= split["urgent"] <= 190 and split["plain"] + split["urgent"] == 300, split  # 150 +- 4.6 sd


def test_best_of_routes_to_the_channel_that_gets_answers_and_keeps_it(db, smtp_sink):
    journey_id = setup(db, CHANNELS, 100, "routed")
    seed(db, journey_id, "reach", "channel", {"email": (5, 500), "task": (60, 120)})  # 1% vs 50%
    tick(db, smtp_sink, seed=3)
    with db.session() as s:
        tasks = len(s.scalars(select(Task)).all())
        emails = len(s.scalars(select(Message).where(Message.step_id == "reach", Message.attempt_key == "1")).all())
        assert tasks + emails == 100 and tasks > 85, (tasks, emails)
        # Each enrollment remembers the channel it drew, and that is the one it got.
        tasked = set(s.scalars(select(Task.enrollment_id)))
        for enrollment in s.scalars(select(Enrollment)):
            assert (enrollment.context["arms"]["reach"] == "task") == (enrollment.id in tasked)
