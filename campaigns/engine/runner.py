"""Running one enrollment's steps: until it waits, ends, or pauses on a queued email.

Before each step the journey's goal and exit rules are checked; the step's
:class:`~campaigns.engine.context.Outcome` then moves the enrollment on, makes it wait, or
ends it. Nothing is committed here: the send batch commits (fenced by its lease).
"""

from __future__ import annotations

from campaigns.engine.context import Outcome, StepContext
from campaigns.engine.steps import execute, next_step
from campaigns.journeys.expressions import Condition
from campaigns.journeys.model import Step
from campaigns.store.enums import EnrollmentState

MAX_STEPS_PER_RUN = 64
"""Steps one enrollment may run in one go (a journey without waits ends well before)."""


def run_steps(ctx: StepContext) -> bool:
    """Run an enrollment's steps until it waits, ends, or (in a send batch) pauses on a
    queued message; True when it paused and must run again after the delivery."""
    enrollment, journey = ctx.enrollment, ctx.journey
    for _ in range(MAX_STEPS_PER_RUN):
        reason = ended(ctx)
        if reason is not None:
            finish(ctx, *reason)
            return False
        if enrollment.current_step is None:
            finish(ctx, EnrollmentState.COMPLETED, "completed")
            return False
        try:
            step = journey.step(enrollment.current_step)
        except KeyError:
            # The version was edited under a running enrollment; it stays on its own
            # version, so this means a stored version lost a step: end it visibly.
            missing = f"step {enrollment.current_step} not in version"
            finish(ctx, EnrollmentState.FAILED, missing)
            return False
        outcome = execute(ctx, step)
        if outcome.paused:
            return True
        if not apply(ctx, step, outcome):
            return False
    enrollment.next_run_at = ctx.now
    return False


def apply(ctx: StepContext, step: Step, outcome: Outcome) -> bool:
    """Record an outcome; True when the next step should run now."""
    enrollment = ctx.enrollment
    if outcome.finish is not None:
        finish(ctx, EnrollmentState.COMPLETED, outcome.finish)
        return False
    target = outcome.goto if outcome.goto is not None else next_step(ctx.journey, step.id)
    if outcome.wait_until is not None and outcome.wait_until > ctx.now:
        enrollment.current_step = target
        enrollment.next_run_at = outcome.wait_until
        enrollment.state = EnrollmentState.WAITING if outcome.waiting else EnrollmentState.ACTIVE
        return False  # committed with the release of the claim
    # Not committed yet: the next step's first write commits this move with it.
    enrollment.state = EnrollmentState.ACTIVE
    enrollment.current_step = target
    if target is None:
        finish(ctx, EnrollmentState.COMPLETED, "completed")
        return False
    return True


def ended(ctx: StepContext) -> tuple[EnrollmentState, str] | None:
    """The goal or an exit condition holds: how the enrollment ends."""
    journey = ctx.journey
    if journey.goal is not None:
        within = journey.goal.within
        if (
            within is None or ctx.now <= ctx.enrollment.entered_at + within
        ) and ctx.event_since_entry(journey.goal.event):
            return (EnrollmentState.GOAL, f"goal: {journey.goal.event}")
    for rule in journey.exit_when:
        if rule.event and ctx.event_since_entry(rule.event):
            return (EnrollmentState.EXITED, f"event: {rule.event}")
        if rule.condition and Condition(rule.condition)(ctx.values(), ctx.functions()):
            return (EnrollmentState.EXITED, f"condition: {rule.condition}"[:255])
        if rule.unsubscribed and ctx.contact is not None and not ctx.contact.subscribed:
            return (EnrollmentState.EXITED, "unsubscribed")
    return None


def finish(ctx: StepContext, state: EnrollmentState, reason: str) -> None:
    ctx.enrollment.state = state
    ctx.enrollment.exit_reason = reason[:255]
    ctx.enrollment.finished_at = ctx.now
    ctx.enrollment.next_run_at = None
    ctx.sending.counts.finished += 1
