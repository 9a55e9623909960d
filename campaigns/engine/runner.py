"""Running one enrollment's steps: until it waits, ends, or pauses on a queued email.

Before each step the journey's goal and exit rules are checked; the step's
:class:`~campaigns.engine.context.Outcome` then moves the enrollment on, makes it wait, or
ends it. Nothing is committed here: the send batch commits (fenced by its lease).

A held-out enrollment (:mod:`campaigns.engine.holdout`) runs no step: the same goal and exit
checks, then it waits, sent nothing, until its goal window ends. A treated one of a measured
journey that runs off the end of its steps early is watched the same way until the window
ends, so both groups' goals count over the same window.
"""

from __future__ import annotations

from campaigns.engine import holdout
from campaigns.engine.context import Outcome, StepContext
from campaigns.engine.steps import execute, next_step
from campaigns.journeys.expressions import Condition
from campaigns.journeys.model import Step
from campaigns.store.enums import EnrollmentState, OutboundType
from campaigns.store.outbox import Item, emit_many, wants

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
        if enrollment.holdout:
            hold(ctx)
            return False
        if enrollment.current_step is None:  # its steps are done (it may have been watched)
            complete(ctx, str((enrollment.context or {}).get(holdout.WATCHED) or "completed"))
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
        complete(ctx, outcome.finish)
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
        complete(ctx, "completed")
        return False
    return True


def ended(ctx: StepContext) -> tuple[EnrollmentState, str] | None:
    """The goal or an exit condition holds: how the enrollment ends. The goal counts when its
    event falls inside the goal window (:func:`campaigns.engine.holdout.goal_window`), for
    treated and held-out enrollments alike."""
    journey, enrollment = ctx.journey, ctx.enrollment
    if journey.goal is not None:
        measured = holdout.measured(journey, ctx.tools.settings.global_control, enrollment.holdout)
        window = holdout.goal_window(journey, measured)
        until = enrollment.entered_at + window if window is not None else None
        if ctx.event_since_entry(journey.goal.event, until=until):
            return (EnrollmentState.GOAL, f"goal: {journey.goal.event}")
    for rule in journey.exit_when:
        if rule.event and ctx.event_since_entry(rule.event):
            return (EnrollmentState.EXITED, f"event: {rule.event}")
        if rule.condition and Condition(rule.condition)(ctx.values(), ctx.functions()):
            return (EnrollmentState.EXITED, f"condition: {rule.condition}"[:255])
        if rule.unsubscribed and ctx.contact is not None and not ctx.contact.subscribed:
            return (EnrollmentState.EXITED, "unsubscribed")
    return None


def hold(ctx: StepContext) -> None:
    """A held-out enrollment: wait, sent nothing, until its goal window ends; then finish."""
    enrollment = ctx.enrollment
    until = holdout.held_until(enrollment.entered_at, ctx.journey)
    if ctx.now >= until:
        control = holdout.is_global_control(enrollment.context)
        finish(
            ctx,
            EnrollmentState.COMPLETED,
            holdout.CONTROL_ENDED if control else holdout.HOLDOUT_ENDED,
        )
        return
    enrollment.state = EnrollmentState.ACTIVE  # woken early by a product event, as a wait is
    enrollment.next_run_at = until


def complete(ctx: StepContext, reason: str) -> None:
    """The steps are done (ran off the end, or an exit step): finish, or, in a measured
    journey whose goal window is still open, wait for the goal until the window ends."""
    enrollment = ctx.enrollment
    until = holdout.watch_until(
        enrollment.entered_at, ctx.journey, ctx.tools.settings.global_control
    )
    if until is None or ctx.now >= until:
        finish(ctx, EnrollmentState.COMPLETED, reason)
        return
    enrollment.context = {**(enrollment.context or {}), holdout.WATCHED: reason}
    enrollment.current_step = None
    enrollment.state = EnrollmentState.ACTIVE
    enrollment.next_run_at = until


def finish(ctx: StepContext, state: EnrollmentState, reason: str) -> None:
    ctx.enrollment.state = state
    ctx.enrollment.exit_reason = reason[:255]
    ctx.enrollment.finished_at = ctx.now
    ctx.enrollment.next_run_at = None
    ctx.sending.counts.finished += 1
    if wants(ctx.session, OutboundType.JOURNEY_EXITED):  # written with the change, in its commit
        emit_many(
            ctx.session,
            [
                Item(
                    OutboundType.JOURNEY_EXITED,
                    ctx.now,
                    contact_id=ctx.enrollment.contact_id,
                    account_id=ctx.enrollment.account_id,
                    journey_id=ctx.enrollment.journey_id,
                    enrollment_id=ctx.enrollment.id,
                    step=ctx.enrollment.current_step,
                    data={"state": str(state), "reason": reason[:255]},
                )
            ],
        )
