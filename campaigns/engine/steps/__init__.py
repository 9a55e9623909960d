"""One executor per step type, grouped by family, and the one place that picks it.

- :mod:`.messages`: email, survey, invite (customer email; a ``best_of`` step draws its
  channel first);
- :mod:`.waits`: wait, wait_until, wait_until_date;
- :mod:`.flow`: branch, update, exit;
- :mod:`.actions`: task (and the notice to its owner), in_app, webhook.

An executor does its step's work idempotently (every row it writes is keyed by enrollment
and step, so a re-run writes nothing twice) and returns an
:class:`~campaigns.engine.context.Outcome`. :func:`executor` narrows the step's config once,
with a ``match`` that mypy checks is exhaustive over :data:`~campaigns.journeys.model.StepConfig`:
a new step type without an executor does not type-check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from campaigns.engine.context import Outcome, StepContext
from campaigns.engine.steps import actions, flow, messages, waits
from campaigns.journeys.model import (
    BranchStep,
    EmailStep,
    ExitStep,
    InAppStep,
    InviteStep,
    Journey,
    Step,
    StepConfig,
    SurveyStep,
    TaskStep,
    UpdateStep,
    WaitStep,
    WaitUntilDateStep,
    WaitUntilStep,
    WebhookStep,
)

Executor = Callable[[StepContext, Step], Outcome]


def executor(config: StepConfig) -> Executor:
    """The executor of a step whose config is ``config``."""
    match config:
        case EmailStep() | SurveyStep() | InviteStep():
            return messages.run_message
        case WaitStep():
            return lambda ctx, step: waits.run_wait(ctx, step, config)
        case WaitUntilStep():
            return lambda ctx, step: waits.run_wait_until(ctx, step, config)
        case WaitUntilDateStep():
            return lambda ctx, step: waits.run_wait_until_date(ctx, step, config)
        case BranchStep():
            return lambda ctx, step: flow.run_branch(ctx, step, config)
        case UpdateStep():
            return lambda ctx, step: flow.run_update(ctx, step, config)
        case ExitStep():
            return lambda ctx, step: flow.run_exit(ctx, step, config)
        case TaskStep():
            return lambda ctx, step: actions.run_task(ctx, step, config)
        case InAppStep():
            return lambda ctx, step: actions.run_in_app(ctx, step, config)
        case WebhookStep():
            return lambda ctx, step: actions.run_webhook(ctx, step, config)
        case _:
            assert_never(config)


def execute(ctx: StepContext, step: Step) -> Outcome:
    """Run ``step`` for ``ctx``'s enrollment."""
    return executor(step.config)(ctx, step)


def next_step(journey: Journey, step_id: str) -> str | None:
    """The step after ``step_id`` in the file, or None after the last one."""
    ids = [s.id for s in journey.steps]
    index = ids.index(journey.step(step_id).id)
    return ids[index + 1] if index + 1 < len(ids) else None
