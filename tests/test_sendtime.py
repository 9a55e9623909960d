"""Send time: a ``send_time: best_hour`` step learns per segment the recipient-local hour
with the best human response and sends at it, inside the sending window.

Pure choices from hand-counted hours first (rankings, time zones, window clipping, the 24-hour
limit, daylight saving); then the counting on SQLite and PostgreSQL (the stats by hour of
sending in the recipient's zone, exact through reclassification); then the engine, where a
population that clicks mostly what reaches it at 10:00 in Tokyo has its later sends held
until 10:00 Tokyo time."""

from __future__ import annotations

import random
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns.clock import FakeClock
from campaigns.engine.core import Engine
from campaigns.engine.deploy import deploy
from campaigns.insight import sendtime, stats
from campaigns.insight.rates import Rate, wilson
from campaigns.insight.sendtime import SendTimes, decide, hour_counts, next_slot, ranking
from campaigns.journeys.model import SendingWindow
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.segments import parse_segments
from campaigns.store.enums import MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, Message, Stat
from campaigns.tracking.hits import Hit, write_hits
from tests.kit import LINKS

ROOT = Path(__file__).resolve().parent.parent
TOKYO = "Asia/Tokyo"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)
# Tuesday 2026-11-24 15:00 in Tokyo (06:00 UTC).
TUESDAY_3PM_TOKYO = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
OFFICE_HOURS = SendingWindow(
    days=(0, 1, 2, 3, 4),
    start=datetime.strptime("09:00", "%H:%M").time(),
    end=datetime.strptime("18:00", "%H:%M").time(),
    time_zone="contact",
)

# Hand-counted sends and clicks per Tokyo hour. Wilson 95% lower bounds:
#   03:00  5 of 10  -> 0.2366 (but under 50 sends: not considered)
#   09:00 10 of 100 -> 0.0552
#   10:00 30 of 100 -> 0.2189
#   14:00 12 of 60  -> 0.1183
HOURS = {3: Rate(5, 10), 9: Rate(10, 100), 10: Rate(30, 100), 14: Rate(12, 60)}


@pytest.fixture
def server_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's own time zone set to New York: nothing may depend on it."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# ---------------------------------------------------------------------------- choosing, pure


def test_hours_rank_by_the_wilson_lower_bound_of_hours_with_enough_sends():
    assert wilson(5, 10)[0] > wilson(30, 100)[0]  # the lucky small hour would win if it counted
    assert ranking(HOURS) == (10, 14, 9)
    assert ranking(HOURS, min_n=1) == (3, 10, 14, 9)
    assert ranking({}) == () and ranking({10: Rate(30, 49)}) == ()
    assert ranking({14: Rate(20, 100), 9: Rate(20, 100)}) == (9, 14)  # a tie: the earlier hour


def test_a_message_that_could_go_at_3pm_in_tokyo_waits_for_10am_tokyo_time_on_a_utc_clock(
    server_zone,
):
    timing = decide(
        HOURS,
        ranking(HOURS),
        base=TUESDAY_3PM_TOKYO,
        window=OFFICE_HOURS,
        time_zone=TOKYO,
        segment="renewal_90",
        goal="clicked",
    )
    assert timing.at == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # Wednesday 10:00 in Tokyo
    assert (timing.hour, timing.basis) == (10, "learned")
    assert (
        timing.why
        == "sent at 10:00 Asia/Tokyo: 10:00 is the best hour learned for segment renewal_90 (30 "
        "clicked of 100 sent then, 95% lower bound 21.9%)"
    )
    record = timing.record("renewal_90", TOKYO)
    assert record == {
        "at": "2026-11-25T01:00:00+00:00",
        "hour": 10,
        "time_zone": TOKYO,
        "segment": "renewal_90",
        "basis": "learned",
        "why": timing.why,
    }


def test_the_same_hours_mean_other_moments_for_a_contact_in_another_zone():
    timing = decide(
        HOURS,
        ranking(HOURS),
        base=TUESDAY_3PM_TOKYO,
        window=None,
        time_zone="Europe/London",
        segment="s",
        goal="clicked",
    )
    assert timing.at == datetime(
        2026, 11, 24, 10, 0, tzinfo=UTC
    )  # 10:00 in London (GMT) the same day


