"""Steps that act rather than email the contact: a task for a person (and the notice to its
owner), an in-app message, a webhook. Each writes or sends through its channel
(:mod:`campaigns.channels`) exactly once per enrollment and step.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from campaigns.channels import in_app, owner, task, webhook
from campaigns.channels.base import Status
from campaigns.content.mime import OutgoingEmail
from campaigns.engine import controls, delivery, recipients, sending
from campaigns.engine.context import NEXT, PAUSE, Outcome, StepContext, Value, owner_name
from campaigns.journeys.model import InAppStep, Step, TaskStep, WebhookStep
from campaigns.store.enums import Channel, MessageStatus, TaskMail
from campaigns.store.models import Message, Task, User


def run_task(ctx: StepContext, step: Step, config: TaskStep) -> Outcome:
    """Create the task for the account owner (once) and tell the owner by email.

    An account journey's task is one per account (its enrollment is). A contact journey's
    opens one open task per account and step (``per: account``, the default): the account's
    other contacts join that task, and its owner hears of it once; ``per: contact`` opens
    one for each contact."""
    assigned = config.assignee != "owner"
    address = config.assignee if assigned else (ctx.account.owner_email if ctx.account else None)
    open_key = None
    if ctx.contact is not None and ctx.account is not None and config.per == "account":
        open_key = f"{ctx.enrollment.journey_id}:{step.id}:{ctx.account.id}"
    receipt = ctx.tools.channels.task.push(
        task.Order(
            session=ctx.session,
            enrollment_id=ctx.enrollment.id,
            journey_id=ctx.enrollment.journey_id,
            step_id=step.id,
            account_id=ctx.account.id if ctx.account else None,
            contact_id=ctx.contact.id if ctx.contact else None,
            owner_email=address or None,  # no owner: the task waits in the unassigned inbox
            kind=config.kind,
            title=ctx.text(config.title),
            notes=ctx.text(config.notes) or None,
            due_at=ctx.now + config.due,
            created_at=ctx.now,
            open_key=open_key,
        )
    )
    row = ctx.session.get(Task, receipt.ref) if receipt.ref is not None else None
    if row is not None and row.enrollment_id != ctx.enrollment.id:
        # Joined the account's open task: remember it (task_done reads it); no second notice.
        tasks = {**ctx.enrollment.context.get("tasks", {}), step.id: row.id}
        ctx.enrollment.context = {**ctx.enrollment.context, "tasks": tasks}
        return NEXT
    if row is not None and row.owner_email and notify_owner(ctx, step, row).paused:
        return PAUSE  # the notice is queued in the send batch: come back once it went
    return NEXT


def notify_owner(ctx: StepContext, step: Step, row: Task) -> Outcome:
    """Tell the task's owner by mail to them as a user: their name and language (the
    journey's when they have none), no cap, no window (see :mod:`campaigns.channels.owner`)."""
    channel = ctx.tools.channels.owner
    to = row.owner_email
    if not to or not channel.available():
        return NEXT
    user = ctx.session.execute(
        select(User.name, User.locale, User.task_mail).where(User.email == to.lower())
    ).first()
    if user is not None and user.task_mail == TaskMail.DIGEST:
        return NEXT  # the owner takes a daily digest (campaigns.engine.taskmail) instead
    if row.notified_at is None:
        row.notified_at = ctx.now  # mailed on its own: a later digest does not list it as new
    locale = owner.language(user.locale if user else None, ctx.journey.locale)
    name = (user.name if user else None) or owner_name(ctx.account)
    facts: dict[str, Value] = {
        "title": row.title,
        "kind": row.kind,
        "notes": row.notes,
        "priority": row.priority,
    }
    due = row.due_at  # a moment: the notice shows its day in the owner's zone
    about = ctx.contact or (ctx.members[0] if ctx.members else None)  # whose page the link opens

    def compose(message: Message) -> OutgoingEmail:
        return channel.compose(
            owner.Notice(
                message=message.id,
                message_id=message.message_id,
                to=to,
                to_name=name,
                locale=locale,
                task=facts,
                due=due,
                contact_id=about.id if about else None,
                context=ctx.values(),
                now=ctx.now,
                time_zone=ctx.time_zone,
            )
        )

    mail = sending.Mail(
        step_id=step.id,
        attempt_key="owner",
        channel=channel,
        kind=Channel.OWNER,
        to=to,
        category="transactional",
        template=owner.TEMPLATE,
        locale=locale,
        marketing=False,
        compose=compose,
    )
    return sending.send(ctx, mail)


def run_in_app(ctx: StepContext, step: Step, config: InAppStep) -> Outcome:
    """Show the message in the product: to the contact, or in an account journey to each of
    the step's recipients."""
    if ctx.contact is None:
        for contact in recipients.choose(ctx, ctx.journey.recipients_of(step)):
            run_in_app(ctx.for_recipient(contact), step, config)
        return NEXT
    ctx.tools.channels.in_app.push(
        in_app.Note(
            session=ctx.session,
            enrollment_id=ctx.enrollment.id,
            journey_id=ctx.enrollment.journey_id,
            step_id=step.id,
            contact_id=ctx.person.id,
            title=ctx.text(config.title),
            body=ctx.text(config.body),
            url=ctx.render(config.url) if config.url else None,
            created_at=ctx.now,
            expires_at=ctx.now + config.expires if config.expires else None,
        )
    )
    return NEXT


def run_webhook(ctx: StepContext, step: Step, config: WebhookStep) -> Outcome:
    """POST the step's signed payload once; retried with the backoff while the receiver
    fails or is unreachable, failed for good on a 4xx (other than 408 and 429)."""
    now = ctx.now
    message = sending.message_row(
        ctx, step.id, "1", channel=Channel.WEBHOOK, to_address=config.url[:320]
    )
    if message.status in (MessageStatus.SENT, MessageStatus.FAILED):
        return NEXT
    later = sending.waiting(message, ctx, step.id)
    if later is not None:
        return later
    if not ctx.sending.may_send():
        return PAUSE  # the batch stops here (time budget or lease): the next run posts it
    body = webhook_payload(ctx, step, config)
    message.status, message.tries = MessageStatus.SENDING, message.tries + 1
    ctx.session.commit()  # fenced by the lease, as every commit of the batch
    receipt = ctx.tools.channels.webhook.push(webhook.Call(ctx.render(config.url), body))
    outcome = NEXT
    if receipt.status == Status.SENT:
        message.status, message.sent_at, message.error = MessageStatus.SENT, now, None
    elif receipt.status == Status.FAILED:
        message.status, message.error = MessageStatus.FAILED, receipt.error
    else:
        wait = delivery.backoff(message.tries)
        controls.backoff(message, receipt.error or "unreachable", now, wait)
        outcome = NEXT if wait is None else Outcome(goto=step.id, wait_until=now + wait)
    ctx.session.commit()
    return outcome


def webhook_payload(ctx: StepContext, step: Step, config: WebhookStep) -> bytes:
    """The JSON document a webhook step posts: who, where in which journey, and the step's
    payload rendered for the contact."""

    def render(value: Value) -> Value:
        if isinstance(value, str):
            return ctx.render(value)
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v) for v in value]
        return value

    account = ctx.account
    document = {
        "journey": ctx.journey.key,
        "step": step.id,
        "enrollment": ctx.enrollment.id,
        "contact": {"email": ctx.contact.email, "name": ctx.contact.name} if ctx.contact else None,
        "account": {"external_id": account.external_id, "name": account.name} if account else None,
        "sent_at": ctx.now.isoformat(),
        "data": render(dict(config.payload)),
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")
