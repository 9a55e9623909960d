"""Delivery controls as pure functions: sending windows, the frequency cap, backoff."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st

from campaigns.engine import delivery
from campaigns.journeys import windows
from campaigns.journeys.model import SendingWindow

WEEKDAYS_9_TO_6 = SendingWindow(
    days=(0, 1, 2, 3, 4), start=time(9), end=time(18), time_zone="contact"
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_inside_the_window_sends_now():
    now = utc(2026, 11, 24, 1, 30)  # Tuesday 10:30 in Tokyo
    assert windows.next_opening(WEEKDAYS_9_TO_6, now, "Asia/Tokyo") == now


def test_before_opening_waits_for_nine_in_the_contacts_zone():
    now = utc(2026, 11, 23, 22, 0)  # Tuesday 07:00 in Tokyo
    assert windows.next_opening(WEEKDAYS_9_TO_6, now, "Asia/Tokyo") == utc(2026, 11, 24, 0, 0)


def test_friday_evening_waits_for_monday_morning():
    now = utc(2026, 11, 27, 10, 0)  # Friday 19:00 in Tokyo
    assert windows.next_opening(WEEKDAYS_9_TO_6, now, "Asia/Tokyo") == utc(2026, 11, 30, 0, 0)


def test_the_same_moment_differs_by_contact_zone():
    now = utc(
        2026, 11, 24, 1, 30
    )  # 10:30 Tokyo, 17:30 Monday in Los Angeles... (01:30 UTC Tue = 17:30 Mon LA)
    assert windows.next_opening(WEEKDAYS_9_TO_6, now, "America/Los_Angeles") == now
    assert windows.next_opening(
        WEEKDAYS_9_TO_6, utc(2026, 11, 24, 3, 0), "America/Los_Angeles"
    ) == utc(2026, 11, 24, 17, 0)


def test_a_fixed_zone_overrides_the_contacts_and_unknown_zones_mean_utc():
    window = SendingWindow(
        days=tuple(range(7)), start=time(9), end=time(18), time_zone="Asia/Tokyo"
    )
    assert windows.next_opening(window, utc(2026, 11, 24, 1), "America/New_York") == utc(
        2026, 11, 24, 1
    )
    assert windows.next_opening(WEEKDAYS_9_TO_6, utc(2026, 11, 24, 8), "Mars/Olympus") == utc(
        2026, 11, 24, 9
    )


def test_no_window_means_now():
    now = utc(2026, 11, 29, 3)
    assert windows.next_opening(None, now, "Asia/Tokyo") == now


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(
        ["Asia/Tokyo", "UTC", "America/Los_Angeles", "Australia/Lord_Howe", "Europe/London"]
    ),
)
def test_the_opening_is_never_earlier_and_always_inside_the_window(now, zone):
    opening = windows.next_opening(WEEKDAYS_9_TO_6, now, zone)
    assert opening >= now and opening - now < timedelta(days=8)
    local = opening.astimezone(windows.zone(zone))
    assert local.weekday() < 5 and time(9) <= local.time() < time(18)


def test_frequency_cap_defers_until_the_oldest_send_leaves_the_period():
    now = utc(2026, 11, 23, 12)
    sent = [now - timedelta(days=6), now - timedelta(days=2), now - timedelta(hours=1)]
    assert delivery.cap_release(sent, 3, timedelta(days=7), now) == now - timedelta(
        days=6
    ) + timedelta(days=7)
    assert delivery.cap_release(sent[1:], 3, timedelta(days=7), now) == now
    assert delivery.cap_release(
        [*sent, now - timedelta(days=8)], 3, timedelta(days=7), now
    ) == now + timedelta(days=1)
    assert delivery.cap_release(sent, 0, timedelta(days=7), now) == now  # 0 turns the cap off


def test_backoff_grows_then_gives_up():
    waits = [delivery.backoff(n) for n in range(1, 7)]
    assert waits[:5] == sorted(waits[:5]) and waits[0] == timedelta(minutes=1)
    assert waits[5] is None
