"""Leases held while they work: a claim's fencing token is checked at every commit and before
every send, renewed by a heartbeat; a batch that lost its lease, ran out of time or was
interrupted stops, and nothing is sent twice without a crash. In-process, on SQLite and
PostgreSQL; the process-level faults are in test_faults.py."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from rq.timeouts import JobTimeoutException
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from campaigns.channels.transports import transport_from_url
from campaigns.clock import FakeClock, SystemClock
from campaigns.engine import leases
from campaigns.engine.core import Engine, EngineSettings
from campaigns.engine.leases import Lease, LeaseLost
from campaigns.store.enums import EnrollmentState, MessageStatus
from campaigns.store.models import Enrollment, Message
from tests.cluster import SEGMENTS, seed

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 24, 1, tzinfo=UTC)


class Hooked:
    """The SMTP transport, with a hook run before each send (to move the clock, take the
    lease away, or blow up as RQ's timeout would)."""

    def __init__(self, inner, before) -> None:
        self.inner, self.before, self.calls = inner, before, 0

    def send(self, mail) -> None:
        self.calls += 1
        self.before(self.calls, mail)
        self.inner.send(mail)

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()


def make_engine(build_engine, transport, clock, **settings) -> Engine:
    settings.setdefault("frequency_cap", 0)
    return build_engine(transport=transport, clock=clock, segments=SEGMENTS, settings=settings)


def enrolled(db, build_engine, n: int, clock) -> Engine:
    seed(db.sessions, n)
    engine = make_engine(build_engine, None, clock)
    engine.dispatch = lambda wanted: 0  # enrol only: the test runs the work itself
    engine.tick()
    return engine


def copies(sink) -> Counter[str]:
    return Counter(to for _, tos, _ in sink.messages for to in tos)


def message_ids(sink, address: str) -> set[str]:
    return {
        str(message_from_bytes(raw, policy=policy.default)["Message-ID"])
        for _, tos, raw in sink.messages
        if address in tos
    }


def count(db, *where) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Enrollment).where(*where)) or 0)


def test_a_claim_stamps_owner_token_and_expiry_and_a_second_claim_takes_other_rows(
    db, build_engine
):
    clock = FakeClock(START)
    engine = enrolled(db, build_engine, 5, clock)
    first = leases.claim(db.sessions, clock, "w1", limit=3, duration=timedelta(seconds=30))
    second = leases.claim(db.sessions, clock, "w2", limit=3, duration=timedelta(seconds=30))
    assert first is not None and second is not None
    assert len(first.ids) == 3 and len(second.ids) == 2 and not set(first.ids) & set(second.ids)
    assert first.token != second.token
    with db.session() as s:
        rows = {e.id: e for e in s.scalars(select(Enrollment))}
    assert {rows[i].claimed_by for i in first.ids} == {"w1"} and {
        rows[i].lease_token for i in first.ids
    } == {first.token}
    assert {rows[i].claimed_until for i in second.ids} == {START + timedelta(seconds=30)}
    assert {rows[i].unfinished_runs for i in rows} == {1}
    assert leases.claim(db.sessions, clock, "w3", limit=3, duration=timedelta(seconds=30)) is None
    assert engine.claim() is None


def test_a_commit_after_the_lease_was_taken_over_is_refused_and_writes_nothing(db, build_engine):
    clock = FakeClock(START)
    enrolled(db, build_engine, 2, clock)
    stale = leases.claim(db.sessions, clock, "slow", limit=10, duration=timedelta(seconds=30))
    assert stale is not None
    clock.advance(timedelta(seconds=31))  # the lease ran out while its holder was away
    fresh = leases.claim(db.sessions, clock, "other", limit=10, duration=timedelta(seconds=30))
    assert fresh is not None and set(fresh.ids) <= set(stale.ids)
    with db.session() as session, stale.fence(session):
        row = session.get(Enrollment, stale.ids[0])
        row.current_step = "written-by-the-stale-holder"
        with pytest.raises(LeaseLost):
            session.commit()
        session.rollback()
    assert stale.lost and not stale.valid()
    with db.session() as s:
        assert s.get(Enrollment, stale.ids[0]).current_step == "hello"
        assert s.get(Enrollment, stale.ids[0]).claimed_by == "other"


def test_an_expired_lease_nobody_took_writes_nothing_either(db, build_engine):
    clock = FakeClock(START)
    enrolled(db, build_engine, 1, clock)
    lease = leases.claim(db.sessions, clock, "w", limit=10, duration=timedelta(seconds=30))
    assert lease is not None
    clock.advance(timedelta(seconds=30))
    with db.session() as session, lease.fence(session):
        session.get(Enrollment, lease.ids[0]).current_step = "late"
        with pytest.raises(LeaseLost):
            session.commit()


