"""Recording events, shared by the engine, the tracking endpoints, the hit flusher and the
API: store the event, then wake the enrollments that may be waiting for it.

Waiting enrollments (``wait_until``) check their signal when woken; for a product event
(``custom``), running enrollments too check their goal and exit rules at once. Waking early
never cuts a wait short: a woken step that is not satisfied waits again until its deadline.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from campaigns.store.enums import Classification, EnrollmentState, EventKind
from campaigns.store.models import Contact, Enrollment, Event


def record_event(
    session: Session,
    now: datetime,
    *,
    kind: EventKind | str,
    contact_id: int | None = None,
    account_id: int | None = None,
    name: str | None = None,
    value: str | None = None,
    enrollment_id: int | None = None,
    journey_id: int | None = None,
    step_id: str | None = None,
    message_id: int | None = None,
    classification: Classification | str = Classification.HUMAN,
    reason: str | None = None,
    user_agent: str | None = None,
    dedupe_key: str | None = None,
    data: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> Event:
    """Store an event (the caller commits) and wake the enrollments it concerns."""
    event = Event(
        kind=kind,
        name=name,
        value=value,
        contact_id=contact_id,
        account_id=account_id,
        enrollment_id=enrollment_id,
        journey_id=journey_id,
        step_id=step_id,
        message_id=message_id,
        classification=classification,
        reason=reason,
        user_agent=user_agent,
        dedupe_key=dedupe_key,
        data=data or {},
        occurred_at=occurred_at or now,
        recorded_at=now,
    )
    session.add(event)
    if classification != Classification.MACHINE:
        wake(session, now, kind=kind, contact_id=contact_id, account_id=account_id)
    return event


def wake(
    session: Session,
    now: datetime,
    *,
    kind: EventKind | str,
    contact_id: int | None = None,
    account_id: int | None = None,
    contact_ids: list[int] | None = None,
) -> int:
    """Make the waiting enrollments an event concerns due now: a contact's own, and the
    account journeys' enrollment of its account; for an event of an account (no contact),
    every enrollment at the account."""
    who: ColumnElement[bool]
    account_wide = Enrollment.contact_id.is_(None)
    if contact_ids:
        accounts = select(Contact.account_id).where(Contact.id.in_(contact_ids))
        who = Enrollment.contact_id.in_(contact_ids) | (
            account_wide & Enrollment.account_id.in_(accounts)
        )
    elif contact_id:
        account = (
            select(Contact.account_id).where(Contact.id == contact_id).scalar_subquery()
            if account_id is None
            else account_id
        )
        who = (Enrollment.contact_id == contact_id) | (
            account_wide & (Enrollment.account_id == account)
        )
    elif account_id:
        members = select(Contact.id).where(Contact.account_id == account_id)
        who = (Enrollment.account_id == account_id) | Enrollment.contact_id.in_(members)
    else:
        return 0
    states = [EnrollmentState.WAITING] + (
        [EnrollmentState.ACTIVE] if kind == EventKind.CUSTOM else []
    )
    result = session.execute(
        update(Enrollment)
        .where(Enrollment.state.in_(states), Enrollment.next_run_at > now, who)
        .values(next_run_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def contacts_by_email(session: Session, emails: Iterable[str]) -> dict[str, Contact]:
    """Contacts by lowercased address (give lowercased addresses); the exact match uses the
    index, the rest ignores case."""
    wanted = set(emails)
    if not wanted:
        return {}
    found = {
        c.email.lower(): c
        for c in session.scalars(select(Contact).where(Contact.email.in_(wanted)))
    }
    missing = wanted - found.keys()
    if missing:
        for contact in session.scalars(
            select(Contact).where(func.lower(Contact.email).in_(missing))
        ):
            found.setdefault(contact.email.lower(), contact)
    return found


def stored_keys(session: Session, keys: set[str]) -> set[str]:
    """The event dedupe keys among ``keys`` that are already stored."""
    if not keys:
        return set()
    return {
        k for k in session.scalars(select(Event.dedupe_key).where(Event.dedupe_key.in_(keys))) if k
    }
