"""Sending one email of a step exactly once, on the channel that carries it.

The step's Message row is found or written (keyed by enrollment, step and attempt), the
delivery policy is asked (:mod:`campaigns.engine.controls`), and the email is queued in the
send batch, which renders it, marks it "sending" with its Message-ID, commits, and only then
hands it to the channel. The step pauses and runs again once the batch has the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from campaigns.channels.base import Channel
from campaigns.content.mime import OutgoingEmail
from campaigns.engine import controls
from campaigns.engine.context import NEXT, PAUSE, Outcome, StepContext
from campaigns.engine.outgoing import Outgoing
from campaigns.store.enums import MessageStatus
from campaigns.store.models import Message

DONE = (MessageStatus.SENT, MessageStatus.BOUNCED, MessageStatus.SUPPRESSED, MessageStatus.FAILED)
"""A message in one of these states is not sent again."""


@dataclass(frozen=True)
class Mail:
    """One email of a step: its row's key and columns, the channel, whether it is
    marketing (the contact's preferences, window and cap apply) and how to render it
    once its row has an id."""

    step_id: str
    attempt_key: str
    channel: Channel[OutgoingEmail]
    kind: str  # the row's channel column: campaigns.store.enums.Channel
    to: str
    category: str
    template: str
    locale: str
    marketing: bool
    compose: Callable[[Message], OutgoingEmail]
    variant: str | None = None
    persona: str | None = None  # the contact's persona, whose content the email carries


def message_row(ctx: StepContext, step_id: str, attempt_key: str, **columns: object) -> Message:
    """The message row of this attempt, written if it is not there yet.

    The batch loaded its enrollments' messages at once; a new row is inserted with the
    batch's next flush. The unique (enrollment, step, attempt key) cannot be taken by
    another worker meanwhile: the lease fences every commit.
    """
    values: dict[str, object] = dict(
        enrollment_id=ctx.enrollment.id,
        contact_id=ctx.contact.id if ctx.contact is not None else None,
        journey_id=ctx.enrollment.journey_id,
        step_id=step_id,
        attempt_key=attempt_key,
        created_at=ctx.now,
        status=MessageStatus.PENDING,
        tries=0,
        links=[],
        **columns,
    )
    return ctx.sending.message((ctx.enrollment.id, step_id, attempt_key), values)


def waiting(message: Message, ctx: StepContext, step_id: str) -> Outcome | None:
    """The step's message was deferred to a later time: wait for it."""
    if (
        message.status == MessageStatus.DEFERRED
        and message.not_before
        and message.not_before > ctx.now
    ):
        return Outcome(goto=step_id, wait_until=message.not_before)
    return None


def send(ctx: StepContext, mail: Mail) -> Outcome:
    """Send one message of a step exactly once: queued in the send batch, which marks it
    "sending" and hands it to the channel (the step runs again to see the result)."""
    message = message_row(
        ctx,
        mail.step_id,
        mail.attempt_key,
        channel=mail.kind,
        category=mail.category,
        variant=mail.variant,
        persona=mail.persona,
        template=mail.template,
        locale=mail.locale,
        to_address=mail.to,
    )
    if message.status in DONE:
        return NEXT
    later = waiting(message, ctx, mail.step_id)
    if later is not None:
        return later
    skip = controls.declined(ctx, mail.to, mail.category, mail.marketing)
    if skip is not None:
        message.status, message.error = MessageStatus.SUPPRESSED, skip
        return NEXT
    first = mail.attempt_key == "1" or mail.attempt_key.startswith("to:")
    hold = controls.held(ctx, mail.step_id, first) if mail.marketing else None
    hold = hold or controls.rate_limited(ctx.tools.rate_limiter, mail.to, ctx.now)
    if hold is not None:
        message.status, message.not_before = MessageStatus.DEFERRED, hold.until
        message.error = hold.reason
        ctx.sending.counts.deferred += 1
        return Outcome(goto=mail.step_id, wait_until=hold.until)
    outgoing = Outgoing(
        message,
        mail.channel,
        lambda: mail.compose(message),
        mail.marketing,
        ctx.contact.id if ctx.contact is not None else None,
    )
    ctx.sending.queue(outgoing)
    return PAUSE
