"""Whom an account journey's message step addresses among the account's contacts.

``all`` is every contact of the account (the unsubscribed and opted-out among them get a
row that says why nothing went, like anyone else the delivery policy declines); ``primary``
is the contact named by the account's ``attributes.primary_contact`` (an address), or else
its first contact; roles and a condition narrow ``all`` down. Contacts come in the order
they were created, so a re-run of the step addresses the same people in the same order.
"""

from __future__ import annotations

from functools import lru_cache

from campaigns.engine.context import StepContext
from campaigns.journeys.expressions import Condition
from campaigns.journeys.model import Recipients
from campaigns.store.models import Contact

PRIMARY_ATTRIBUTE = "primary_contact"
"""The account attribute that names its primary contact by email address."""


@lru_cache(maxsize=256)
def _condition(source: str) -> Condition:
    return Condition(source)


def choose(ctx: StepContext, recipients: Recipients) -> list[Contact]:
    """The contacts of ``ctx``'s account that ``recipients`` picks."""
    members = list(ctx.members)
    if recipients.pick == "primary":
        return primary(ctx, members)
    if recipients.roles:
        members = [c for c in members if c.role in recipients.roles]
    if recipients.condition:
        test = _condition(recipients.condition)
        members = [c for c in members if test(ctx.for_recipient(c).values())]
    return members


def primary(ctx: StepContext, members: list[Contact]) -> list[Contact]:
    """The account's primary contact: the one its ``primary_contact`` attribute names, or
    its first contact."""
    named = (ctx.account.attributes or {}).get(PRIMARY_ATTRIBUTE) if ctx.account else None
    if isinstance(named, str):
        for contact in members:
            if contact.email.lower() == named.strip().lower():
                return [contact]
    return members[:1]