def test_a_commit_checks_the_lease_a_beat_renews_it_and_a_release_ends_the_run(db, build_engine):
    clock = FakeClock(START)
    enrolled(db, build_engine, 2, clock)
    lease = leases.claim(db.sessions, clock, "w", limit=10, duration=timedelta(seconds=30))
    assert lease is not None
    clock.advance(timedelta(seconds=20))
    with db.session() as session, lease.fence(session):
        session.commit()  # checked (and on SQLite renewed) in the commit
        assert lease.renew() and lease.until == START + timedelta(seconds=50)
        lease.release(lease.ids[:1])
        session.commit()
    assert lease.held() == set(lease.ids[1:])
    with db.session() as s:
        released = s.get(Enrollment, lease.ids[0])
        kept = s.get(Enrollment, lease.ids[1])
    assert (
        released.claimed_by,
        released.lease_token,
        released.claimed_until,
        released.unfinished_runs,
    ) == (None, None, None, 0)
    assert kept.claimed_until == START + timedelta(seconds=50) and kept.unfinished_runs == 1


def test_a_batch_that_loses_its_lease_stops_before_its_next_send(db, smtp_sink, build_engine):
    """The holder is cut off (its renewals fail) while the relay is slow: once its last
    renewal no longer covers a third of the lease, it sends nothing more. Another worker
    takes the rows over and sends the rest: everyone gets exactly one copy."""
    clock = FakeClock(START)
    engine = enrolled(db, build_engine, 6, clock)

    def slow_and_cut_off(call: int, mail) -> None:
        if call == 2:
            clock.advance(timedelta(seconds=25))  # 25 s into a 30 s lease, no renewal came

    engine.transport = Hooked(transport_from_url(smtp_sink.url), slow_and_cut_off)
    engine.settings = EngineSettings(frequency_cap=0, heartbeat=False, worker_id="cut-off")
    first = engine.work()
    assert first.stopped and first.sent == 2  # the second send went; the third did not start
    assert engine.transport.calls == 2
    with db.session() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.status == MessageStatus.SENDING)
            )
            == 0
        )  # the rest back to pending
        assert (
            s.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.status == MessageStatus.PENDING)
            )
            == 4
        )
    other = make_engine(build_engine, transport_from_url(smtp_sink.url), clock, worker_id="other")
    assert other.work().sent == 4
    engine.transport.close()
    other.transport.close()
    assert copies(smtp_sink) == Counter({f"r{i}@example.com": 1 for i in range(6)})


def test_a_takeover_between_sends_stops_the_old_holder_at_its_next_commit(
    db, smtp_sink, build_engine
):
    """The old holder's lease runs out and another worker claims the rows while the old one
    is between sends: its next commit is refused, so it neither records nor sends more."""
    clock = FakeClock(START)
    engine = enrolled(db, build_engine, 4, clock)
    taken: list[Lease] = []

    def taken_over(call: int, mail) -> None:
        if call == 2:
            clock.advance(timedelta(seconds=31))
            lease = leases.claim(
                db.sessions, clock, "thief", limit=10, duration=timedelta(seconds=30)
            )
            assert lease is not None
            taken.append(lease)

    engine.transport = Hooked(transport_from_url(smtp_sink.url), taken_over)
    engine.settings = EngineSettings(frequency_cap=0, heartbeat=False)
    with pytest.raises(LeaseLost):
        engine.work()
    engine.transport.close()
    assert engine.transport.calls == 2  # the old holder stopped right after the send in hand
    assert len(taken) == 1 and taken[0].suspect  # rows whose run did not finish go one at a time
    with db.session() as s:
        assert s.get(Enrollment, taken[0].ids[0]).claimed_by == "thief"
        # After the refusal it records only what the relay took, and only on rows still its own.
        sent = set(
            s.scalars(select(Message.enrollment_id).where(Message.status == MessageStatus.SENT))
        )
        assert len(sent) <= 1 and taken[0].ids[0] not in sent