def test_inside_the_best_hour_it_goes_at_once():
    base = datetime(2026, 11, 24, 1, 20, tzinfo=UTC)  # 10:20 in Tokyo
    timing = decide(
        HOURS,
        ranking(HOURS),
        base=base,
        window=OFFICE_HOURS,
        time_zone=TOKYO,
        segment="s",
        goal="clicked",
    )
    assert (timing.at, timing.hour) == (base, 10)
    assert timing.why.startswith("sent at 10:20 Asia/Tokyo: 10:00 is the best hour")


def test_a_best_hour_outside_the_window_gives_way_to_the_best_hour_inside_it():
    hours = {
        7: Rate(40, 100),
        10: Rate(20, 100),
        14: Rate(10, 100),
    }  # 7 a.m. is best, but the window opens at 9
    timing = decide(
        hours,
        ranking(hours),
        base=TUESDAY_3PM_TOKYO,
        window=OFFICE_HOURS,
        time_zone=TOKYO,
        segment="s",
        goal="clicked",
    )
    assert (timing.at, timing.hour) == (datetime(2026, 11, 25, 1, 0, tzinfo=UTC), 10)
    assert (
        "07:00 ranks higher but the sending window does not open then within 24 hours" in timing.why
    )


def test_a_window_in_a_fixed_zone_clips_the_recipients_hours():
    # The window is 00:00-03:00 UTC, i.e. 09:00-12:00 in Tokyo: the best Tokyo hour, 14:00, is
    # outside.
    window = SendingWindow(
        start=datetime.strptime("00:00", "%H:%M").time(),
        end=datetime.strptime("03:00", "%H:%M").time(),
        time_zone="UTC",
    )
    hours = {**HOURS, 14: Rate(60, 100)}
    timing = decide(
        hours,
        ranking(hours),
        base=TUESDAY_3PM_TOKYO,
        window=window,
        time_zone=TOKYO,
        segment="s",
        goal="clicked",
    )
    assert (timing.at, timing.hour) == (datetime(2026, 11, 25, 1, 0, tzinfo=UTC), 10)


def test_a_window_opening_inside_the_hour_sends_when_it_opens():
    window = SendingWindow(
        start=datetime.strptime("10:30", "%H:%M").time(),
        end=datetime.strptime("18:00", "%H:%M").time(),
    )
    assert next_slot(10, TUESDAY_3PM_TOKYO, window, TOKYO) == datetime(
        2026, 11, 25, 1, 30, tzinfo=UTC
    )


def test_no_wait_beyond_24_hours_friday_afternoon_goes_at_once_monday_morning_waits_an_hour():
    friday_3pm = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    timing = decide(
        HOURS,
        ranking(HOURS),
        base=friday_3pm,
        window=OFFICE_HOURS,
        time_zone=TOKYO,
        segment="s",
        goal="clicked",
    )
    assert (timing.at, timing.hour, timing.basis) == (
        friday_3pm,
        None,
        "outside_window",
    )  # Monday 10:00 is 67 hours away
    monday_9am = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # where the window holds a weekend send
    timing = decide(
        HOURS,
        ranking(HOURS),
        base=monday_9am,
        window=OFFICE_HOURS,
        time_zone=TOKYO,
        segment="s",
        goal="clicked",
    )
    assert (timing.at, timing.hour) == (monday_9am + timedelta(hours=1), 10)


def test_without_two_measured_hours_nothing_waits():
    for hours in ({}, {10: Rate(30, 100)}, {10: Rate(30, 100), 11: Rate(30, 49)}):
        timing = decide(
            hours,
            ranking(hours),
            base=TUESDAY_3PM_TOKYO,
            window=OFFICE_HOURS,
            time_zone=TOKYO,
            segment="東京",
            goal="clicked",
        )
        assert (timing.at, timing.hour, timing.basis) == (TUESDAY_3PM_TOKYO, None, "learning"), (
            hours
        )
        assert "segment 東京 has fewer than 2 hours with 50 sends" in timing.why
    silent = {10: Rate(0, 100), 14: Rate(0, 60)}  # measured, but nobody clicked: no hour is better
    timing = decide(
        silent,
        ranking(silent),
        base=TUESDAY_3PM_TOKYO,
        window=OFFICE_HOURS,
        time_zone=TOKYO,
        segment="s",
        goal="clicked",
    )
    assert (timing.at, timing.basis, timing.why) == (
        TUESDAY_3PM_TOKYO,
        "learning",
        "sent without waiting: segment s has not clicked anything sent in its measured hours yet",
    )


