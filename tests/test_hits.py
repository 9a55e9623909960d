"""The hit log on a real Redis and the flusher on SQLite and PostgreSQL: hits are written
in batches, none is lost when a flusher dies or the web process restarts, none counts twice,
and later hits reclassify earlier ones (a scanner burst spanning two flushes)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from sqlalchemy import distinct, func, select

from campaigns.store.enums import Classification, EventKind, MessageStatus
from campaigns.store.models import Account, Contact, Event, Message
from campaigns.tracking.hitlog import RedisHitLog
from campaigns.tracking.hits import Hit, write_hits
from tests.kit import LINKS

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15"
)
SENT = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
def redis_log(redis_conn):
    stream = f"campaigns:test-hits:{uuid.uuid4().hex[:8]}"
    return RedisHitLog(redis_conn, stream=stream, consumer="flusher-a")


@pytest.fixture
def messages(db) -> list[int]:
    with db.session() as s, s.begin():
        account = Account(external_id="A", name="株式会社エー")
        s.add(account)
        s.flush()
        ids = []
        for i in range(20):
            contact = Contact(
                account_id=account.id, email=f"c{i}@example.jp", name=f"山田 {i}", locale="ja"
            )
            s.add(contact)
            s.flush()
            message = Message(
                contact_id=contact.id,
                step_id="hello",
                status=MessageStatus.SENT,
                sent_at=SENT,
                links=[f"https://example.com/{n}" for n in range(6)],
            )
            s.add(message)
            s.flush()
            ids.append(message.id)
        return ids


def count(db, **where) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Event).filter_by(**where)) or 0


def test_hits_wait_in_redis_until_flushed_then_land_in_one_batch(db, redis_log, messages):
    now = time.time()
    redis_log.record_many(
        Hit("open", m, now, user_agent=BROWSER, ip="198.51.100.7")
        for m in messages
        for _ in range(3)
    )
    assert (
        redis_log.pending() == 60 and count(db) == 0
    )  # nothing on the request path touched the database
    result = redis_log.flush(db.sessions)
    assert (result.read, result.written, result.duplicates) == (60, 60, 0)
    assert redis_log.pending() == 0
    with db.session() as s:
        unique = s.scalar(
            select(func.count(distinct(Event.message_id))).where(
                Event.kind == EventKind.OPEN, Event.classification == Classification.HUMAN
            )
        )
        assert unique == 20  # three opens each, one unique open each
        assert s.scalar(select(Event.data)) == {
            "method": "GET",
            "ip": "198.51.100.0/24",
        }  # the network, not the address


def test_a_flusher_that_dies_before_acknowledging_loses_nothing_and_doubles_nothing(
    db, redis_log, messages
):
    redis_log.record_many(
        Hit("click", m, time.time(), user_agent=BROWSER, link=1) for m in messages
    )
    # Flusher A reads the batch and writes it, then dies before XACK (the worst moment).
    entries = (
        redis_log.redis.xreadgroup(redis_log.group, "flusher-a", {redis_log.stream: ">"}, count=100)
        if _group(redis_log)
        else []
    )
    hits = [(i.decode(), Hit.from_fields(f)) for i, f in entries[0][1]]
    with db.session() as s, s.begin():
        write_hits(s, hits, datetime.now(UTC))
    assert count(db) == 20
    # Flusher B takes over A's unacknowledged entries once they have been idle long enough.
    b = RedisHitLog(redis_log.redis, stream=redis_log.stream, consumer="flusher-b")
    assert b.flush(db.sessions, claim_idle=timedelta(hours=1)).read == 0  # not idle yet: left to A
    time.sleep(0.05)
    result = b.flush(db.sessions, claim_idle=timedelta(milliseconds=10))
    assert (result.read, result.written, result.duplicates) == (20, 0, 20)
    assert count(db) == 20 and redis_log.pending() == 0


def test_hits_survive_a_restart_of_the_web_process(db, redis_log, redis_url, messages):
    """The web process only appends to Redis: a new connection (a restarted process) finds
    every hit the old one recorded."""
    redis_log.record_many(Hit("open", m, time.time(), user_agent=BROWSER) for m in messages)
    redis_log.redis.close()
    restarted = RedisHitLog(
        Redis.from_url(redis_url), stream=redis_log.stream, consumer="after-restart"
    )
    assert restarted.flush(db.sessions).written == 20


def test_a_scanner_burst_split_across_two_flushes_is_reclassified(db, redis_log, messages):
    message = messages[0]
    start = time.time()
    redis_log.record(Hit("click", message, start, user_agent=BROWSER, link=0))
    redis_log.flush(db.sessions)
    assert count(db, classification=Classification.HUMAN) == 1  # alone, it looks like a person
    redis_log.record_many(
        Hit("click", message, start + 0.3 * n, user_agent=BROWSER, link=n) for n in range(1, 6)
    )
    result = redis_log.flush(db.sessions)
    assert result.reclassified == 1
    assert (
        count(db, classification=Classification.MACHINE) == 6
        and count(db, classification=Classification.HUMAN) == 0
    )


def test_hits_on_unknown_messages_or_links_and_unreadable_entries_are_dropped(
    db, redis_log, messages
):
    redis_log.record(Hit("click", messages[0], time.time(), user_agent=BROWSER, link=99))
    redis_log.record(Hit("open", 10**9, time.time(), user_agent=BROWSER))
    _group(redis_log)
    redis_log.redis.xadd(redis_log.stream, {"k": "open", "m": "not a number"})
    result = redis_log.flush(db.sessions)
    assert (result.read, result.written, result.dropped) == (3, 0, 3)
    assert redis_log.pending() == 0 and count(db) == 0


def test_hits_round_trip_through_stream_fields():
    hit = Hit(
        "comment", 7, 1_700_000_000.25, "POST", "UA ユーザー", "2001:db8::1", None, "とても良い"
    )
    assert Hit.from_fields({k.encode(): v.encode() for k, v in hit.fields().items()}) == hit
    assert Hit.from_fields({b"k": b"teleport", b"m": b"1", b"t": b"1"}) is None


def _group(log: RedisHitLog) -> bool:
    log._ensure_group()
    return True


def test_branches_see_human_clicks_only(db, smtp_sink, build_engine, clock):
    """A scanner's clicks on one contact's email, a person's click on another's: only the
    person takes the ``clicked()`` branch."""
    import textwrap

    from campaigns.engine.deploy import deploy
    from campaigns.journeys.parse import parse_journey
    from campaigns.store.models import Enrollment

    text = textwrap.dedent(
        """\
        journey: clicks
        name: Clicks
        segments: [everyone]
        entry: {trigger: segment}
        steps:
          - {id: hello, email: {template: onboarding_tips, subject: Tips}}
          - {id: pause, wait: 1 day}
          - id: route
            branch:
              - when: clicked('hello')
                goto: engaged
              - else: quiet
          - {id: engaged, exit: engaged}
          - {id: quiet, exit: quiet}
        """
    )
    with db.session() as s, s.begin():
        account = Account(external_id="A", name="A")
        s.add(account)
        s.flush()
        s.add_all(
            [
                Contact(account_id=account.id, email="scanned@example.com", name="S"),
                Contact(account_id=account.id, email="person@example.com", name="P"),
            ]
        )
        deploy(s, parse_journey(text, "clicks.yaml"), text, "clicks.yaml")
    engine = build_engine(transport=smtp_sink, links=LINKS)
    engine.tick()
    with db.session() as s:
        sent = dict(s.execute(select(Message.to_address, Message.id)).all())
    later = clock.now().timestamp() + 3600
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0 Safari/537.36"
    )
    hits = [
        ("s1", Hit("click", sent["scanned@example.com"], later, user_agent=chrome, link=0)),
        (
            "s2",
            Hit("click", sent["scanned@example.com"], later + 0.4, user_agent=chrome, link=1),
        ),
    ]
    hits.append(
        ("p1", Hit("click", sent["person@example.com"], later + 30, user_agent=chrome, link=0))
    )
    with db.session() as s, s.begin():
        write_hits(s, hits, clock.now())
    clock.advance(timedelta(days=1, minutes=1))
    engine.tick()
    with db.session() as s:
        reasons = dict(
            s.execute(
                select(Contact.email, Enrollment.exit_reason).join(
                    Enrollment, Enrollment.contact_id == Contact.id
                )
            ).all()
        )
    assert reasons == {"scanned@example.com": "quiet", "person@example.com": "engaged"}