def test_a_job_timeout_is_not_caught_and_only_the_message_in_flight_is_resent(
    db, smtp_sink, build_engine
):
    """RQ's timeout lands in the middle of the third send. The engine does not retry the
    batch one enrollment at a time (which would resend); it records the two sends the relay
    took, hands the rows back at once, and the next run resends only the interrupted one,
    under its Message-ID."""
    clock = FakeClock(START)
    engine = enrolled(db, build_engine, 5, clock)
    interrupted: list[str] = []

    def timeout_on_third(call: int, mail) -> None:
        if call == 3:
            engine.transport.inner.send(mail)  # the relay has it...
            interrupted.append(mail.to)
            raise JobTimeoutException(
                "Task exceeded maximum timeout value (8 seconds)"
            )  # ...the job dies before hearing so

    engine.transport = Hooked(transport_from_url(smtp_sink.url), timeout_on_third)
    with pytest.raises(JobTimeoutException):
        engine.work()
    with db.session() as s:
        status = Counter(s.scalars(select(Message.status)))
        assert (
            status[MessageStatus.SENT] == 2 and status[MessageStatus.SENDING] == 3
        )  # the relay's two are recorded
        assert (
            s.scalar(
                select(func.count())
                .select_from(Enrollment)
                .where(Enrollment.state == EnrollmentState.FAILED)
            )
            == 0
        )
    again = make_engine(build_engine, transport_from_url(smtp_sink.url), clock)
    result = again.work()
    again.transport.close()
    assert (
        result.claims == 1 and result.advanced == 5
    )  # the five whose run did not finish: taken over at once, run one at a time
    counts = copies(smtp_sink)
    assert set(counts) == {f"r{i}@example.com" for i in range(5)}
    assert [to for to, n in counts.items() if n > 1] == interrupted
    assert len(message_ids(smtp_sink, interrupted[0])) == 1  # the same Message-ID both times


def test_an_outage_in_the_middle_of_a_batch_fails_no_enrollment(db, smtp_sink, build_engine):
    clock = FakeClock(START)
    engine = enrolled(db, build_engine, 4, clock)

    def database_gone(call: int, mail) -> None:
        if call == 2:
            raise OperationalError(
                "SELECT 1", {}, Exception("server closed the connection unexpectedly")
            )

    engine.transport = Hooked(transport_from_url(smtp_sink.url), database_gone)
    with pytest.raises(OperationalError):
        engine.work()
    engine.transport.close()
    assert count(db, Enrollment.state == EnrollmentState.FAILED) == 0
    again = make_engine(build_engine, transport_from_url(smtp_sink.url), clock)
    again.work()
    again.transport.close()
    assert copies(smtp_sink) == Counter({f"r{i}@example.com": 1 for i in range(4)})


def test_the_heartbeat_holds_the_lease_through_a_send_slower_than_the_lease(
    db, smtp_sink, build_engine
):
    """Real time: a 1 s lease, a relay taking 1.5 s per message. While the holder works, a
    second worker trying to claim gets nothing, and every message goes once."""
    clock = SystemClock()
    engine = enrolled(db, build_engine, 3, clock)
    engine.settings = EngineSettings(frequency_cap=0, lease=timedelta(seconds=1))
    rival_claims: list[int] = []

    def slow(call: int, mail) -> None:
        time.sleep(1.5)
        lease = leases.claim(db.sessions, clock, "rival", limit=10, duration=timedelta(seconds=1))
        rival_claims.append(len(lease.ids) if lease else 0)

    engine.transport = Hooked(transport_from_url(smtp_sink.url), slow)
    result = engine.work()
    engine.transport.close()
    assert result.sent == 3 and not result.stopped
    assert rival_claims == [0, 0, 0]
    assert copies(smtp_sink) == Counter({f"r{i}@example.com": 1 for i in range(3)})


def test_a_batch_stops_before_a_send_that_would_pass_the_jobs_deadline(db, smtp_sink, build_engine):
    """A job has a time budget: the batch stops before a send expected to end after it,
    puts what it did not send back to pending, and the next job sends the rest once."""
    clock = FakeClock(START)
    engine = enrolled(db, build_engine, 6, clock)
    engine.transport = Hooked(transport_from_url(smtp_sink.url), lambda call, mail: time.sleep(0.3))
    engine.settings = EngineSettings(frequency_cap=0, heartbeat=False)
    result = engine.work(deadline=time.monotonic() + 1.0)
    assert result.more and result.stopped
    assert (
        1 <= result.sent <= 3
    )  # 0.3 s each, expected at twice the slowest: stops with time to spare
    assert count(db, Enrollment.claimed_until.is_not(None)) == 0  # all released for the next job
    rest = engine.work()
    engine.transport.close()
    assert result.sent + rest.sent == 6 and not rest.more
    assert copies(smtp_sink) == Counter({f"r{i}@example.com": 1 for i in range(6)})


