"""Send time: a step with ``send_time: best_hour`` sends each message at the hour of the day
that drew its segment's best human response, in each recipient's own time zone.

Counting
    For such steps the stats count sends and human responses per recipient-local hour of
    sending too, as metrics ``sent@10``, ``clicked@10``... (:data:`HOUR_METRICS`, see
    :mod:`campaigns.insight.stats`): the hour is that of the message's ``sent_at`` in the contact's
    time zone (10:00 in Tokyo is 01:00 on a UTC server), and a response counts under the hour
    its message was *sent*, so ``clicked@10 / sent@10`` is the click rate of what went out at
    ten. They are counted where ``sent`` and the unique ``clicked``... are, exactly and once
    per message, and only for steps that ask (other journeys' reports stay as they were).

Choosing
    Per (journey, step, segment) the counts of the last :data:`HISTORY` are read (at most once
    per :data:`REFRESH` per process, so a send costs no query) and the hours ranked by
    :func:`campaigns.insight.rates.best_hour`: the highest Wilson lower bound of the step's
    goal rate (its ``goal:``, or the tuner's default: clicked for emails, answered for
    surveys, a yes for invites) among hours with :data:`~campaigns.insight.rates.MIN_N` sends. Until
    :data:`MIN_HOURS` hours have that many there is nothing to compare and messages go as
    before, without waiting.

    Once it has learned, a message that may go at ``base`` (the sending window is open and
    the frequency cap allows it) waits for the best-ranked hour that it can reach inside the
    sending window within :data:`MAX_DELAY` of ``base``: the best hour itself, or, if that
    one is outside the window (or its next opening is too far), the best hour inside it. It
    goes at once when it is already that hour. Hours that drew no response at all are never
    waited for (their lower bounds are all 0: nothing to tell them apart). :data:`EXPLORE` of
    the sends go without waiting all the same, so that the other hours keep being measured and
    a change in the audience's habits can show.

    Each decision is kept in the enrollment's context under ``send_time`` (the hour, the
    recipient's time zone, the segment, when, and why in words), so a report or the
    dashboard can say "sent at 10:00 Asia/Tokyo: the best hour learned for segment X"; a
    message that waits carries ``send time: 10:00 Asia/Tokyo`` as its reason meanwhile.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.insight import rates
from campaigns.journeys.model import SendingWindow
from campaigns.journeys.windows import next_opening, zone
from campaigns.store.models import JourneyVersion, Stat

BEST_HOUR = "best_hour"
"""The ``send_time`` value that turns it on (the default, ``now``, sends as soon as allowed)."""

HOUR_METRICS = ("sent", "opened", "clicked", "answered", "rsvp_yes")
"""The metrics also counted per recipient-local hour of sending, as ``<metric>@HH``."""

REFRESH = 300.0
"""Seconds a segment's hour counts are reused before they are read again."""

HISTORY = timedelta(days=90)
"""How far back the counts behind a choice go: habits drift, and old sends should not outvote
them."""

MAX_DELAY = timedelta(hours=24)
"""The longest a message waits, beyond when it could first go, to reach a learned hour."""

EXPLORE = 0.1
"""The share of sends that go without waiting even once an hour is learned."""

MIN_HOURS = 2
"""Hours that need :data:`~campaigns.insight.rates.MIN_N` sends each before any is called the best:
one measured hour alone has nothing to be better than."""


def hour_metric(metric: str, hour: int) -> str:
    """The name of ``metric`` counted for one hour of the day: ``clicked@09``."""
    return f"{metric}@{hour:02d}"


def local_hour(when: datetime, time_zone: str | None) -> int:
    """The hour of the day (0-23) ``when`` is in ``time_zone`` (UTC if unknown)."""
    return when.astimezone(zone(time_zone)).hour


# ---------------------------------------------------------------------------- which steps count


_TIMED: dict[str, frozenset[str]] = {}
"""Journey texts (by source hash) to the ids of their ``send_time: best_hour`` steps."""


