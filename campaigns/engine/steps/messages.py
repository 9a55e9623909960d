"""Email, survey and invite steps: one customer email each, exactly once.

A ``channel: best_of [email, task]`` step first draws its channel for the contact's segment
(:mod:`campaigns.insight.tuning`), and an email step with variants draws its variant; both
draws are kept, so a re-run takes the same one. A step with ``by_persona`` sends each
contact the content of their persona (the step's own when it has none for them); the
message row keeps the persona, so a re-run sends the same content and reports count it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from campaigns.channels.email import Draft
from campaigns.content.mime import OutgoingEmail
from campaigns.content.render import InviteSpec, Origin, SurveySpec
from campaigns.engine import recipients, sending
from campaigns.engine.context import NEXT, PAUSE, Outcome, StepContext
from campaigns.engine.steps.actions import run_in_app, run_task
from campaigns.insight import tuning
from campaigns.journeys.model import (
    EmailStep,
    InAppStep,
    InviteStep,
    Step,
    SurveyStep,
    TaskStep,
    text_for,
)
from campaigns.store.enums import Channel
from campaigns.store.models import Message

MessageConfig = EmailStep | SurveyStep | InviteStep

OPERATIONAL = "operational"
"""The category of an operational step's messages (``purpose: operational``): no preference
binds it, and the frequency cap neither holds nor counts it."""


@dataclass(frozen=True)
class EmailParts:
    """What an email, survey or invite step sends one contact: the template, subject and
    preheader (Jinja strings in the contact's language) and the survey or invite blocks."""

    template: str
    locale: str
    subject: str
    preheader: str | None
    survey: SurveySpec | None = None
    invite: InviteSpec | None = None
    persona: str | None = None  # the contact's persona (whether or not it chose the content)


def run_message(ctx: StepContext, step: Step) -> Outcome:
    """Email, survey and invite steps; a ``best_of`` step picks its channel first."""
    channel = choose_channel(ctx, step) if step.best_of else step.type.value
    config = step.blocks[channel]
    match config:
        case TaskStep():
            return run_task(ctx, step, config)
        case InAppStep():
            if ctx.contact is None:
                for contact in recipients.choose(ctx, ctx.journey.recipients_of(step)):
                    run_in_app(ctx.for_recipient(contact), step, config)
                return NEXT
            return run_in_app(ctx, step, config)
        case EmailStep() | SurveyStep() | InviteStep():
            if ctx.contact is None:
                return send_to_recipients(ctx, step, config)
            return send_email(ctx, step, config)
        case _:
            raise LookupError(f"step {step.id}: channel {channel} cannot carry a message")


def choose_channel(ctx: StepContext, step: Step) -> str:
    """A ``best_of`` step's channel for this contact, drawn by the tuner for the contact's
    segment and kept in the enrollment's context so that a re-run takes the same channel."""
    chosen = dict(ctx.enrollment.context.get("arms", {}))
    if chosen.get(step.id) not in step.best_of:
        goal = step.goal or tuning.default_goal(step.best_of[0])
        chosen[step.id] = ctx.tools.tuner.choose(
            ctx.session,
            journey_id=ctx.enrollment.journey_id,
            step_id=step.id,
            segment=ctx.enrollment.segment,
            arms=step.best_of,
            dimension="channel",
            goal=goal,
            now=ctx.now,
        )
        ctx.enrollment.context = {**ctx.enrollment.context, "arms": chosen}
    return str(chosen[step.id])


def send_to_recipients(ctx: StepContext, step: Step, config: MessageConfig) -> Outcome:
    """An account journey's email, survey or invite: one message to each recipient (each
    its own row, keyed ``to:<contact id>``, so a re-run sends none twice). The step is done
    when every recipient's message is (sent, declined or failed); until then it waits for
    the earliest deferred one, or pauses while the batch delivers."""
    chosen = recipients.choose(ctx, ctx.journey.recipients_of(step))
    if not chosen:
        notes = dict(ctx.enrollment.context.get("no_recipients", {}))
        notes[step.id] = ctx.journey.recipients_of(step).describe()
        ctx.enrollment.context = {**ctx.enrollment.context, "no_recipients": notes}
        return NEXT
    outcomes = [send_email(ctx.for_recipient(c), step, config, f"to:{c.id}") for c in chosen]
    if any(o.paused for o in outcomes):
        return PAUSE
    waits = [o.wait_until for o in outcomes if o.wait_until is not None]
    return Outcome(goto=step.id, wait_until=min(waits)) if waits else NEXT


def choose_variant(
    ctx: StepContext, step: Step, config: EmailStep, attempt_key: str = "1"
) -> str | None:
    """An email step's variant for this contact: the one its message was written with, or
    a new draw by the tuner."""
    if not config.variants:
        return None
    names = tuple(v.id for v in config.variants)
    variant = ctx.sending.variant(ctx.enrollment.id, step.id, attempt_key)  # a re-run keeps it
    if variant in names:
        return variant
    return ctx.tools.tuner.choose(
        ctx.session,
        journey_id=ctx.enrollment.journey_id,
        step_id=step.id,
        segment=ctx.enrollment.segment,
        arms=names,
        dimension="variant",
        goal=step.goal or tuning.default_goal(step.type.value),
        now=ctx.now,
    )


def send_email(
    ctx: StepContext, step: Step, config: MessageConfig, attempt_key: str = "1"
) -> Outcome:
    """Send the email of an email, survey or invite step to ``ctx``'s contact, exactly once."""
    variant = (
        choose_variant(ctx, step, config, attempt_key) if isinstance(config, EmailStep) else None
    )
    written = ctx.sending.written((ctx.enrollment.id, step.id, attempt_key))
    persona = written.persona if written is not None else ctx.persona  # a re-run keeps it
    # the dashboard's preview renders the same parts
    parts = email_parts(ctx, config, variant, persona)
    marketing = ctx.journey.is_marketing(step)
    category = (
        (step.category or ("survey" if parts.survey else "event" if parts.invite else "marketing"))
        if marketing
        else OPERATIONAL
    )
    channel = ctx.tools.channels.email
    links = ctx.tools.links
    to, to_name = ctx.person.email, ctx.person.name
    origin = Origin(
        brand=ctx.journey.brand,
        owner_email=ctx.account.owner_email if ctx.account is not None else None,
        journey=ctx.journey.key,
        step=step.id,
    )

    def compose(message: Message) -> OutgoingEmail:
        context = {**ctx.values(), "links": {name: ctx.render(url) for name, url in links.items()}}
        subject, preheader = ctx.render(parts.subject), parts.preheader
        return channel.compose(
            Draft(
                message=message.id,
                message_id=message.message_id,
                to=to,
                to_name=to_name,
                template=parts.template,
                locale=parts.locale,
                subject=subject,
                preheader=ctx.render(preheader) if preheader else None,
                context=context,
                now=ctx.now,
                survey=parts.survey,
                invite=parts.invite,
                origin=origin,
            )
        )

    mail = sending.Mail(
        step_id=step.id,
        attempt_key=attempt_key,
        channel=channel,
        kind=Channel.EMAIL,
        to=to,
        category=category,
        template=parts.template,
        locale=parts.locale,
        marketing=marketing,
        compose=compose,
        variant=variant,
        persona=parts.persona,
    )
    return sending.send(ctx, mail)


def message_config(step: Step) -> MessageConfig:
    """The email, survey or invite config of ``step`` (for a preview of its email)."""
    config = step.config
    if not isinstance(config, EmailStep | SurveyStep | InviteStep):
        raise LookupError(f"step {step.id} is a {step.type.value} step: it sends no email")
    return config


def email_parts(
    ctx: StepContext,
    config: MessageConfig,
    variant: str | None = None,
    persona: str | bool | None = True,
) -> EmailParts:
    """The parts of ``config``'s email for ``ctx``'s contact, with ``variant`` (one of the
    step's variant ids) applied, or the content of ``persona`` (True: the contact's own);
    the engine sends these, the dashboard previews them."""
    locale = ctx.locale
    template, subject = config.template, config.subject
    preheader = config.preheader if isinstance(config, EmailStep) else None
    who = ctx.persona if persona is True else persona or None
    content = config.by_persona.get(who) if isinstance(who, str) else None
    if content is not None:
        template = content.template or template
        subject = content.subject or subject
        preheader = content.preheader or preheader
    survey, invite = None, None
    match config:
        case EmailStep():
            if variant is not None:
                chosen = next(v for v in config.variants if v.id == variant)
                template = chosen.template or template
                subject = chosen.subject or subject
                preheader = chosen.preheader or preheader
        case SurveyStep():
            survey = SurveySpec(config.scale, ctx.text(config.question) or None)
        case InviteStep():
            invite = InviteSpec(
                ctx.text(config.event_name),
                config.starts_at,
                config.duration,
                config.url,
                ctx.time_zone,
            )
        case _:
            assert_never(config)
    return EmailParts(
        template,
        locale,
        text_for(subject, locale, ctx.journey.locale) or "",
        text_for(preheader, locale, ctx.journey.locale),
        survey,
        invite,
        who if isinstance(who, str) else None,
    )
