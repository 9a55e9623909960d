"""Bounces and complaints the relay reports after the send, counted into the report's stats
by the webhook, in its transaction, once per message: on SQLite and PostgreSQL, through the
real webhook, with repeats, a relay that reports one bounce twice under two ids, and two
requests about one message at the same time."""

from __future__ import annotations

import random
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.insight import stats, tuning
from campaigns.insight.report import journey_report
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import EventKind, MessageStatus, SuppressionReason
from campaigns.store.models import Account, Contact, Enrollment, Journey, Message, Stat, Suppression
from campaigns.tracking.bounces import Notice, store_notices
from tests.kit import LINKS

ROOT = Path(__file__).resolve().parent.parent
KEY = "bounce-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
SENT = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
LATER = SENT + timedelta(days=1, hours=3)  # the relay's report comes the next day
JOURNEY = textwrap.dedent(
    """\
    journey: renewal
    name: 更新のご案内
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: notice
        email:
          template: onboarding_tips
          subject: {en: Renewal, ja: ご契約更新のご案内}
          variants:
            - {id: plain, subject: {en: Renewal, ja: ご契約更新}}
            - {id: urgent, subject: {en: Renew now, ja: お早めに更新を}}
    """
)


@pytest.fixture
def sent(db, smtp_sink, build_engine) -> dict[str, Message]:
    """Four contacts were sent the journey's email (and the sends rolled up), by address."""
    with db.session() as s, s.begin():
        account = Account(
            external_id="A", name="株式会社エー", arr=Decimal(1), owner_email="csm@example.com"
        )
        s.add(account)
        s.flush()
        s.add_all(
            [
                Contact(
                    account_id=account.id,
                    email=f"c{i}@example.co.jp",
                    name=f"山田 {i}",
                    locale="ja",
                    time_zone="Asia/Tokyo",
                )
                for i in range(4)
            ]
        )
        deploy(s, parse_journey(JOURNEY, "renewal.yaml"), JOURNEY, "renewal.yaml")
    engine = build_engine(
        transport=smtp_sink,
        clock=FakeClock(SENT),
        settings={"frequency_cap": 10},
        links=LINKS,
        tuner=tuning.Tuner(rng=random.Random(2)),
    )
    engine.tick()  # sends, then rolls the sends up
    with db.session() as s:
        messages = {m.to_address: m for m in s.scalars(select(Message))}
    assert len(messages) == 4 and all(
        m.status == MessageStatus.SENT and m.counted for m in messages.values()
    )
    return messages


@pytest.fixture
def client(build_app) -> Any:
    return build_app(clock=FakeClock(LATER), api_keys=(KEY,)).test_client()


def count(db, metric: str) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.sum(Stat.count)).where(Stat.metric == metric)) or 0)


def totals(db) -> dict[str, int]:
    return {
        metric: count(db, metric)
        for metric in ("sent", "bounced", "bounced_after_send", "complained")
    }


def bounce(message: Message, key: str | None, kind: EventKind = EventKind.BOUNCE) -> Notice:
    """A notice as the relay's webhook parser makes it (``key``: its dedupe key)."""
    assert message.to_address is not None and message.message_id is not None
    hard = kind == EventKind.BOUNCE
    return Notice(
        0,
        kind,
        message.to_address,
        hard,
        (message.message_id,),
        "550 5.1.1 宛先不明" if hard else None,
        "ses",
        key,
        LATER,
    )


def store(db, notices: list[Notice]) -> tuple[int, int]:
    """What the API does: store and commit, again from the start if a concurrent request took a
    key."""
    for _ in range(3):
        with db.session() as s:
            try:
                result = store_notices(s, notices, LATER)
                s.commit()
            except IntegrityError:
                s.rollback()
                continue
            return result
    raise AssertionError("kept colliding")


def test_a_late_hard_bounce_keeps_sent_adds_bounced_once_however_often_the_relay_says_so(
    db, sent, client
):
    message = sent["c1@example.co.jp"]
    body = {
        "type": "bounce",
        "email": "c1@example.co.jp",
        "message_id": message.message_id,
        "bounce_type": "hard",
        "diagnostic": "550 5.1.1 宛先不明",
    }
    assert client.post("/api/v1/webhooks/bounces", json=body, headers=AUTH).get_json() == {
        "processed": 1,
        "duplicates": 0,
        "ignored": 0,
    }
    assert totals(db) == {"sent": 4, "bounced": 1, "bounced_after_send": 1, "complained": 0}
    # Filed with the message's own keys, on the day it was sent.
    with db.session() as s:
        row = s.scalars(select(Stat).where(Stat.metric == "bounced")).one()
        journey_id = s.scalar(select(Journey.id).where(Journey.key == "renewal"))
        assert (
            row.journey_id,
            row.step_id,
            row.channel,
            row.variant,
            row.segment,
            row.tier,
            row.day,
        ) == (journey_id, "notice", "email", message.variant, "everyone", "everyone", SENT.date())
    # The webhook repeats: nothing more. The relay reports it again under another id: nothing more.
    assert client.post("/api/v1/webhooks/bounces", json=body, headers=AUTH).get_json() == {
        "processed": 0,
        "duplicates": 1,
        "ignored": 0,
    }
    assert store(db, [bounce(message, "ses:another-feedback-id")]) == (1, 0)
    with db.session() as s, s.begin():
        stats.rollup(s, LATER)
    assert totals(db) == {"sent": 4, "bounced": 1, "bounced_after_send": 1, "complained": 0}
    with db.session() as s:
        step = journey_report(s, "renewal").rows[0]
        assert s.get(Message, message.id).status == MessageStatus.BOUNCED  # type: ignore[union-attr]
    rate = step.rate("bounce_rate")
    assert (rate.hits, rate.n) == (1, 4)  # of the four emails handed to the relay, one bounced


