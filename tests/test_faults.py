"""Faults: a relay slower than the lease, a worker killed in the middle of a send, Redis
restarted or flushed, PostgreSQL restarted, an SMTP server answering 421/451 or dropping the
connection. Nothing is lost and nothing is sent twice without a crash; what a crash leaves in
doubt is only what was in flight, and it goes again under the same Message-ID."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import func, select

from campaigns.clock import FakeClock
from campaigns.engine.core import Engine
from campaigns.store.enums import MessageStatus
from campaigns.store.models import Enrollment, Message
from tests.cluster import (
    SEGMENTS,
    PrivatePostgres,
    PrivateRedis,
    Relay,
    Workers,
    claimed_by,
    seed,
    statuses,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent


def populate(db, n: int) -> None:
    seed(db.sessions, n)


def engine_for(build_engine, sink, clock, **settings) -> Engine:
    return build_engine(transport=sink, clock=clock, segments=SEGMENTS, settings=settings)


def delivered(sink) -> Counter[str]:
    return Counter(to for _, tos, _ in sink.messages for to in tos)


# ---------------------------------------------------------------------------- processes
#
# Real ``python worker.py`` processes (two of them, with their cron schedulers) against the
# test's database, a Redis server of the test's own and the SMTP sink; the settings are
# shortened so that leases run out and jobs hit their budgets within seconds.


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.close()


@pytest.fixture
def workers_for(private_redis, smtp_sink):
    made: list[Workers] = []

    def make(database_url: str, **settings: object) -> Workers:
        workers = Workers(
            database_url, private_redis.url, smtp_sink.url, {k: str(v) for k, v in settings.items()}
        )
        made.append(workers)
        return workers

    yield make
    for workers in made:
        workers.close()


def everyone_once(sink, addresses: list[str], timeout: float, workers: Workers) -> Counter[str]:
    """Wait until every address got its message, then a little longer for any extra copy."""
    try:
        wait_until(
            lambda: set(addresses) <= set(delivered(sink)), timeout, f"{len(addresses)} recipients"
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; {len(set(delivered(sink)))} got theirs\n{workers.log()}"
        ) from None
    time.sleep(1.0)
    return delivered(sink)


def in_doubt_of(db, owner: str) -> int:
    """Messages marked "sending" on the rows ``owner`` holds: what its death leaves in doubt."""
    with db.session() as s:
        query = (
            select(func.count())
            .select_from(Message)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
        )
        return int(
            s.scalar(
                query.where(Enrollment.claimed_by == owner, Message.status == MessageStatus.SENDING)
            )
            or 0
        )


@pytest.mark.slow
def test_a_relay_slower_than_the_lease_and_the_job_timeout_sends_every_message_once(
    db, smtp_sink, workers_for
):
    """Each message takes the relay 2.5 s, longer than the whole 2 s lease; a job may run 8 s.
    The heartbeat holds the lease through every send, each job stops before a send that would
    not end in its budget and hands over: nobody gets a second copy, and no job times out."""
    addresses = seed(db.sessions, 8)
    smtp_sink.delay = 2.5
    workers = workers_for(db.url, LEASE_SECONDS=2, JOB_TIMEOUT=8, SEND_BATCH=4)
    workers.start(2)
    counts = everyone_once(smtp_sink, addresses, 120, workers)
    assert counts == Counter({address: 1 for address in addresses}), workers.log()
    assert statuses(db.sessions) == Counter({MessageStatus.SENT: len(addresses)})
    log = workers.log()
    assert "exceeded maximum timeout" not in log and "LeaseLost" not in log, log
    assert len(workers.alive()) == 2


@pytest.mark.slow
def test_a_killed_worker_is_taken_over_within_the_lease_and_only_its_in_flight_batch_is_resent(
    db, smtp_sink, workers_for
):
    lease, batch = 3, 25
    addresses = seed(db.sessions, 400)
    smtp_sink.delay = 0.01
    workers = workers_for(db.url, LEASE_SECONDS=lease, SEND_BATCH=batch)
    first, second = workers.start(2)
    owners = {workers.owner(first): first, workers.owner(second): second}

    def sending_owner() -> str | None:
        with db.session() as s:
            held = set(
                s.scalars(select(Enrollment.claimed_by).where(Enrollment.claimed_by.in_(owners)))
            )
        return next((owner for owner in held if in_doubt_of(db, owner)), None)

    wait_until(
        lambda: len(smtp_sink.messages) >= 80 and sending_owner() is not None,
        120,
        "a worker in the middle of a send",
    )
    victim = sending_owner()
    assert victim is not None
    workers.kill(owners[victim])
    in_doubt = in_doubt_of(db, victim)
    recovery = wait_until(
        lambda: claimed_by(db.sessions, victim) == 0,
        60,
        "the dead worker's claims to be taken over",
    )
    counts = everyone_once(smtp_sink, addresses, 120, workers)

    assert recovery <= lease + 10, (
        f"taken over {recovery:.1f} s after the kill"
    )  # the lease, and a beat of the survivor's claiming
    assert set(counts) == set(addresses)  # 0 lost
    extra = [address for address, n in counts.items() if n > 1]
    assert len(extra) <= in_doubt <= batch  # at most what was in flight
    ids = Relay(smtp_sink.messages).ids_by_recipient()
    assert all(len(set(ids[address])) == 1 for address in extra)  # resent under the same Message-ID
    assert statuses(db.sessions) == Counter({MessageStatus.SENT: len(addresses)})
    assert workers.alive() == [owners[o] for o in owners if o != victim]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["restart", "flush"])
def test_workers_outlive_a_redis_restart_or_flush_and_lose_nothing(
    db, smtp_sink, workers_for, private_redis, fault
):
    """Redis only carries work: after it restarts empty (or is flushed) the workers connect
    again, the scheduler asks for jobs again, and every message goes once."""
    addresses = seed(db.sessions, 300)
    smtp_sink.delay = 0.02
    workers = workers_for(db.url, LEASE_SECONDS=3, SEND_BATCH=25)
    workers.start(2)
    wait_until(lambda: len(smtp_sink.messages) >= 60, 120, "the first sends")
    if fault == "restart":
        private_redis.restart(down=1.0)
    else:
        Redis.from_url(private_redis.url).flushall()
    counts = everyone_once(smtp_sink, addresses, 120, workers)
    assert counts == Counter({address: 1 for address in addresses}), workers.log()
    assert len(workers.alive()) == 2, workers.log()
    log = workers.log()
    assert "Traceback" not in log, log
    if fault == "restart":
        assert "lost Redis" in log


@pytest.mark.slow
def test_workers_outlive_a_postgresql_restart_and_resend_at_most_their_in_flight_batches(
    smtp_sink, workers_for
):
    """A PostgreSQL cluster of the test's own goes down for 5 s in the middle of the send,
    dropping every connection. Jobs fail and are retried; the workers stay up; each worker's
    in-flight batch is all that may go twice, under the same Message-IDs."""
    from campaigns.store.db import make_engine, make_sessionmaker, migrate

    batch = 25
    server = PrivatePostgres()
    try:
        server.start()
        database = make_engine(server.url)
        migrate(database)
        sessions = make_sessionmaker(database)
        addresses = seed(sessions, 400)
        smtp_sink.delay = 0.01
        workers = workers_for(server.url, LEASE_SECONDS=3, SEND_BATCH=batch)
        workers.start(2)
        wait_until(lambda: len(smtp_sink.messages) >= 80, 120, "the first sends")
        database.dispose()
        server.restart(down=5.0)
        back = time.monotonic()
        counts = everyone_once(smtp_sink, addresses, 180, workers)
        finished = time.monotonic() - back
        assert set(counts) == set(addresses)
        extra = [address for address, n in counts.items() if n > 1]
        assert len(extra) <= 2 * batch, extra
        ids = Relay(smtp_sink.messages).ids_by_recipient()
        assert all(len(set(ids[address])) == 1 for address in extra)
        assert statuses(sessions) == Counter({MessageStatus.SENT: len(addresses)})
        assert len(workers.alive()) == 2, workers.log()
        assert finished < 90, f"{finished:.0f} s after the database came back"
        database.dispose()
    finally:
        server.close()


@pytest.mark.parametrize("reply", ["421 4.7.0 Try again later", "451 4.3.0 Local problem", "drop"])
def test_temporary_smtp_failures_are_retried_and_delivered_once(db, smtp_sink, reply, build_engine):
    """The message is deferred with a backoff, then delivered once, with the same id."""
    populate(db, 1)
    smtp_sink.data_replies = [reply]
    clock = FakeClock(datetime(2026, 11, 24, 1, tzinfo=UTC))
    engine = engine_for(build_engine, smtp_sink, clock)
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
    assert smtp_sink.data_replies == []  # the failure really happened
    assert delivered(smtp_sink) == Counter({"r0@example.com": 1})
    assert (
        message_from_bytes(smtp_sink.messages[0][2], policy=policy.default)["Message-ID"]
        == first_id
    )
    with db.session() as s:
        assert s.scalars(select(Message.status)).one() == MessageStatus.SENT


def test_a_message_that_keeps_failing_gives_up_and_the_run_reports_it(db, smtp_sink, build_engine):
    populate(db, 1)
    smtp_sink.data_replies = ["451 4.3.0 Local problem"] * 10
    clock = FakeClock(datetime(2026, 11, 24, 1, tzinfo=UTC))
    engine = engine_for(build_engine, smtp_sink, clock)
    failed = 0
    for _ in range(8):
        failed += engine.tick().failed
        clock.advance(timedelta(hours=7))
    with db.session() as s:
        message = s.scalars(select(Message)).one()
        assert message.status == MessageStatus.FAILED and message.tries == 6
        assert "451" in (message.error or "")
    assert failed == 1