def timed_steps(session: Session, hashes: Iterable[str]) -> dict[str, frozenset[str]]:
    """The ``send_time: best_hour`` steps of each journey version, by its source hash. A hash
    names one text, so what was read once is kept for the process; new hashes cost one query
    (of the definitions stored at deploy)."""
    wanted = {h for h in hashes if h}
    missing = sorted(wanted - _TIMED.keys())
    if missing:
        if len(_TIMED) > 10_000:
            _TIMED.clear()
        for digest, definition in session.execute(
            select(JourneyVersion.source_hash, JourneyVersion.definition).where(
                JourneyVersion.source_hash.in_(missing)
            )
        ):
            steps = definition.get("steps", []) if isinstance(definition, dict) else []
            _TIMED[digest] = frozenset(
                str(s.get("id"))
                for s in steps
                if isinstance(s, dict) and s.get("send_time") == BEST_HOUR
            )
    return {h: _TIMED.get(h, frozenset()) for h in wanted}


# ---------------------------------------------------------------------------- the choice, pure


def ranking(counts: Mapping[int, rates.Rate], min_n: int = rates.MIN_N) -> tuple[int, ...]:
    """The hours with at least ``min_n`` sends, best first:
    :func:`campaigns.insight.rates.best_hour` taken again and again over the hours left (the
    earlier hour first on a tie)."""
    left = dict(counts)
    order: list[int] = []
    while (best := rates.best_hour(left, min_n)) is not None:
        order.append(best)
        del left[best]
    return tuple(order)


def next_slot(
    hour: int,
    base: datetime,
    window: SendingWindow | None,
    time_zone: str | None,
    max_delay: timedelta = MAX_DELAY,
) -> datetime | None:
    """The first moment at or after ``base`` (and at most ``max_delay`` after it) that is
    within ``hour`` o'clock in ``time_zone`` and inside the sending window; None if there is
    none. ``base`` itself when it is that hour already."""
    tz = zone(time_zone)
    limit = base + max_delay
    first_day = base.astimezone(tz).date()
    for days in range(3):
        local_start = datetime.combine(first_day + timedelta(days=days), clock_time(hour), tz)
        start = local_start.astimezone(UTC)
        if start.astimezone(tz).hour != hour:
            continue  # skipped by a daylight-saving change that day
        end = start + timedelta(hours=1)
        if end <= base:
            continue
        if start > limit:
            break
        opening = next_opening(window, max(start, base), time_zone)
        if opening < end and opening <= limit:
            return opening
    return None


@dataclass(frozen=True)
class Timing:
    """When one message goes, and why."""

    at: datetime  # when it may go (``base`` when it need not wait)
    hour: int | None  # the learned hour it goes at; None when no learned hour was used
    basis: str  # learned | learning | exploring | outside_window
    why: str  # in words, for people

    def record(self, segment: str, time_zone: str | None) -> dict[str, Any]:
        """The JSON kept in the enrollment's context."""
        return {
            "at": self.at.isoformat(),
            "hour": self.hour,
            "time_zone": time_zone or "UTC",
            "segment": segment,
            "basis": self.basis,
            "why": self.why,
        }


def decide(
    counts: Mapping[int, rates.Rate],
    ranked: Sequence[int],
    *,
    base: datetime,
    window: SendingWindow | None,
    time_zone: str | None,
    segment: str,
    goal: str,
    explore: bool = False,
    max_delay: timedelta = MAX_DELAY,
) -> Timing:
    """When a message that may go at ``base`` should go, from its segment's hour ``counts``
    (sends and goal responses per recipient-local hour) ranked best first in ``ranked``.
    ``explore``: this send is one of those kept for measuring (it goes at ``base``)."""
    zone_name = time_zone or "UTC"
    who = f"segment {segment}" if segment else "contacts outside any segment"
    responded = [
        hour for hour in ranked if counts[hour].hits > 0
    ]  # an hour without any response is no better than now
    if len(ranked) < MIN_HOURS:
        return Timing(
            base,
            None,
            "learning",
            f"sent without waiting: {who} has fewer than {MIN_HOURS} hours"
            f" with {rates.MIN_N} sends each to compare yet",
        )
    if not responded:
        return Timing(
            base,
            None,
            "learning",
            f"sent without waiting: {who} has not {goal} anything sent in its measured hours yet",
        )
    if explore:
        return Timing(
            base,
            None,
            "exploring",
            f"sent without waiting: one of the {EXPLORE:.0%} of sends"
            " that keep measuring the other hours",
        )
    for place, hour in enumerate(responded):
        at = next_slot(hour, base, window, time_zone, max_delay)
        if at is None:
            continue
        rate = counts[hour]
        low = rates.wilson(rate.hits, rate.n)[0]
        local = at.astimezone(zone(time_zone))
        why = (
            f"sent at {local:%H:%M} {zone_name}: {hour:02d}:00 is the best hour learned for {who}"
            f" ({rate.hits} {goal} of {rate.n} sent then, 95% lower bound {low:.1%})"
        )
        if place:
            why += (
                f"; {responded[0]:02d}:00 ranks higher but the sending window does not open"
                f" then within {_hours(max_delay)}"
            )
        return Timing(at, hour, "learned", why)
    return Timing(
        base,
        None,
        "outside_window",
        f"sent without waiting: no learned hour of {who} is inside the sending window"
        f" within {_hours(max_delay)}",
    )


