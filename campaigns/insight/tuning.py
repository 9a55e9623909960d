"""Tuning: which variant (subject or template) or which channel each new send of a step
gets, per segment, from what worked so far.

A step with ``variants`` or ``channel: best_of [...]`` is a multi-armed bandit per
(journey, step, segment). An arm's trials are its sends (emails sent, tasks created, in-app
messages created) and its successes the step's goal (``goal:``; by default answered for
surveys, a yes for invites, clicked for other emails), human signals only, read from the
pre-aggregated ``stats``. An in-app arm's goal is its own acknowledgement (:data:`SUCCESSES`):
``clicked`` counts the in-app messages followed (``in_app_clicked``), ``opened`` the ones
shown (``in_app_seen``), each once per message.
Each send draws with Thompson sampling (:func:`campaigns.insight.rates.choose`): an even random
split until every arm has :data:`~campaigns.insight.rates.MIN_TRIALS` trials, then mostly the arm
whose Beta posterior draw is highest, with an exploration floor. A contact keeps the arm
drawn for a step (a re-run sends the same variant; the message row or the enrollment's
context remembers it).

The counts behind a decision are read at most once per :data:`REFRESH` per key, and at
each refresh the allocation and each arm's probability of being best are stored in
``allocations``, so the dashboard can show how the allocation moved and why.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.insight import rates
from campaigns.store.models import Allocation, Stat

REFRESH = 60.0
"""Seconds a key's counts are reused before they are read again."""

TRIALS = {
    "email": "sent",
    "task": "task_created",
    "in_app": "in_app_created",
    "survey": "sent",
    "invite": "sent",
}
"""The metric that counts an arm's trials, per channel."""

SUCCESSES = {"in_app": {"clicked": "in_app_clicked", "opened": "in_app_seen"}}
"""A step goal's metric on a channel whose responses are counted apart from email's."""


def success_metric(channel: str, goal: str) -> str:
    """The metric that counts ``goal`` for an arm on ``channel``."""
    return SUCCESSES.get(channel, {}).get(goal, goal)


def default_goal(step_type: str) -> str:
    return {"survey": "answered", "invite": "rsvp_yes"}.get(step_type, "clicked")


@dataclass
class _Entry:
    arms: list[rates.Arm]
    read_at: float


class Tuner:
    """Draws arms for sends; one per engine (its cache is per process)."""

    def __init__(
        self,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh: float = REFRESH,
    ) -> None:
        self.rng = rng or random.Random()
        self.clock = clock
        self.refresh = refresh
        self._cache: dict[tuple[int, str, str, str], _Entry] = {}

    def choose(
        self,
        session: Session,
        *,
        journey_id: int,
        step_id: str,
        segment: str | None,
        arms: Sequence[str],
        dimension: str,
        goal: str,
        now: datetime,
    ) -> str:
        """The arm for one send. ``dimension`` is ``variant`` or ``channel``."""
        if len(arms) == 1:
            return arms[0]
        entry = self._arms(
            session, journey_id, step_id, segment or "", tuple(arms), dimension, goal, now
        )
        return rates.choose(entry.arms, rng=self.rng)

    def _arms(
        self,
        session: Session,
        journey_id: int,
        step_id: str,
        segment: str,
        arms: tuple[str, ...],
        dimension: str,
        goal: str,
        now: datetime,
    ) -> _Entry:
        key = (journey_id, step_id, segment, dimension)
        entry = self._cache.get(key)
        if (
            entry is not None
            and self.clock() - entry.read_at < self.refresh
            and [a.name for a in entry.arms] == list(arms)
        ):
            return entry
        entry = _Entry(
            counts(session, journey_id, step_id, segment, arms, dimension, goal), self.clock()
        )
        self._cache[key] = entry
        record(session, journey_id, step_id, segment, dimension, entry.arms, now)
        return entry


def counts(
    session: Session,
    journey_id: int,
    step_id: str,
    segment: str,
    arms: Sequence[str],
    dimension: str,
    goal: str,
) -> list[rates.Arm]:
    """Each arm's trials and successes so far, for this segment."""
    column = Stat.variant if dimension == "variant" else Stat.channel
    metrics = {goal, *TRIALS.values(), *(success_metric(arm, goal) for arm in arms)}
    found: dict[tuple[str, str], int] = {}
    query = (
        select(column, Stat.metric, func.sum(Stat.count))
        .where(
            Stat.journey_id == journey_id,
            Stat.step_id == step_id,
            Stat.segment == segment,
            column.in_(list(arms)),
            Stat.metric.in_(metrics),
        )
        .group_by(column, Stat.metric)
    )
    for arm, metric, total in session.execute(query):
        found[(arm, metric)] = int(total or 0)
    result = []
    for arm in arms:
        trials_metric = "sent" if dimension == "variant" else TRIALS.get(arm, "sent")
        goal_metric = goal if dimension == "variant" else success_metric(arm, goal)
        trials = found.get((arm, trials_metric), 0)
        result.append(rates.Arm(arm, min(found.get((arm, goal_metric), 0), trials), trials))
    return result


def record(
    session: Session,
    journey_id: int,
    step_id: str,
    segment: str,
    dimension: str,
    arms: Sequence[rates.Arm],
    now: datetime,
) -> None:
    """Store the allocation the tuner uses from now on, and why (each arm's counts and its
    probability of being best); written with the step's own transaction."""
    shares = rates.allocate(arms)
    best = rates.probability_best(arms) if arms else {}
    for arm in arms:
        session.add(
            Allocation(
                journey_id=journey_id,
                step_id=step_id,
                segment=segment,
                dimension=dimension,
                arm=arm.name,
                at=now,
                trials=arm.trials,
                successes=arm.successes,
                share=shares.get(arm.name, 0.0),
                p_best=best.get(arm.name, 0.0),
            )
        )


def history(session: Session, journey_id: int, step_id: str | None = None) -> list[Allocation]:
    """The stored allocations of a journey (or one step), oldest first."""
    query = select(Allocation).where(Allocation.journey_id == journey_id)
    if step_id is not None:
        query = query.where(Allocation.step_id == step_id)
    return list(session.scalars(query.order_by(Allocation.at, Allocation.id)))
