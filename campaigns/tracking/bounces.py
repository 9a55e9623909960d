"""Bounces and complaints reported by the mail relay, and what they change.

A :class:`Notice` is one recipient's bounce or complaint, whatever format it came in (the API's
webhook parses both: ``campaigns.web.bounces``). :func:`store_notices` acts on them: it
suppresses the address of a hard bounce or a complaint, marks the message bounced, unsubscribes
a complainer and records each as an event, skipping the repeats it can recognise.

It also counts them into the report's ``stats`` (:mod:`campaigns.insight.stats`), in the same
transaction and once per message, whatever the relay repeats: a hard bounce of a message that
was sent counts ``bounced`` and ``bounced_after_send`` (its ``sent`` stays: it was handed to
the relay, and the report's bounce rate takes the two apart), filed under the day the message
was sent; a complaint about a message counts ``complained`` on the day of the complaint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.insight import stats
from campaigns.store import consent, erased, outbox
from campaigns.store.enums import (
    Classification,
    EventKind,
    MessageStatus,
    OutboundType,
    SuppressionReason,
)
from campaigns.store.models import Contact, Event, Message, Suppression
from campaigns.tracking.events import contacts_by_email, record_event, stored_keys


@dataclass
class Notice:
    """One recipient's bounce, complaint or delivery, from either format."""

    index: int  # the notification's place in the request, for its problems
    kind: EventKind  # BOUNCE, COMPLAINT or DELIVERED
    email: str
    hard: bool
    message_ids: tuple[str, ...]
    diagnostic: str | None
    source: str  # "webhook" or "ses"
    key: str | None  # the event's dedupe key, when the notice can be told apart from a repeat
    occurred_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def store_notices(session: Session, notices: list[Notice], now: datetime) -> tuple[int, int]:
    """Act on each notice; returns how many were processed and how many were repeats.

    A hard bounce or a complaint suppresses the address; a hard bounce marks our message (found
    by its Message-ID, sent to that address) bounced; a complaint unsubscribes the contact. Every
    notice but a repeat is recorded as an event. A repeat is one whose key is already stored or,
    without a key, one whose address is already suppressed for the same reason. The caller
    commits; if a concurrent request took a key or an address meanwhile, the commit fails on
    the unique key, and running this again in a new transaction finds the other's rows.
    """
    emails = {n.email for n in notices}
    contacts = contacts_by_email(session, emails)
    wanted = {form for n in notices for m in n.message_ids for form in _bracketed(m)}
    messages = (
        {
            m.message_id: m
            for m in session.scalars(select(Message).where(Message.message_id.in_(wanted)))
        }
        if wanted
        else {}
    )
    suppressed = {
        s.email: s
        for s in session.scalars(select(Suppression).where(Suppression.email.in_(emails)))
    }
    stored = stored_keys(session, {n.key for n in notices if n.key})
    # An erased address is suppressed by its hash already; a late bounce must not write it
    # down again (in a suppression or an event).
    gone = erased.erased_among(session, emails)
    complained: set[int] = set()  # messages whose complaint this request counted
    announced: list[outbox.Item] = []
    processed = duplicates = 0
    with session.no_autoflush:
        for n in notices:
            reason = (
                SuppressionReason.COMPLAINT
                if n.kind == EventKind.COMPLAINT
                else SuppressionReason.HARD_BOUNCE
                if n.hard
                else None
            )
            existing = suppressed.get(n.email)
            repeat = (
                n.key in stored
                if n.key
                else (reason is not None and existing is not None and existing.reason == reason)
            )
            if repeat:
                duplicates += 1
                continue
            if n.email in gone:
                processed += 1
                continue
            if n.key:
                stored.add(n.key)
            forms = [form for m in n.message_ids for form in _bracketed(m)]
            message = next(
                (
                    messages[f]
                    for f in forms
                    if f in messages and (messages[f].to_address or n.email).lower() == n.email
                ),
                None,
            )
            contact = contacts.get(n.email) or (
                session.get(Contact, message.contact_id) if message else None
            )
            if reason is not None and existing is None:
                label = f"{n.source}: {n.diagnostic}" if n.diagnostic else f"{n.source}: {reason}"
                suppressed[n.email] = Suppression(
                    email=n.email, reason=reason, source=label[:255], created_at=now
                )
                session.add(suppressed[n.email])
            if n.hard and message is not None:
                _bounce(session, message, (n.diagnostic or "hard bounce")[:2000])
            if n.kind == EventKind.COMPLAINT and contact is not None:
                if contact.subscribed or contact.consent_basis is not None:
                    # A complaint refuses marketing mail as an unsubscribe does.
                    consent.record(
                        session,
                        contact,
                        None,
                        at=n.occurred_at or now,
                        source=f"complaint:{n.source}",
                        detail={"message_id": message.id if message else None},
                    )
                contact.subscribed = False
            if (
                n.kind == EventKind.COMPLAINT
                and message is not None
                and message.id not in complained
                and _first_complaint(session, message)
            ):
                complained.add(message.id)
                stats.count_message(session, message, ("complained",), n.occurred_at or now)
            bounce = n.kind == EventKind.BOUNCE
            delivered = n.kind == EventKind.DELIVERED
            record_event(
                session,
                now,
                kind=n.kind,
                contact_id=contact.id if contact else None,
                account_id=contact.account_id if contact else None,
                message_id=message.id if message else None,
                enrollment_id=message.enrollment_id if message else None,
                journey_id=message.journey_id if message else None,
                step_id=message.step_id if message else None,
                classification=(
                    Classification.UNKNOWN if bounce or delivered else Classification.HUMAN
                ),
                reason=(
                    ("hard bounce" if n.hard else "soft bounce")
                    if bounce
                    else "delivered"
                    if delivered
                    else "complaint"
                ),
                value=n.diagnostic[:2048] if n.diagnostic else None,
                dedupe_key=n.key,
                data={k: v for k, v in n.detail.items() if v is not None},
                occurred_at=n.occurred_at,
            )
            type_ = _OUTBOUND.get(n.kind)
            if type_ is not None and outbox.wants(session, type_):
                announced.append(
                    outbox.Item(
                        type_,
                        n.occurred_at or now,
                        contact_id=contact.id if contact else None,
                        account_id=contact.account_id if contact else None,
                        message_id=message.id if message else None,
                        data=_notice_data(n),
                    )
                )
            processed += 1
    outbox.emit_many(session, announced)
    return processed, duplicates