def test_an_enrollment_that_kills_its_worker_every_time_is_failed_after_three_runs(
    db, smtp_sink, build_engine
):
    """Each run dies without releasing (as a worker killed by it would): the row is run
    alone after its lease runs out, and after three unfinished runs it is failed, not run
    again. The others go on."""
    clock = FakeClock(START)
    enrolled(db, build_engine, 3, clock)
    with db.session() as s, s.begin():
        poison = s.scalars(select(Enrollment.id).order_by(Enrollment.id)).first()
        s.execute(
            update(Enrollment)
            .where(Enrollment.id == poison)
            .values(
                unfinished_runs=3,
                claimed_until=START - timedelta(seconds=1),
                lease_token=1,
                claimed_by="dead",
            )
        )
    engine = make_engine(build_engine, transport_from_url(smtp_sink.url), clock)
    engine.work()
    engine.transport.close()
    with db.session() as s:
        row = s.get(Enrollment, poison)
        assert row.state == EnrollmentState.FAILED and "3 runs in a row" in row.error
        assert row.claimed_by is None
    assert sorted(copies(smtp_sink)) == ["r1@example.com", "r2@example.com"]


def test_rows_whose_run_did_not_finish_are_taken_over_first_and_run_one_at_a_time(
    db, smtp_sink, build_engine
):
    """A dead worker's rows are claimed as soon as their lease ran out, before free rows, and
    run one at a time: each run counted on its own, each released when it finished."""
    clock = FakeClock(START)
    enrolled(db, build_engine, 4, clock)
    with db.session() as s, s.begin():
        ids = list(s.scalars(select(Enrollment.id).order_by(Enrollment.id)))
        s.execute(
            update(Enrollment)
            .where(Enrollment.id.in_(ids[2:]))
            .values(
                unfinished_runs=1,
                claimed_until=START - timedelta(seconds=1),
                lease_token=7,
                claimed_by="dead",
            )
        )
    first = leases.claim(db.sessions, clock, "w", limit=10, duration=timedelta(seconds=30))
    second = leases.claim(db.sessions, clock, "w", limit=10, duration=timedelta(seconds=30))
    assert first and second
    assert (first.suspect, first.ids) == (True, ids[2:])
    assert (second.suspect, second.ids) == (False, ids[:2])
    with db.session() as s:
        assert [s.get(Enrollment, i).unfinished_runs for i in ids] == [
            1,
            1,
            1,
            1,
        ]  # a suspect claim counts no run yet
    engine = make_engine(build_engine, transport_from_url(smtp_sink.url), clock)
    seen: list[list[int]] = []

    def runs_of_the_others(
        call: int, mail
    ) -> None:  # while one runs alone, the other's count is untouched
        with db.session() as s:
            seen.append(sorted(s.get(Enrollment, i).unfinished_runs for i in ids[2:]))

    engine.transport = Hooked(engine.transport, runs_of_the_others)
    result = engine.advance(first)
    engine.transport.close()
    assert result.sent == 2 and seen == [
        [1, 2],
        [0, 2],
    ]  # the one running alone is at 2; the other waits at 1, or is done (0)
    with db.session() as s:
        assert [
            (s.get(Enrollment, i).unfinished_runs, s.get(Enrollment, i).claimed_by) for i in ids[2:]
        ] == [(0, None), (0, None)]


def test_the_heartbeat_notices_a_takeover_and_the_batch_sends_nothing_more(db, build_engine):
    clock = FakeClock(START)
    enrolled(db, build_engine, 1, clock)
    lease = leases.claim(db.sessions, clock, "w", limit=10, duration=timedelta(seconds=30))
    assert lease is not None
    assert lease.renew() and lease.valid()
    with db.session() as s, s.begin():
        s.execute(update(Enrollment).values(lease_token=999))
    assert not lease.renew()
    assert lease.lost and not lease.valid()


def test_a_renewal_racing_the_batchs_release_is_not_mistaken_for_a_lost_lease(db, build_engine):
    """The heartbeat renews from its own thread while the batch commits its release; rows the
    batch released meanwhile are not missed."""
    clock = FakeClock(START)
    enrolled(db, build_engine, 40, clock)
    lease = leases.claim(db.sessions, clock, "w", limit=40, duration=timedelta(seconds=30))
    assert lease is not None
    stop = threading.Event()
    results: list[bool] = []

    def beat() -> None:
        while not stop.is_set():
            results.append(lease.renew())

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        for start in range(0, 40, 4):
            with db.session() as session, lease.fence(session):
                lease.release(lease.ids[start : start + 4])
                session.commit()
    finally:
        stop.set()
        thread.join()
    assert results and all(results) and not lease.lost
    assert count(db, Enrollment.claimed_by.is_not(None)) == 0