def test_an_exploring_send_goes_at_once():
    timing = decide(
        HOURS,
        ranking(HOURS),
        base=TUESDAY_3PM_TOKYO,
        window=OFFICE_HOURS,
        time_zone=TOKYO,
        segment="s",
        goal="clicked",
        explore=True,
    )
    assert (timing.at, timing.basis) == (TUESDAY_3PM_TOKYO, "exploring")


def test_daylight_saving_a_skipped_hour_is_taken_the_next_day():
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT, so 02:00 does not happen that day.
    base = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # 01:30 EST
    assert next_slot(2, base, None, "America/New_York") == datetime(
        2026, 3, 9, 6, 0, tzinfo=UTC
    )  # 02:00 EDT the next day
    assert next_slot(3, base, None, "America/New_York") == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC
    )  # 03:00 EDT, half an hour later


def test_an_unknown_time_zone_is_read_as_utc():
    assert next_slot(10, TUESDAY_3PM_TOKYO, None, "Mars/Olympus") == datetime(
        2026, 11, 24, 10, 0, tzinfo=UTC
    )
    assert (
        sendtime.local_hour(TUESDAY_3PM_TOKYO, TOKYO) == 15
        and sendtime.local_hour(TUESDAY_3PM_TOKYO, None) == 6
    )


# ---------------------------------------------------------------------------- counts and cache
# (database)


def test_the_choice_reads_the_segments_hour_counts_once_per_refresh(db):
    day = date(2026, 11, 20)
    rows: Counter = Counter()
    for hour, rate in HOURS.items():
        for variant in ("a", "b"):  # summed over variants and tiers
            rows[(1, "hello", "email", variant, "東京チーム", "", day, f"sent@{hour:02d}")] += (
                rate.n // 2
            )
            rows[(1, "hello", "email", variant, "東京チーム", "", day, f"clicked@{hour:02d}")] += (
                rate.hits // 2 + (rate.hits % 2 if variant == "a" else 0)
            )
    rows[(1, "hello", "email", "", "大阪チーム", "", day, "sent@07")] += 500  # another segment
    rows[(1, "hello", "email", "", "東京チーム", "", day - timedelta(days=120), "sent@07")] += (
        500  # too old
    )
    rows[(1, "hello", "email", "", "東京チーム", "", day, "answered@07")] += 50  # not the goal
    with db.session() as s, s.begin():
        stats.add(s, rows)
    now = TUESDAY_3PM_TOKYO
    with db.session() as s:
        assert (
            hour_counts(s, 1, "hello", "東京チーム", "clicked", (now - sendtime.HISTORY).date())
            == HOURS
        )
    ticks = [0.0]
    times = SendTimes(clock=lambda: ticks[0], explore=0.0)

    def choose() -> sendtime.Timing:
        with db.session() as s:
            return times.choose(
                s,
                journey_id=1,
                step_id="hello",
                segment="東京チーム",
                goal="clicked",
                base=now,
                window=OFFICE_HOURS,
                time_zone=TOKYO,
                now=now,
            )

    assert choose().hour == 10
    with db.session() as s, s.begin():  # 14:00 turns out far better...
        stats.add(s, Counter({(1, "hello", "email", "", "東京チーム", "", day, "clicked@14"): 48}))
    ticks[0] = sendtime.REFRESH - 1
    assert choose().hour == 10  # ...but the counts are read again only after the refresh
    ticks[0] = sendtime.REFRESH
    assert choose().hour == 14
    # One send in ten (drawn) goes at once all the same, to keep measuring the other hours.
    exploring = SendTimes(rng=random.Random(3))
    with db.session() as s:
        bases = Counter(
            exploring.choose(
                s,
                journey_id=1,
                step_id="hello",
                segment="東京チーム",
                goal="clicked",
                base=now,
                window=OFFICE_HOURS,
                time_zone=TOKYO,
                now=now,
            ).basis
            for _ in range(2000)
        )
    assert set(bases) == {"learned", "exploring"} and 140 <= bases["exploring"] <= 260, (
        bases
    )  # 200 +- 4.2 sd


