"""Faults: a worker killed in the middle of a send, Redis flushed mid-journey, an SMTP
server answering 421/451 or dropping the connection. Nothing is lost; what a crash leaves
in doubt is only what was in flight, and it goes again under the same Message-ID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import func, select

from campaigns.channels.email import transport_from_url
from campaigns.clock import FakeClock
from campaigns.deploy import deploy
from campaigns.dsl import parse_journey
from campaigns.engine import Engine, EngineSettings
from campaigns.models import Account, Contact, Message, MessageStatus
from campaigns.render import Renderer, Sender
from campaigns.segments import parse_segments
from campaigns.templates import TemplateStore
from campaigns.tokens import Tokens

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS_TEXT = "tiers:\n  everyone: {when: true}\n"
SEGMENTS = parse_segments(SEGMENTS_TEXT)
JOURNEY = textwrap.dedent(
    """\
    journey: blast
    name: One email
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: hello
        email: {template: onboarding_tips, subject: {en: "Tips for you", ja: "活用のヒント"}}
    """
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def populate(db, n: int) -> None:
    with db.session() as s, s.begin():
        account = Account(external_id="A", name="株式会社エー", arr=Decimal(1))
        s.add(account)
        s.flush()
        s.add_all(Contact(account_id=account.id, email=f"r{i}@example.com", name=f"R {i}", locale="ja" if i % 2 else "en") for i in range(n))
        deploy(s, parse_journey(JOURNEY, "blast.yaml"), JOURNEY, "blast.yaml")


def engine_for(db, sink, clock, **settings) -> Engine:
    renderer = Renderer(TemplateStore(ROOT / "templates"), Tokens("fault-secret-0123456789", "https://cs.example.com"), Sender("cs@example.com"), domain="example.com")
    return Engine(db.sessions, clock, lambda: SEGMENTS, renderer, transport_from_url(sink.url), EngineSettings(**settings))


def delivered(sink) -> Counter[str]:
    return Counter(to for _, tos, _ in sink.messages for to in tos)


WORKER = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    from pathlib import Path
    from campaigns.channels.email import transport_from_url
    from campaigns.clock import SystemClock
    from campaigns.db import make_engine, make_sessionmaker
    from campaigns.engine import Engine, EngineSettings
    from campaigns.render import Renderer, Sender
    from campaigns.segments import parse_segments
    from campaigns.templates import TemplateStore
    from campaigns.tokens import Tokens

    database_url, mail_url, root = sys.argv[1:4]
    segments = parse_segments("tiers:\\n  everyone: {when: true}\\n")
    renderer = Renderer(TemplateStore(Path(root) / "templates"), Tokens("fault-secret-0123456789", "https://cs.example.com"), Sender("cs@example.com"), domain="example.com")
    engine = Engine(make_sessionmaker(make_engine(database_url)), SystemClock(), lambda: segments, renderer, transport_from_url(mail_url),
                    EngineSettings(batch_size=100, lease=timedelta(seconds=3)))
    result = engine.tick()
    print("claimed", result.claimed, "sent", result.sent, flush=True)
    """
)


@pytest.mark.slow
def test_a_worker_killed_mid_send_loses_nothing_and_resends_only_what_was_in_flight(db, smtp_sink):
    n = 5000
    populate(db, n)
    command = [sys.executable, "-c", WORKER, db.url, smtp_sink.url, str(ROOT)]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(smtp_sink.messages) < 1500 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.02)
    assert first.poll() is None, f"the worker ended before the kill: {first.communicate()}"
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    with db.session() as s:
        in_flight = s.scalar(select(func.count()).select_from(Message).where(Message.status == MessageStatus.SENDING))
        sent_before = s.scalar(select(func.count()).select_from(Message).where(Message.status == MessageStatus.SENT))
    assert sent_before < n

    time.sleep(3.5)  # the killed worker's lease runs out; the next tick claims its batches
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr

    counts = delivered(smtp_sink)
    assert set(counts) == {f"r{i}@example.com" for i in range(n)}  # 0 lost
    duplicates = [to for to, c in counts.items() if c > 1]
    # What was in doubt at the kill is one send batch: marked "sending", not yet "sent".
    assert len(duplicates) <= in_flight <= EngineSettings().send_batch
    for address in duplicates:  # a resend keeps its Message-ID
        ids = {message_from_bytes(raw, policy=policy.default)["Message-ID"] for _, tos, raw in smtp_sink.messages if address in tos}
        assert len(ids) == 1
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Message).where(Message.status == MessageStatus.SENT)) == n


