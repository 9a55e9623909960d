"""Net Promoter Score from the answers to ``survey: {scale: nps}`` steps.

Each first answer to a survey email is counted in ``stats`` as ``score_<n>`` (see
:func:`campaigns.insight.hitcounts.count_hits`) by journey, step, segment, tier and day, like
every other metric, so the summary is a sum over a few rows however many answers there are.
An NPS step is one whose survey scale is ``nps`` in any stored version of its journey.

- promoters answer 9–10, passives 7–8, detractors 0–6;
- NPS = % promoters − % detractors, from −100 to +100;
- its 95% interval is the usual normal approximation for a difference of two proportions
  of one multinomial sample: ``1.96 × sqrt((p + d − (p − d)²) / n)`` (p and d the promoter
  and detractor shares), clipped to [−100, 100]; with n under 2 there is none.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.store.models import Journey, JourneyVersion, Stat

SCORES = tuple(f"score_{n}" for n in range(11))
"""The stats metrics of NPS answers, 0 to 10."""

BUCKETS = ("day", "week", "month")


@dataclass
class Nps:
    """Promoters, passives and detractors of one group, and the score."""

    key: str = ""
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    scores: dict[int, int] = field(default_factory=dict)  # answer -> count

    def add(self, score: int, count: int) -> None:
        self.scores[score] = self.scores.get(score, 0) + count
        if score >= 9:
            self.promoters += count
        elif score >= 7:
            self.passives += count
        else:
            self.detractors += count

    @property
    def n(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def score(self) -> float | None:
        """NPS, −100 to 100; None with no answers."""
        if not self.n:
            return None
        return 100.0 * (self.promoters - self.detractors) / self.n

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% interval of the score (see the module's docstring)."""
        if self.n < 2:
            return None
        p, d = self.promoters / self.n, self.detractors / self.n
        half = 1.96 * math.sqrt(max(p + d - (p - d) ** 2, 0.0) / self.n) * 100
        score = 100.0 * (p - d)
        return max(-100.0, score - half), min(100.0, score + half)

    def share(self, part: str) -> float:
        return getattr(self, part) / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        interval = self.interval
        return {
            "key": self.key,
            "n": self.n,
            "promoters": self.promoters,
            "passives": self.passives,
            "detractors": self.detractors,
            "nps": round(self.score, 1) if self.score is not None else None,
            "low": round(interval[0], 1) if interval else None,
            "high": round(interval[1], 1) if interval else None,
            "scores": {str(k): v for k, v in sorted(self.scores.items())},
        }


@dataclass
class NpsSummary:
    journey: str | None
    since: date | None
    until: date | None
    bucket: str
    total: Nps
    over_time: list[Nps]  # key: the first day of the period
    by_segment: list[Nps]
    by_journey: list[Nps]

    def as_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "bucket": self.bucket,
            "total": self.total.as_dict(),
            "over_time": [n.as_dict() for n in self.over_time],
            "by_segment": [n.as_dict() for n in self.by_segment],
            "by_journey": [n.as_dict() for n in self.by_journey],
        }


def nps_steps(session: Session) -> dict[int, set[str]]:
    """The NPS survey steps of every journey: journey id -> step ids."""
    steps: dict[int, set[str]] = defaultdict(set)
    for journey_id, definition in session.execute(
        select(JourneyVersion.journey_id, JourneyVersion.definition)
    ):
        for step in (definition or {}).get("steps", []):
            survey = (step.get("blocks") or {}).get("survey") if isinstance(step, dict) else None
            if isinstance(survey, dict) and survey.get("scale") == "nps":
                steps[journey_id].add(step.get("id"))
    return steps


def period(day: date, bucket: str) -> date:
    """The first day of ``day``'s period: itself, its week's Monday, or its month's 1st."""
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def summary(
    session: Session,
    journey: str | None = None,
    *,
    since: date | None = None,
    until: date | None = None,
    bucket: str = "week",
) -> NpsSummary:
    """NPS over every NPS step (of one journey, by key, if given): in all, per period, per
    segment and per journey."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket: one of {', '.join(BUCKETS)}, not {bucket!r}")
    keys = dict(session.execute(select(Journey.id, Journey.key)).all())
    steps = nps_steps(session)
    if journey is not None:
        wanted = [i for i, k in keys.items() if k == journey]
        if not wanted:
            raise LookupError(f"no journey {journey!r}")
        steps = {i: s for i, s in steps.items() if i in wanted}
    total = Nps("total")
    over: dict[date, Nps] = {}
    segments: dict[str, Nps] = {}
    journeys: dict[str, Nps] = {}
    if steps:
        where: list[Any] = [Stat.metric.in_(SCORES), Stat.journey_id.in_(sorted(steps))]
        if since is not None:
            where.append(Stat.day >= since)
        if until is not None:
            where.append(Stat.day <= until)
        query = (
            select(
                Stat.journey_id,
                Stat.step_id,
                Stat.segment,
                Stat.day,
                Stat.metric,
                func.sum(Stat.count),
            )
            .where(*where)
            .group_by(Stat.journey_id, Stat.step_id, Stat.segment, Stat.day, Stat.metric)
        )
        for journey_id, step_id, segment, day, metric, count in session.execute(query):
            if step_id not in steps.get(journey_id, ()):
                continue  # a CSAT step's scores
            score, count = int(metric.removeprefix("score_")), int(count or 0)
            total.add(score, count)
            start = period(day, bucket)
            over.setdefault(start, Nps(start.isoformat())).add(score, count)
            segments.setdefault(segment or "", Nps(segment or "")).add(score, count)
            key = keys.get(journey_id, str(journey_id))
            journeys.setdefault(key, Nps(key)).add(score, count)
    return NpsSummary(
        journey,
        since,
        until,
        bucket,
        total,
        [over[d] for d in sorted(over)],
        [segments[k] for k in sorted(segments)],
        [journeys[k] for k in sorted(journeys)],
    )