_OUTBOUND = {
    EventKind.BOUNCE: OutboundType.MESSAGE_BOUNCED,
    EventKind.DELIVERED: OutboundType.MESSAGE_DELIVERED,
}
"""The notices announced as outgoing events (a complaint is not one of the types: it shows
as ``contact.unsubscribed`` where it unsubscribes)."""


def _notice_data(n: Notice) -> dict[str, Any]:
    data: dict[str, Any] = {"source": n.source, "email": n.email}
    if n.kind == EventKind.BOUNCE:
        data["hard"] = bool(n.hard)
        data["diagnostic"] = (n.diagnostic or "")[:500] or None
    if n.kind == EventKind.DELIVERED:
        data["smtp_response"] = (n.diagnostic or "")[:500] or None
    return data


def _bounce(session: Session, message: Message, error: str) -> None:
    """Mark ``message`` bounced and, if it had been sent, count the bounce. One conditional
    ``UPDATE ... RETURNING``: of two notices about one message, repeated or concurrent, one
    changes it and counts. A message bounced while still in flight (no ``sent_at``) is
    counted by the rollup, as a bounce at sending is."""
    statement = (
        update(Message)
        .where(Message.id == message.id, Message.status != MessageStatus.BOUNCED)
        .values(status=MessageStatus.BOUNCED, error=error)
        .returning(Message.sent_at)
    )
    changed = session.execute(statement.execution_options(synchronize_session=False)).first()
    session.expire(message, ["status", "error"])
    if changed is not None and changed.sent_at is not None:
        stats.count_message(session, message, ("bounced", "bounced_after_send"), changed.sent_at)


def _first_complaint(session: Session, message: Message) -> bool:
    """Whether no complaint about ``message`` is stored yet. A no-op ``UPDATE`` of the message
    first takes its row lock (PostgreSQL) or the write lock (SQLite) until the commit, so two
    requests about one message check, and count, in turn."""
    session.execute(
        update(Message)
        .where(Message.id == message.id)
        .values(status=Message.status)
        .execution_options(synchronize_session=False)
    )
    earlier = (
        select(Event.id)
        .where(Event.message_id == message.id, Event.kind == EventKind.COMPLAINT)
        .limit(1)
    )
    return session.scalar(earlier) is None


def _bracketed(message_id: str) -> tuple[str, str]:
    """A Message-ID with and without its angle brackets: relays report it either way."""
    core = message_id.strip().strip("<>")
    return core, f"<{core}>"
