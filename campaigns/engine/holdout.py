"""Holdouts and the global control group: who is held out of a journey, and for how long.

Two groups get nothing from a journey, so that reports can measure what it does:

- the journey's ``holdout``: a share of its entrants, hashed on the subject's id and the
  journey's id (so each journey holds out different people);
- the **global control group** (``GLOBAL_CONTROL_PERCENT``): a share of all subjects hashed on
  the id alone, so the same people are held out of every journey they qualify for, and no
  journey ever sends to them. Their enrollments carry :data:`CONTROL_MARK` in their context.

The hashes take an integer id column (a contact's or an account's), so contact and account
journeys share them; :func:`in_global_control` is the same test in Python.

A held-out member is enrolled like everyone else and stays enrolled, sent nothing, until its
**goal window** ends (:func:`goal_window`: the goal's ``within``, else
:data:`campaigns.defaults.HOLDOUT_WINDOW_DAYS`). While it waits, events wake it as they wake a
treated member, and the runner checks its goal and exit rules with the same code
(:func:`campaigns.engine.runner.ended`); a goal counts only when its event falls inside the
window, for both groups. A treated member of a measured journey (one that has a holdout, or
any journey while the global control group is on) who runs off the end of its steps before
the window ends stays enrolled too, sending nothing more, until the window ends or the goal
comes (:func:`watch_until`): otherwise a goal reached after a short journey's last step would
count for the holdout and not for the treated, and the lift would compare different windows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, cast, literal

from campaigns import defaults
from campaigns.insight import stats
from campaigns.journeys.model import Journey

CONTROL_MARK = stats.CONTROL_MARK
"""The context of an enrollment held out because its subject is in the global control group."""

HOLDOUT_ENDED = "holdout: goal window ended"
"""The exit reason of a journey-holdout member whose goal window ended without the goal."""

CONTROL_ENDED = "global control: goal window ended"
"""The same for a member of the global control group."""

WATCHED = "finished_steps"
"""The context key where a watched treated enrollment keeps how its steps ended (its exit
reason once the goal window is over)."""

_BUCKETS = 10_000  # the global control's share has 0.01% steps


def journey_holdout(
    subject_id: ColumnElement[int], journey_id: int, share: float
) -> ColumnElement[bool]:
    """True for the ``share`` (0 to 1) of subjects held out of this journey."""
    if share <= 0:
        return literal(False)
    bucket = (cast(subject_id, BigInteger) * 7919 + journey_id * 104729) % 100
    return bucket < round(share * 100)


def global_control(subject_id: ColumnElement[int], share: float) -> ColumnElement[bool]:
    """True for the ``share`` (0 to 1) of subjects in the global control group."""
    if share <= 0:
        return literal(False)
    return _bucket_sql(cast(subject_id, BigInteger)) < round(share * _BUCKETS)


def in_global_control(subject_id: int, share: float) -> bool:
    """:func:`global_control` for one id, in Python."""
    return share > 0 and (subject_id * 2654435761 % 4294967291) % _BUCKETS < round(share * _BUCKETS)


def _bucket_sql(subject_id: ColumnElement[int]) -> ColumnElement[int]:
    # A multiplicative hash modulo a prime below 2**32, then the bucket: unlike the journey's
    # hash its buckets do not follow the id's last digits. The product fits in 64 bits for ids
    # below 3.4 billion.
    return (subject_id * 2654435761 % 4294967291) % _BUCKETS


def is_global_control(context: dict[str, Any] | None) -> bool:
    """Whether an enrollment of this context is held out as the global control group."""
    return stats.group_metric(True, context) == "control"


def measured(journey: Journey, control_share: float, held: bool = False) -> bool:
    """Whether the journey's enrollments are compared with a held-out group: it has a holdout,
    the global control group is on, or this enrollment is held out."""
    return held or journey.holdout > 0 or control_share > 0


def goal_window(journey: Journey, is_measured: bool) -> timedelta | None:
    """How long after entry the goal counts: ``within``; for a measured journey without it,
    :data:`~campaigns.defaults.HOLDOUT_WINDOW_DAYS`; otherwise None (as long as enrolled)."""
    within = journey.goal.within if journey.goal is not None else None
    if within is not None:
        return within
    return timedelta(days=defaults.HOLDOUT_WINDOW_DAYS) if is_measured else None


def held_until(entered_at: datetime, journey: Journey) -> datetime:
    """When a held-out member's goal window ends."""
    window = goal_window(journey, True)
    assert window is not None  # a measured journey always has one
    return entered_at + window


def watch_until(entered_at: datetime, journey: Journey, control_share: float) -> datetime | None:
    """Until when a treated member who finished its steps stays enrolled for its goal: the end
    of the goal window of a measured journey with a goal; None when it just finishes."""
    if journey.goal is None or not measured(journey, control_share):
        return None
    window = goal_window(journey, True)
    return entered_at + window if window is not None else None
