"""Previewing a step's email as one contact would get it, and sending it as a test.

The dashboard's preview renders an email, survey or invite step of a deployed journey for a
chosen contact, with the journey's current version, the contact's language, their account's
data and the variant asked for, through the same code the engine sends with
(:func:`campaigns.engine.steps.messages.email_parts`,
:meth:`campaigns.content.render.Renderer.personalise`). It writes nothing: no message row, no
event, no enrollment.

A test send delivers that email through the configured transport (the file outbox, or SMTP)
to an address of the reviewer's choosing, with ``[Test]`` before the subject. Its links go
straight to their destinations (nothing is tracked, so a test never counts in a report) and
its answer and unsubscribe links point at no message (they answer 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy.orm import Session

from campaigns.channels.transports import Transport
from campaigns.content.mime import OutgoingEmail, check_address, make_message_id
from campaigns.content.render import Renderer
from campaigns.engine.context import StepContext
from campaigns.engine.steps.messages import email_parts, message_config
from campaigns.journeys.model import EmailStep, InviteStep, Journey, SurveyStep
from campaigns.journeys.segments import SegmentSet
from campaigns.store.models import Account, Contact

TEST_PREFIX = "[Test] "


class PreviewError(ValueError):
    """A preview that cannot be made as asked (no such step, not an email step...)."""


@dataclass(frozen=True)
class EmailStepInfo:
    id: str
    kind: str  # email | survey | invite
    variants: tuple[str, ...]


@dataclass(frozen=True)
class Preview:
    journey: str
    step: str
    variant: str | None
    template: str
    locale: str
    to: str
    to_name: str | None
    subject: str
    html: str
    text: str
    persona: str | None = None  # the contact's persona, whose content (by_persona) is shown


def email_steps(journey: Journey) -> list[EmailStepInfo]:
    """The steps of ``journey`` that send an email, in order."""
    found = []
    for step in journey.steps:
        config = step.config
        if isinstance(config, EmailStep | SurveyStep | InviteStep):
            kind = (
                "survey"
                if isinstance(config, SurveyStep)
                else "invite"
                if isinstance(config, InviteStep)
                else "email"
            )
            variants = tuple(v.id for v in config.variants) if isinstance(config, EmailStep) else ()
            found.append(EmailStepInfo(step.id, kind, variants))
    return found


def _variant(journey: Journey, step_id: str, variant: str | None) -> str | None:
    """The variant to show: the one asked for, which the step must have, or its first."""
    info = next((s for s in email_steps(journey) if s.id == step_id), None)
    if info is None:
        raise PreviewError(f"{journey.key} has no email, survey or invite step {step_id!r}.")
    if variant is not None and variant not in info.variants:
        raise PreviewError(
            f"Step {step_id} has no variant {variant!r}"
            + (f" (it has {', '.join(info.variants)})." if info.variants else " (it has none).")
        )
    if variant is None and info.variants:
        return info.variants[0]
    return variant


def render_preview(
    session: Session,
    renderer: Renderer,
    journey: Journey,
    step_id: str,
    contact: Contact,
    now: datetime,
    *,
    variant: str | None = None,
    links: dict[str, str] | None = None,
    segments: SegmentSet | None = None,
) -> Preview:
    """``step_id``'s email for ``contact`` (nothing is written); ``segments``: the file whose
    persona rules say which ``by_persona`` content the contact gets."""
    variant = _variant(journey, step_id, variant)
    account = session.get(Account, contact.account_id) if contact.account_id else None
    # The engine and the enrollment are not needed to render: the context's values come from
    # the contact, the account and the journey.
    ctx = StepContext(
        tools=cast(Any, None),
        session=session,
        enrollment=cast(Any, None),
        contact=contact,
        account=account,
        journey=journey,
        now=now,
        segments=segments,
    )
    parts = email_parts(ctx, message_config(journey.step(step_id)), variant)
    context = {
        **ctx.values(),
        "links": {name: ctx.render(url) for name, url in (links or {}).items()},
    }
    rendered = renderer.personalise(
        message=0,
        template=parts.template,
        locale=parts.locale,
        subject=ctx.render(parts.subject),
        preheader=ctx.render(parts.preheader) if parts.preheader else None,
        context=context,
        survey=parts.survey,
        invite=parts.invite,
        brand=journey.brand,  # the footer shows the journey's sender identity
    )
    compiled = renderer.compiled(parts.template, parts.locale)
    return Preview(
        journey.key,
        step_id,
        variant,
        parts.template,
        compiled.locale,
        contact.email,
        contact.name,
        rendered.subject,
        rendered.html,
        rendered.text,
        parts.persona,
    )


def send_test(
    renderer: Renderer, transport: Transport, preview: Preview, to: str, now: datetime
) -> str:
    """Send ``preview`` to ``to`` (``[Test]`` before the subject); the Message-ID."""
    to = check_address(to)  # raises InvalidAddress: no header injection through the form
    message_id = make_message_id(0, renderer.domain)
    subject = TEST_PREFIX + preview.subject
    raw = renderer.assemble(
        message=0,
        message_id=message_id,
        to=to,
        to_name=None,
        subject=subject,
        html=preview.html,
        text=preview.text,
        unsubscribe_url=renderer.tokens.unsubscribe_url(0),
        now=now,
    )
    transport.send(
        OutgoingEmail(
            message_id=message_id,
            to=to,
            mail_from=renderer.sender.address,
            subject=subject,
            raw=raw,
            links=(),
        )
    )
    return message_id
