"""Sending windows: when a journey's window (days and hours, in the contact's time zone or a
named one) next opens. Pure: plain values in, an aware UTC datetime out; the engine's
delivery policy and the send-time chooser (:mod:`campaigns.insight.sendtime`) both ask it.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from campaigns.journeys.model import SendingWindow


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
