"""Delivery controls that hold across all journeys, as pure functions of plain values: the
frequency cap and retry backoff (sending windows are the journey language's:
:mod:`campaigns.journeys.windows`).

The engine asks these *when* a message may go; it never drops a message for being early.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
"""Waits after the 1st, 2nd... temporary failure; after the last one the message fails."""


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
