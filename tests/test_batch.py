"""Send batches: enrollments advanced together, their emails marked "sending" in one commit
and delivered over one connection. Whatever the batch size, every message goes exactly
once; one bad enrollment fails alone; a bounce in a batch holds for the rest of it."""

from __future__ import annotations

import textwrap
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns.clock import FakeClock
from campaigns.engine.core import Engine
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.segments import parse_segments
from campaigns.store.enums import EnrollmentState, MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, Message, Suppression, Task

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = parse_segments("tiers:\n  everyone: {when: true}\n")
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)

JOURNEY = textwrap.dedent(
    """\
    journey: two_mails
    name: Two mails
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: hello
        email: {template: onboarding_welcome, subject: {en: "Hello {{ contact.name }}",
            ja: "{{ contact.name }}様"}}
      - id: plan
        email: {template: onboarding_tips, subject: "Your plan: {{ contact.attributes.plan.name }}"}
      - id: call
        task: {kind: call, title: "Call {{ contact.name }}", per: contact}
      - id: ask
        survey: {scale: csat, template: csat_survey, subject: "How did we do?"}
    """
)


def setup(db, n: int, *, without_plan: tuple[int, ...] = ()) -> None:
    with db.session() as s, s.begin():
        account = Account(
            external_id="A", name="株式会社エー", arr=Decimal(1), owner_email="csm@example.com"
        )
        s.add(account)
        s.flush()
        for i in range(n):
            attributes = (
                {} if i in without_plan else {"plan": {"name": "ビジネス" if i % 2 else "Business"}}
            )
            s.add(
                Contact(
                    account_id=account.id,
                    email=f"p{i}@example.com",
                    name=f"山田 {i}" if i % 2 else f"Pat {i}",
                    locale="ja" if i % 2 else "en",
                    attributes=attributes,
                )
            )
        deploy(s, parse_journey(JOURNEY, "two_mails.yaml"), JOURNEY, "two_mails.yaml")


def engine_for(build_engine, sink, send_batch: int) -> Engine:
    return build_engine(
        transport=sink,
        clock=FakeClock(START),
        settings={"frequency_cap": 10, "send_batch": send_batch},
    )


def received(sink) -> Counter[str]:
    return Counter(to for _, tos, _ in sink.messages for to in tos)


@pytest.mark.parametrize("send_batch", [1, 7, 100])
def test_every_batch_size_sends_each_message_once(db, smtp_sink, send_batch, build_engine):
    n = 23
    setup(db, n)
    engine = engine_for(build_engine, smtp_sink, send_batch)
    result = engine.tick()
    engine.tick()  # again: nothing more goes
    engine.transport.close()

    assert (
        result.sent == 3 * n + n
    )  # hello, plan and the survey per contact; one owner notice per task
    counts = received(smtp_sink)
    assert counts == Counter({**{f"p{i}@example.com": 3 for i in range(n)}, "csm@example.com": n})
    ids = [
        raw.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0] for _, _, raw in smtp_sink.messages
    ]
    assert len(set(ids)) == len(ids)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Task)) == n
        assert set(s.scalars(select(Message.status))) == {MessageStatus.SENT}
        assert set(s.scalars(select(Enrollment.state))) == {EnrollmentState.COMPLETED}
        assert (
            s.scalar(
                select(func.count())
                .select_from(Enrollment)
                .where(Enrollment.claimed_by.is_not(None))
            )
            == 0
        )


def test_one_bad_enrollment_fails_alone_and_nothing_goes_twice(db, smtp_sink, build_engine):
    n = 12
    setup(db, n, without_plan=(5,))  # contact 5's second subject cannot render
    engine = engine_for(build_engine, smtp_sink, 100)
    result = engine.tick()
    engine.transport.close()

    counts = received(smtp_sink)
    assert (
        counts["p5@example.com"] == 1
    )  # the first email went (in the batch), the second could not
    assert all(counts[f"p{i}@example.com"] == 3 for i in range(n) if i != 5)
    assert counts["csm@example.com"] == n - 1
    assert result.failed == 1
    with db.session() as s:
        bad = s.scalar(select(Enrollment).join(Contact).where(Contact.email == "p5@example.com"))
        assert bad.state == EnrollmentState.FAILED and "plan" in bad.error
        assert (
            s.scalar(
                select(func.count())
                .select_from(Enrollment)
                .where(Enrollment.state == EnrollmentState.COMPLETED)
            )
            == n - 1
        )


def test_a_bounce_in_a_batch_suppresses_the_address_for_the_rest_of_it(db, smtp_sink, build_engine):
    setup(db, 6)
    smtp_sink.refuse["p2@example.com"] = "550 5.1.1 no such user"
    engine = engine_for(build_engine, smtp_sink, 100)
    engine.tick()
    engine.transport.close()

    assert "p2@example.com" not in received(smtp_sink)
    with db.session() as s:
        statuses = dict(
            s.execute(
                select(Message.step_id, Message.status).where(
                    Message.to_address == "p2@example.com"
                )
            ).all()
        )
        assert statuses == {
            "hello": MessageStatus.BOUNCED,
            "plan": MessageStatus.SUPPRESSED,
            "ask": MessageStatus.SUPPRESSED,
        }
        assert (
            s.scalar(select(Suppression.reason).where(Suppression.email == "p2@example.com"))
            == "hard_bounce"
        )
