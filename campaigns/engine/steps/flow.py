"""Steps that steer the enrollment without reaching anyone: branch, update, exit."""

from __future__ import annotations

from campaigns.engine.context import NEXT, Outcome, StepContext
from campaigns.journeys.expressions import Condition
from campaigns.journeys.model import BranchStep, ExitStep, Step, UpdateStep
from campaigns.store.models import Contact


def run_branch(ctx: StepContext, step: Step, config: BranchStep) -> Outcome:
    """The first arm whose condition holds, else ``otherwise`` (None: the next step)."""
    values, functions = ctx.values(), ctx.functions()
    for arm in config.arms:
        if Condition(arm.condition)(values, functions):
            return Outcome(goto=arm.goto)
    return Outcome(goto=config.otherwise)


def run_update(ctx: StepContext, step: Step, config: UpdateStep) -> Outcome:
    """Set attributes, the contact's locale or the health score; add and remove tags (in an
    account journey, on every contact of the account)."""
    account = ctx.account
    account_attrs = dict(account.attributes or {}) if account else {}
    people = [ctx.contact] if ctx.contact is not None else list(ctx.members)
    for key, raw in config.set.items():
        value = ctx.render(raw) if isinstance(raw, str) else raw
        if key.startswith("attributes.") and account:
            account_attrs[key.split(".", 1)[1]] = value
        elif key == "health_score" and account:
            try:
                account.health_score = max(0, min(100, int(value)))
            except (TypeError, ValueError):
                ctx.enrollment.error = f"update {step.id}: health_score {value!r} is not a number"
        elif key.startswith("contact.") and ctx.contact is not None:
            _set_contact(ctx.contact, key, value)
    for contact in people:
        tags = [t for t in (contact.tags or []) if t not in config.remove_tags]
        contact.tags = tags + [t for t in config.add_tags if t not in tags]
    if account:
        account.attributes = account_attrs
    ctx.forget_values()
    return NEXT


def _set_contact(contact: Contact, key: str, value: object) -> None:
    if key.startswith("contact.attributes."):
        contact.attributes = {**(contact.attributes or {}), key.split(".", 2)[2]: value}
    elif key == "contact.locale" and isinstance(value, str) and value:
        contact.locale = value


def run_exit(ctx: StepContext, step: Step, config: ExitStep) -> Outcome:
    return Outcome(finish=config.reason)