def _hours(delay: timedelta) -> str:
    return f"{delay.total_seconds() / 3600:g} hours"


# ---------------------------------------------------------------------------- counts and cache


def hour_counts(
    session: Session, journey_id: int, step_id: str, segment: str, goal: str, since: date
) -> dict[int, rates.Rate]:
    """Sends and ``goal`` responses per recipient-local hour of sending of one step's emails
    to one segment since ``since``, from the stats (hours without sends left out)."""
    names = {
        hour_metric(metric, hour): (metric, hour) for hour in range(24) for metric in ("sent", goal)
    }
    sums: dict[tuple[str, int], int] = {}
    query = (
        select(Stat.metric, func.sum(Stat.count))
        .where(
            Stat.journey_id == journey_id,
            Stat.step_id == step_id,
            Stat.channel == "email",
            Stat.segment == segment,
            Stat.day >= since,
            Stat.metric.in_(sorted(names)),
        )
        .group_by(Stat.metric)
    )
    for metric, total in session.execute(query):
        sums[names[metric]] = int(total or 0)
    counts = {}
    for hour in range(24):
        sent = sums.get(("sent", hour), 0)
        if (
            sent > 0
        ):  # responses may be counted before their sends are rolled up: never more than sent
            counts[hour] = rates.Rate(min(sums.get((goal, hour), 0), sent), sent)
    return counts


@dataclass
class _Entry:
    counts: dict[int, rates.Rate]
    ranked: tuple[int, ...]
    read_at: float


class SendTimes:
    """Decides send times; one per engine (its cache is per process)."""

    def __init__(
        self,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh: float = REFRESH,
        explore: float = EXPLORE,
        max_delay: timedelta = MAX_DELAY,
    ) -> None:
        if not 0 <= explore <= 1:
            raise ValueError(f"explore must be between 0 and 1, not {explore}")
        self.rng = rng or random.Random()
        self.clock = clock
        self.refresh = refresh
        self.explore = explore
        self.max_delay = max_delay
        self._cache: dict[tuple[int, str, str, str], _Entry] = {}

    def choose(
        self,
        session: Session,
        *,
        journey_id: int,
        step_id: str,
        segment: str,
        goal: str,
        base: datetime,
        window: SendingWindow | None,
        time_zone: str | None,
        now: datetime,
    ) -> Timing:
        """When the message of ``step_id`` to a contact in ``segment`` (in ``time_zone``) that
        may go at ``base`` should go."""
        entry = self._entry(session, journey_id, step_id, segment, goal, now)
        explore = (
            len(entry.ranked) >= MIN_HOURS and self.explore > 0 and self.rng.random() < self.explore
        )
        return decide(
            entry.counts,
            entry.ranked,
            base=base,
            window=window,
            time_zone=time_zone,
            segment=segment,
            goal=goal,
            explore=explore,
            max_delay=self.max_delay,
        )

    def _entry(
        self,
        session: Session,
        journey_id: int,
        step_id: str,
        segment: str,
        goal: str,
        now: datetime,
    ) -> _Entry:
        key = (journey_id, step_id, segment, goal)
        entry = self._cache.get(key)
        if entry is None or self.clock() - entry.read_at >= self.refresh:
            counts = hour_counts(
                session, journey_id, step_id, segment, goal, (now - HISTORY).date()
            )
            entry = _Entry(counts, ranking(counts), self.clock())
            self._cache[key] = entry
        return entry
