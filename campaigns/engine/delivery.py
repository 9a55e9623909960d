"""Delivery controls that hold across all journeys, as pure functions of plain values:
sending windows in the contact's time zone, the frequency cap, and retry backoff.

The engine asks these *when* a message may go; it never drops a message for being early.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from campaigns.journeys.model import SendingWindow

BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
"""Waits after the 1st, 2nd... temporary failure; after the last one the message fails."""


@lru_cache(maxsize=512)
def zone(name: str | None) -> zoneinfo.ZoneInfo:
    """The time zone called ``name``; UTC for a missing or unknown name."""
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def next_opening(window: SendingWindow | None, now: datetime, contact_zone: str | None) -> datetime:
    """``now`` if the window is open now, else the next moment it opens (UTC, aware)."""
    if window is None:
        return now
    tz = zone(contact_zone if window.time_zone == "contact" else window.time_zone)
    local = now.astimezone(tz)
    for day in range(8):
        date = (local + timedelta(days=day)).date()
        if date.weekday() not in window.days:
            continue
        start = datetime.combine(date, window.start, tz)
        end = datetime.combine(date, window.end, tz)
        if day == 0 and start <= local < end:
            return now
        if local < start:
            return start.astimezone(UTC)
    return now  # a window with no days: the validator refuses it; never block forever


def cap_release(
    sent_at: Sequence[datetime], cap: int, period: timedelta, now: datetime
) -> datetime:
    """When the next marketing message may go to a contact who was sent ``sent_at``.

    ``now`` if fewer than ``cap`` went out in the last ``period``; else the moment the
    oldest of the last ``cap`` leaves the window. A deferred send waits; it is not lost.
    """
    if cap <= 0:
        return now
    recent = sorted(t for t in sent_at if t > now - period)
    if len(recent) < cap:
        return now
    return recent[-cap] + period


def backoff(tries: int) -> timedelta | None:
    """The wait before retry number ``tries`` + 1, or None when it is time to give up."""
    return BACKOFF[tries - 1] if 1 <= tries <= len(BACKOFF) else None