JOURNEY = textwrap.dedent(
    """\
    journey: timed
    name: 送信時刻の学習
    segments: [everyone]
    entry: {trigger: segment}
    sending_window: {days: everyday, hours: "08:00-20:00", time_zone: contact}
    steps:
      - id: hello
        send_time: best_hour
        goal: clicked
        email: {template: onboarding_tips, subject: {en: Tips, ja: 活用のヒント}}
      - id: later
        wait: 30 days
      - id: plain
        email: {template: onboarding_tips, subject: {en: More tips, ja: さらにヒント}}
    """
)
SEGMENTS = parse_segments("tiers:\n  everyone: {when: true}\n")


def engine_for(build_engine, sink, clock: FakeClock) -> Engine:
    return build_engine(
        transport=sink,
        clock=clock,
        segments=SEGMENTS,
        settings={"frequency_cap": 10},
        links=LINKS,
        send_times=SendTimes(rng=random.Random(5), explore=0.0),
    )


def tick(build_engine, sink, clock: FakeClock) -> None:
    engine = engine_for(build_engine, sink, clock)  # a new process each time: nothing cached
    try:
        engine.tick()
    finally:
        engine.transport.close()


def add_contacts(db, prefix: str, n: int, time_zone: str = TOKYO) -> None:
    with db.session() as s, s.begin():
        account = s.scalar(select(Account).where(Account.external_id == "A"))
        if account is None:
            account = Account(
                external_id="A", name="株式会社エー", arr=Decimal(1), owner_email="csm@example.com"
            )
            s.add(account)
            s.flush()
        s.add_all(
            [
                Contact(
                    account_id=account.id,
                    email=f"{prefix}{i}@example.com",
                    name=f"山田 {prefix}{i}",
                    locale="ja",
                    time_zone=time_zone,
                )
                for i in range(n)
            ]
        )


def deploy_journey(db) -> None:
    with db.session() as s, s.begin():
        deploy(s, parse_journey(JOURNEY, "timed.yaml"), JOURNEY, "timed.yaml")


def hour_stats(db, step: str = "hello") -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(
            select(Stat.metric, func.sum(Stat.count))
            .where(Stat.step_id == step, Stat.metric.like("%@%"))
            .group_by(Stat.metric)
        )
        return {metric: int(count) for metric, count in rows if count}


def click(db, emails: list[str], at: datetime, step: str = "hello", tag: str = "") -> None:
    """One human click per address on its message of ``step``, written as the flusher does."""
    with db.session() as s:
        ids = dict(
            s.execute(
                select(Message.to_address, Message.id).where(
                    Message.to_address.in_(emails), Message.step_id == step
                )
            ).all()
        )
    hits = [
        (
            f"k{tag}{n}",
            Hit(
                "click",
                ids[email],
                at.timestamp(),
                user_agent=CHROME,
                ip=f"198.51.100.{n % 250}",
                link=0,
            ),
        )
        for n, email in enumerate(emails)
    ]
    with db.session() as s, s.begin():
        write_hits(s, hits, at)