def test_a_bounce_reported_before_the_rollup_is_counted_once_and_the_send_by_the_rollup(db, sent):
    with db.session() as s, s.begin():  # a fifth email, sent but not rolled up yet
        first = s.scalars(select(Enrollment)).first()
        assert first is not None
        late = Message(
            enrollment_id=first.id,
            contact_id=first.contact_id,
            journey_id=first.journey_id,
            step_id="notice",
            attempt_key="resend",
            channel="email",
            variant="plain",
            to_address="c0@example.co.jp",
            message_id="<resend.1@example.com>",
            status=MessageStatus.SENT,
            sent_at=SENT,
            created_at=SENT,
        )
        s.add(late)
    assert store(db, [bounce(late, "ses:late")]) == (1, 0)
    assert totals(db) == {"sent": 4, "bounced": 1, "bounced_after_send": 1, "complained": 0}
    with db.session() as s, s.begin():
        stats.rollup(s, LATER)
    assert totals(db) == {"sent": 5, "bounced": 1, "bounced_after_send": 1, "complained": 0}


def test_a_bounce_of_a_message_in_flight_is_left_to_the_rollup(db, sent):
    message = sent["c2@example.co.jp"]
    with db.session() as s, s.begin():  # as if the relay reported it before the send was recorded
        row = s.get(Message, message.id)
        assert row is not None
        row.status, row.sent_at, row.counted = MessageStatus.SENDING, None, False
    assert store(db, [bounce(message, "ses:in-flight")]) == (1, 0)
    assert totals(db) == {"sent": 4, "bounced": 0, "bounced_after_send": 0, "complained": 0}
    with db.session() as s, s.begin():
        stats.rollup(s, LATER)
    assert totals(db) == {
        "sent": 4,
        "bounced": 1,
        "bounced_after_send": 0,
        "complained": 0,
    }  # like a refusal at sending


def test_a_complaint_about_a_message_counts_once(db, sent, client):
    message = sent["c3@example.co.jp"]
    body = {"type": "complaint", "email": "c3@example.co.jp", "message_id": message.message_id}
    assert (
        client.post("/api/v1/webhooks/bounces", json=body, headers=AUTH).get_json()["processed"]
        == 1
    )
    assert (
        client.post("/api/v1/webhooks/bounces", json=body, headers=AUTH).get_json()["duplicates"]
        == 1
    )
    assert store(
        db,
        [
            bounce(message, "ses:complaint-2", EventKind.COMPLAINT),
            bounce(message, "ses:complaint-3", EventKind.COMPLAINT),
        ],
    ) == (2, 0)
    assert totals(db) == {"sent": 4, "bounced": 0, "bounced_after_send": 0, "complained": 1}
    with db.session() as s:
        assert s.scalar(select(Stat.variant).where(Stat.metric == "complained")) == message.variant
    # A complaint that names no message of ours has no journey to be counted for.
    assert (
        client.post(
            "/api/v1/webhooks/bounces",
            json={"type": "complaint", "email": "c0@example.co.jp"},
            headers=AUTH,
        ).get_json()["processed"]
        == 1
    )
    assert count(db, "complained") == 1


@pytest.mark.parametrize(
    "kinds",
    [(EventKind.BOUNCE, EventKind.COMPLAINT), (EventKind.COMPLAINT,)],
    ids=["bounce-and-complaint", "complaint"],
)
def test_two_requests_about_one_message_at_once_count_it_once(db, sent, kinds):
    message = sent["c1@example.co.jp"]
    with (
        db.session() as s,
        s.begin(),
    ):  # already suppressed by hand: no new suppression row makes the two collide
        s.add(
            Suppression(email="c1@example.co.jp", reason=SuppressionReason.MANUAL, created_at=SENT)
        )
    first = db.session()
    assert store_notices(
        first, [bounce(message, f"ses:a-{kind}", kind) for kind in kinds], LATER
    ) == (len(kinds), 0)
    # The first request has marked the message but not committed: the second waits for it.
    second: list[tuple[int, int]] = []
    racer = threading.Thread(
        target=lambda: second.append(
            store(db, [bounce(message, f"ses:b-{kind}", kind) for kind in kinds])
        )
    )
    racer.start()
    time.sleep(0.5)
    assert racer.is_alive()  # held by the first request's lock on the message
    first.commit()
    first.close()
    racer.join(timeout=60)
    assert second == [(len(kinds), 0)]
    bounced = int(EventKind.BOUNCE in kinds)
    assert totals(db) == {
        "sent": 4,
        "bounced": bounced,
        "bounced_after_send": bounced,
        "complained": 1,
    }
