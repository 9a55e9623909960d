"""Wait steps: a duration, or until a signal (an answer, an open, a click, a task done, an
event) with a timeout. A wait's end is kept in the enrollment's context the first time the
step runs, so waking the enrollment early (to check a goal or an exit) never cuts it short.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from campaigns.engine.context import NEXT, Outcome, StepContext
from campaigns.journeys.model import Step, WaitStep, WaitUntilStep
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