def test_flushing_redis_mid_journey_loses_nothing_after_the_next_tick(db, smtp_sink, monkeypatch):
    n = 50
    populate(db, n)
    redis = Redis.from_url(REDIS_URL)
    queue = Queue(f"faults-{uuid.uuid4().hex[:8]}", connection=redis)
    clock = FakeClock(datetime(2026, 11, 24, 1, tzinfo=UTC))
    engine = engine_for(db, smtp_sink, clock, batch_size=20, lease=timedelta(seconds=60))
    engine.enqueue = lambda ids: queue.enqueue(advance_with, ids)
    ENGINES["current"] = engine
    try:
        assert engine.tick().claimed == n
        assert queue.count == 3
        redis.flushdb()  # Redis loses every queued job
        assert queue.count == 0
        assert engine.tick().claimed == 0  # leases still held: nothing is claimed twice
        clock.advance(timedelta(seconds=61))
        assert engine.tick().claimed == n  # the leases ran out: the tick claims them again
        SimpleWorker([queue], connection=redis).work(burst=True)
    finally:
        ENGINES.clear()
        queue.delete(delete_jobs=True)
        engine.transport.close()
    assert delivered(smtp_sink) == Counter({f"r{i}@example.com": 1 for i in range(n)})


ENGINES: dict[str, Engine] = {}


def advance_with(ids: list[int]) -> int:
    """The job the flush test enqueues: advances with the test's engine (same process)."""
    return ENGINES["current"].advance(ids).sent


@pytest.mark.parametrize("reply", ["421 4.7.0 Try again later", "451 4.3.0 Local problem", "drop"])
def test_temporary_smtp_failures_are_retried_and_delivered_once(db, smtp_sink, reply):
    """The message is deferred with a backoff, then delivered once, with the same id."""
    populate(db, 1)
    smtp_sink.data_replies = [reply]
    clock = FakeClock(datetime(2026, 11, 24, 1, tzinfo=UTC))
    engine = engine_for(db, smtp_sink, clock)
    try:
        engine.tick()
        with db.session() as s:
            message = s.scalars(select(Message)).one()
            first_id = message.message_id
        assert smtp_sink.messages == []
        assert message.status == MessageStatus.DEFERRED and message.tries == 1
        assert message.not_before == clock.now() + timedelta(minutes=1)
        engine.tick()
        assert smtp_sink.messages == []  # the backoff holds
        clock.advance(timedelta(minutes=1))
        engine.tick()
    finally:
        engine.transport.close()
    assert smtp_sink.data_replies == []  # the failure really happened
    assert delivered(smtp_sink) == Counter({"r0@example.com": 1})
    assert message_from_bytes(smtp_sink.messages[0][2], policy=policy.default)["Message-ID"] == first_id
    with db.session() as s:
        assert s.scalars(select(Message.status)).one() == MessageStatus.SENT


def test_a_message_that_keeps_failing_gives_up_and_the_run_reports_it(db, smtp_sink):
    populate(db, 1)
    smtp_sink.data_replies = ["451 4.3.0 Local problem"] * 10
    clock = FakeClock(datetime(2026, 11, 24, 1, tzinfo=UTC))
    engine = engine_for(db, smtp_sink, clock)
    failed = 0
    try:
        for _ in range(8):
            failed += engine.tick().failed
            clock.advance(timedelta(hours=7))
    finally:
        engine.transport.close()
    with db.session() as s:
        message = s.scalars(select(Message)).one()
        assert message.status == MessageStatus.FAILED and message.tries == 6
        assert "451" in (message.error or "")
    assert failed == 1
