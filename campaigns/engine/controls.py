"""The delivery policy, engine-wide: may this email go, and when.

Functions, not methods of the engine, so every channel that sends email asks the same
questions in the same order: is the address suppressed; has the contact unsubscribed, no
consent under their country's rule (:mod:`campaigns.engine.consent`), opted out of the
category or paused (marketing email only); does the sending window or the
frequency cap hold it (marketing only); does a ``send_time: best_hour`` step wait for its
hour; does the per-domain rate limit hold it (every email). The pure arithmetic of windows,
the cap and backoff is :mod:`campaigns.engine.delivery`, of windows
:mod:`campaigns.journeys.windows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from campaigns.engine import consent, delivery
from campaigns.engine.context import StepContext
from campaigns.engine.ratelimit import RateLimiter
from campaigns.insight import sendtime, tuning
from campaigns.journeys import windows
from campaigns.store import erased
from campaigns.store.enums import Channel, MessageStatus, SuppressionReason
from campaigns.store.models import Contact, Message, Suppression

NOT_MARKETING = ("transactional", "operational")
"""Message categories that are not marketing mail: task mail to owners and operational steps
(``purpose: operational``); the frequency cap does not count them."""


@dataclass(frozen=True)
class Hold:
    """Not now: the email may go at ``until``; ``reason`` is stored on its row."""

    until: datetime
    reason: str


def declined(ctx: StepContext, address: str, category: str, marketing: bool) -> str | None:
    """Why this email must not go (an erased or suppressed address, unsubscribed, no consent
    under the contact's country's rule, the contact's preferences), or None. Preferences,
    unsubscribing and consent bind marketing email only; an erased address
    (:mod:`campaigns.store.erased`) and suppression bind every email."""
    if ctx.sending.erased(address):
        return "address erased"
    if ctx.sending.suppressed(address):
        return "address suppressed"
    if not marketing:
        return None
    contact = ctx.person
    if not contact.subscribed:
        return "unsubscribed"
    no_consent = without_consent(ctx, contact)
    if no_consent is not None:
        return no_consent
    if category in (contact.opt_out or []):
        return f"opted out of {category}"
    if contact.paused_until is not None and contact.paused_until > ctx.now:
        return f"paused until {contact.paused_until.date().isoformat()}"
    return None


def without_consent(ctx: StepContext, contact: Contact) -> str | None:
    """Why ``contact`` may not get marketing mail under their country's rule, or None."""
    rules = ctx.tools.settings.consent_rules
    account = (
        ctx.account if ctx.account is not None and ctx.account.id == contact.account_id else None
    )
    country = consent.country_of(
        contact.country, account.country if account is not None else None, rules.default_country
    )
    return consent.refusal(rules, country, contact.consent_basis)


def held(ctx: StepContext, step_id: str, first_attempt: bool) -> Hold | None:
    """When a marketing email must wait: the sending window in the contact's zone, the
    frequency cap, and (on a step's first attempt) its learned send hour."""
    now, zone, settings = ctx.now, ctx.time_zone, ctx.tools.settings
    window = ctx.journey.sending_window
    opening = windows.next_opening(window, now, zone)
    recent = ctx.sending.recent_sends(ctx.person.id) if settings.frequency_cap > 0 else []
    released = delivery.cap_release(
        list(recent), settings.frequency_cap, settings.frequency_period, now
    )
    when = max(opening, released)
    if released > opening:  # (so released > now) the cap ends: the window's next opening after
        when = windows.next_opening(window, released, zone)
    reason = "frequency cap" if released > now else "sending window"
    timing = best_hour(ctx, step_id, when) if first_attempt else None
    if timing is not None and timing.at > when:
        when, reason = timing.at, f"send time: {timing.hour:02d}:00 {zone or 'UTC'}"
    return Hold(when, reason) if when > now else None


def best_hour(ctx: StepContext, step_id: str, base: datetime) -> sendtime.Timing | None:
    """For a ``send_time: best_hour`` step, when its message should go, given that it may
    go at ``base`` (see :mod:`campaigns.insight.sendtime`). Decided once per enrollment and
    step and kept, with why, in the enrollment's context; a re-run of the step (once the
    wait is over) finds the decision there and does not wait again."""
    step = ctx.journey.step(step_id)
    if step.send_time != sendtime.BEST_HOUR:
        return None  # the common case costs one attribute check
    decided = dict(ctx.enrollment.context.get("send_time", {}))
    if step_id in decided:
        return None
    segment = ctx.enrollment.segment or ""
    timing = ctx.tools.send_times.choose(
        ctx.session,
        journey_id=ctx.enrollment.journey_id,
        step_id=step_id,
        segment=segment,
        goal=step.goal or tuning.default_goal(step.type.value),
        base=base,
        window=ctx.journey.sending_window,
        time_zone=ctx.time_zone,
        now=ctx.now,
    )
    decided[step_id] = timing.record(segment, ctx.time_zone)
    ctx.enrollment.context = {**ctx.enrollment.context, "send_time": decided}
    return timing


def rate_limited(limiter: RateLimiter | None, address: str, now: datetime) -> Hold | None:
    """The per-domain rate limit: when the email may go, if not now."""
    later = limiter.acquire(address, now) if limiter is not None else None
    return Hold(later, "domain rate limit") if later is not None else None


def recent_sends_query(
    contact_ids: Sequence[int], now: datetime, period: timedelta
) -> Select[int | None, datetime | None]:
    """(contact id, sent at) of the marketing email sent to these contacts within the
    frequency cap's period."""
    return select(Message.contact_id, Message.sent_at).where(
        Message.contact_id.in_(contact_ids),
        Message.channel == Channel.EMAIL,
        Message.status == MessageStatus.SENT,
        Message.category.not_in(NOT_MARKETING) | Message.category.is_(None),
        Message.sent_at > now - period,
    )


def is_suppressed(session: Session, address: str) -> bool:
    """Whether ``address`` is on the suppression list, or was erased (its hash is in
    ``erased_addresses``: an erased address is suppressed without being written down)."""
    found = session.scalar(
        select(Suppression.id).where(Suppression.email == address.lower()).limit(1)
    )
    return found is not None or erased.is_erased(session, address)


def suppress(
    session: Session, address: str, reason: SuppressionReason, source: str, now: datetime
) -> None:
    """Put ``address`` on the suppression list (once)."""
    if not is_suppressed(session, address):
        session.add(
            Suppression(email=address.lower(), reason=reason, source=source, created_at=now)
        )


def backoff(message: Message, error: str, now: datetime, wait: timedelta | None) -> None:
    """A temporary failure: retry after ``wait``, or fail for good when there is none."""
    message.error = error[:2000]
    if wait is None:
        message.status = MessageStatus.FAILED
        message.not_before = None
    else:
        message.status = MessageStatus.DEFERRED
        message.not_before = now + wait