def test_sends_and_clicks_count_by_the_recipients_hour_of_sending(
    db, smtp_sink, server_zone, build_engine
):
    add_contacts(db, "tokyo", 2)
    add_contacts(db, "utc", 1, time_zone="UTC")
    deploy_journey(db)
    clock = FakeClock(
        datetime(2026, 11, 24, 1, 5, tzinfo=UTC)
    )  # 10:05 in Tokyo, 01:05 in UTC (outside its window)
    tick(build_engine, smtp_sink, clock)
    assert hour_stats(db) == {"sent@10": 2}
    clock.set(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))  # the UTC contact's window opens at 08:00
    tick(build_engine, smtp_sink, clock)
    assert hour_stats(db) == {"sent@10": 2, "sent@08": 1}
    # Clicks come hours later; each counts under the hour its message was sent, once.
    click(db, ["tokyo0@example.com", "utc0@example.com"], datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    click(db, ["tokyo0@example.com"], datetime(2026, 11, 24, 13, 0, tzinfo=UTC), tag="again")
    counts = hour_stats(db)
    assert counts == {
        "sent@10": 2,
        "sent@08": 1,
        "clicked@10": 1,
        "opened@10": 1,
        "clicked@08": 1,
        "opened@08": 1,
    }
    with db.session() as s, s.begin():
        stats.rollup(s, clock.now())
    assert hour_stats(db) == counts  # counted once
    assert hour_stats(db, "plain") == {}  # a step without send_time counts no hours


def test_a_click_revealed_as_a_scanners_takes_its_hours_count_with_it(db, smtp_sink, build_engine):
    add_contacts(db, "tokyo", 1)
    deploy_journey(db)
    clock = FakeClock(datetime(2026, 11, 24, 1, 5, tzinfo=UTC))
    tick(build_engine, smtp_sink, clock)
    with db.session() as s:
        message = s.scalars(select(Message.id).where(Message.step_id == "hello")).one()
    at = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    with db.session() as s, s.begin():
        write_hits(
            s,
            [
                (
                    "k1",
                    Hit(
                        "click",
                        message,
                        at.timestamp(),
                        user_agent=CHROME,
                        ip="198.51.100.9",
                        link=0,
                    ),
                )
            ],
            at,
        )
    assert hour_stats(db)["clicked@10"] == 1
    with db.session() as s, s.begin():  # a second link clicked within half a second: a scanner
        write_hits(
            s,
            [
                (
                    "k2",
                    Hit(
                        "click",
                        message,
                        at.timestamp() + 0.4,
                        user_agent=CHROME,
                        ip="198.51.100.9",
                        link=1,
                    ),
                )
            ],
            at,
        )
    assert hour_stats(db) == {"sent@10": 1}


# ---------------------------------------------------------------------------- the engine


def test_a_segment_that_clicks_at_10_in_tokyo_gets_its_later_sends_at_10_tokyo_time(
    db, smtp_sink, build_engine
):
    deploy_journey(db)
    day1 = datetime(2026, 11, 24, tzinfo=UTC)
    # Learning: four cohorts of 60 enter at 09:00, 10:00, 14:00 and 17:00 Tokyo time and are
    # sent at once (nothing learned yet, the window is open).
    for hour in (9, 10, 14, 17):
        add_contacts(db, f"h{hour}_", 60)
        clock = FakeClock(day1 + timedelta(hours=hour - 9, minutes=5))
        tick(build_engine, smtp_sink, clock)
    assert len(smtp_sink.messages) == 240
    assert hour_stats(db) == {"sent@09": 60, "sent@10": 60, "sent@14": 60, "sent@17": 60}
    # Half of what reached them at 10:00 is clicked, one in twenty at other hours.
    clicked = [f"h10_{i}@example.com" for i in range(30)] + [
        f"h{hour}_{i}@example.com" for hour in (9, 14, 17) for i in range(3)
    ]
    click(db, clicked, day1 + timedelta(hours=10))
    assert hour_stats(db)["clicked@10"] == 30 and hour_stats(db)["clicked@14"] == 3

    # The next day at 15:00 Tokyo time twenty more enter: they wait for 10:00 Tokyo time.
    add_contacts(db, "late", 20)
    clock = FakeClock(datetime(2026, 11, 25, 6, 0, tzinfo=UTC))
    tick(build_engine, smtp_sink, clock)
    assert len(smtp_sink.messages) == 240
    ten_am = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)  # Thursday 10:00 in Tokyo
    with db.session() as s:
        held = s.scalars(select(Message).where(Message.to_address.like("late%"))).all()
        assert {(m.status, m.not_before, m.error) for m in held} == {
            (MessageStatus.DEFERRED, ten_am, "send time: 10:00 Asia/Tokyo")
        }
        enrollment = s.get(Enrollment, held[0].enrollment_id)
        assert enrollment is not None and enrollment.next_run_at == ten_am
        decision = enrollment.context["send_time"]["hello"]
        assert (
            decision["hour"],
            decision["time_zone"],
            decision["segment"],
            decision["basis"],
        ) == (10, TOKYO, "everyone", "learned")
        assert decision["why"].startswith(
            "sent at 10:00 Asia/Tokyo: 10:00 is the best hour learned for segment everyone (30 "
            "clicked of 60 sent then"
        )
    clock.set(ten_am - timedelta(minutes=1))
    tick(build_engine, smtp_sink, clock)
    assert len(smtp_sink.messages) == 240
    clock.set(ten_am)
    tick(build_engine, smtp_sink, clock)
    assert sorted(to for _, tos, _ in smtp_sink.messages[240:] for to in tos) == sorted(
        f"late{i}@example.com" for i in range(20)
    )
    with db.session() as s:
        assert set(s.scalars(select(Message.sent_at).where(Message.to_address.like("late%")))) == {
            ten_am
        }
    assert hour_stats(db)["sent@10"] == 80
