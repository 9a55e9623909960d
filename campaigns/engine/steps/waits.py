"""Wait steps: a duration, until a signal (an answer, an open, a click, a task done, an
event) with a timeout, or until a date (``wait_until_date``, :mod:`campaigns.journeys.anchors`).
A wait's end is kept in the enrollment's context the first time the step runs, so waking the
enrollment early (to check a goal or an exit) never cuts it short.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from campaigns.engine.context import NEXT, Outcome, StepContext
from campaigns.journeys import anchors
from campaigns.journeys.model import (
    InviteStep,
    Journey,
    Step,
    WaitStep,
    WaitUntilDateStep,
    WaitUntilStep,
)
from campaigns.journeys.vocabulary import DATE_FIELDS
from campaigns.store.enums import EventKind


def run_wait(ctx: StepContext, step: Step, config: WaitStep) -> Outcome:
    """Stay on this step until its time is up."""
    deadline = _deadline(ctx, step, config.duration)
    if ctx.now >= deadline:
        return NEXT
    return Outcome(goto=step.id, wait_until=deadline)


def _deadline(ctx: StepContext, step: Step, duration: timedelta) -> datetime:
    """When a wait that started the first time this step ran ends (kept in the context)."""
    waits: dict[str, str] = dict(ctx.enrollment.context.get("waits", {}))
    if step.id not in waits:
        waits[step.id] = (ctx.now + duration).isoformat()
        ctx.enrollment.context = {
            **ctx.enrollment.context,
            "waits": waits,
            f"since:{step.id}": ctx.now.isoformat(),
        }
    return datetime.fromisoformat(waits[step.id])


def run_wait_until(ctx: StepContext, step: Step, config: WaitUntilStep) -> Outcome:
    """Go on when the signal came (or the timeout passed); until then, wait to be woken."""
    deadline = _deadline(ctx, step, config.timeout)
    since = datetime.fromisoformat(
        ctx.enrollment.context.get(f"since:{step.id}", ctx.now.isoformat())
    )
    target = config.target
    signals: dict[str, Callable[[], bool]] = {
        "answered": lambda: ctx.answer(target) is not None,
        "opened": lambda: ctx.engaged(target, EventKind.OPEN),
        "clicked": lambda: ctx.engaged(target, EventKind.CLICK),
        "task_done": lambda: ctx.task_done(target),
        "event": lambda: ctx.event_since_entry(target, since),
    }
    if signals[config.signal]() or ctx.now >= deadline:
        return NEXT
    return Outcome(goto=step.id, wait_until=deadline, waiting=True)


def run_wait_until_date(ctx: StepContext, step: Step, config: WaitUntilDateStep) -> Outcome:
    """Wait for the date's moment, worked out once, when the enrollment first reaches the
    step; a moment already passed (or no date at all) takes the step's ``if_past`` rule."""
    kept = ctx.enrollment.context.get("waits", {}).get(step.id)
    if kept is not None:
        target = datetime.fromisoformat(kept)
        return NEXT if ctx.now >= target else Outcome(goto=step.id, wait_until=target)
    value = anchor_value(ctx, config.date)
    arrival = anchors.on_arrival(
        config, value, ctx.now, ctx.journey.sending_window, anchor_zone(ctx)
    )
    _keep_arrival(ctx, step, arrival)
    if arrival.action == "wait" and arrival.fire_at is not None:
        return Outcome(goto=step.id, wait_until=arrival.fire_at)
    if arrival.action == "skip":
        beyond = _after(ctx.journey, _after(ctx.journey, step.id))
        return Outcome(goto=beyond) if beyond is not None else Outcome(finish="completed")
    if arrival.action == "exit":
        return Outcome(finish=f"{step.id}: {arrival.reason}")
    return NEXT  # go, or the rule "now"


def anchor_zone(ctx: StepContext) -> str | None:
    """The time zone of a date wait in a window whose zone is ``contact`` (or no window):
    the enrolled contact's own (UTC when unknown); for an account journey, the zone most of
    the account's contacts are in. The one place that says whose zone."""
    return ctx.time_zone


def anchor_value(ctx: StepContext, source: str) -> object:
    """The value a date wait's ``date`` names for this enrollment (None when there is none)."""
    if source.endswith(".starts_at"):
        try:
            config = ctx.journey.step(source.removesuffix(".starts_at")).config
        except KeyError:
            return None
        return config.starts_at if isinstance(config, InviteStep) else None
    if source.startswith("contact.attributes."):
        if ctx.contact is None:  # an account journey (its validation refuses this)
            return None
        return (ctx.contact.attributes or {}).get(source.split(".", 2)[2])
    if ctx.account is None:
        return None
    if source.startswith("attributes."):
        return (ctx.account.attributes or {}).get(source.split(".", 1)[1])
    return getattr(ctx.account, source) if source in DATE_FIELDS else None


def _keep_arrival(ctx: StepContext, step: Step, arrival: anchors.Arrival) -> None:
    """The moment (so an early wake keeps it) and what was decided and why, in the context."""
    context = dict(ctx.enrollment.context)
    if arrival.fire_at is not None and arrival.action in ("wait", "go"):
        context["waits"] = {**context.get("waits", {}), step.id: arrival.fire_at.isoformat()}
    dates = dict(context.get("dates", {}))
    dates[step.id] = {
        "fire_at": arrival.fire_at.isoformat() if arrival.fire_at else None,
        "action": arrival.action,
        "reason": arrival.reason,
    }
    context["dates"] = dates
    context[f"since:{step.id}"] = ctx.now.isoformat()
    ctx.enrollment.context = context


def _after(journey: Journey, step_id: str | None) -> str | None:
    """The step after ``step_id`` in the file (None after the last, or for None)."""
    ids = [s.id for s in journey.steps]
    if step_id is None or step_id not in ids:
        return None
    index = ids.index(step_id)
    return ids[index + 1] if index + 1 < len(ids) else None
