"""Enrolment: who enters which journey, set-based.

Each trigger is one ``INSERT ... SELECT`` per journey that skips contacts already holding an
enrollment with the same entry key (the unique key ``journey, contact, entry_key`` makes a
second tick, or two ticks at once, harmless):

- ``segment``: members of the journey's segments (and audience) enter once; with
  ``re_entry: after N days`` once per N-day period.
- ``date``: contacts whose account date plus the offset has come. For an offset *before*
  the date, anyone whose date is still ahead (a renewal journey deployed today reaches the
  renewals 60 days out); for an offset *after* it, only within a grace period (deploying a
  CSAT "45 days after contract_start" must not survey every customer ever). The key is the
  date itself when re-entry is allowed, so each renewal starts a new enrollment.
- ``event``: contacts (or every contact of an account) with a matching product event
  recorded in the last grace period; the key is the event when re-entry is allowed.

A share of entrants (``holdout``) is set aside: enrolled, finished at once, sent nothing,
so that reports can measure lift against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
)
from sqlalchemy.orm import Session

from campaigns.engine.audience import RuleCompiler
from campaigns.journeys.expressions import parse
from campaigns.journeys.model import Journey, Trigger
from campaigns.journeys.segments import SegmentSet
from campaigns.store.models import (
    Account,
    Contact,
    Enrollment,
    EnrollmentState,
    Event,
    EventKind,
    JSONType,
    UTCDateTime,
)

DATE_GRACE = timedelta(days=7)
"""How late a date- or event-triggered entry may still happen (a tick that was down)."""


@dataclass(frozen=True)
class EnrolResult:
    journey: str
    entered: int


def enrol(
    session: Session,
    journey: Journey,
    journey_id: int,
    version_id: int,
    segset: SegmentSet,
    now: datetime,
) -> EnrolResult:
    """Enrol every contact who qualifies for ``journey`` now; return how many entered."""
    today = now.date()
    compiler = RuleCompiler(segset, today)
    audience = or_(*(compiler.where(name) for name in journey.segments))
    if journey.audience:
        audience = and_(audience, compiler.compile(parse(journey.audience)))
    first_step = journey.steps[0].id
    trigger = journey.entry.trigger
    # The first of the journey's segments the contact is in, and the account's tier: the
    # enrollment keeps them, and reports and the tuner break their numbers down by them.
    segment = (
        case(*[(compiler.where(name), literal(name)) for name in journey.segments], else_=null())
        if journey.segments
        else null()
    )
    base = (
        select(Contact.id.label("contact_id"), segment.label("segment"), Account.tier.label("tier"))
        .select_from(Contact)
        .outerjoin(Account, Contact.account_id == Account.id)
        .where(audience)
    )
    if trigger == Trigger.SEGMENT:
        key: Any = literal("segment")
        if journey.re_entry.policy == "after" and journey.re_entry.after:
            period = max(1, journey.re_entry.after.days)
            key = literal(f"segment:{today.toordinal() // period}")
        source = base.add_columns(key.label("entry_key"))
    elif trigger == Trigger.DATE:
        column = _date_column(journey.entry.field or "renewal_date")
        offset = journey.entry.offset
        # enter once date + offset <= today, i.e. date <= today - offset ...
        due = column <= today - offset
        if offset < timedelta(0):
            # "90 days before": anyone whose date is still ahead and within the offset, so a
            # journey deployed today still reaches the renewals 60 days out.
            fresh = column >= today
        else:
            # "45 days after": only recent ones (within the grace period); deploying a
            # journey must not reach every customer whose date passed years ago.
            fresh = column >= today - offset - DATE_GRACE
        key = (
            literal("date")
            if journey.re_entry.policy == "never"
            else literal("date:") + cast(column, String)
        )
        source = base.where(column.is_not(None), due, fresh).add_columns(key.label("entry_key"))
    else:
        since = now - DATE_GRACE
        matches = and_(
            Event.kind == EventKind.CUSTOM,
            Event.name == journey.entry.event,
            Event.occurred_at >= since,
            or_(
                Event.contact_id == Contact.id,
                and_(Event.contact_id.is_(None), Event.account_id == Contact.account_id),
            ),
        )
        if journey.re_entry.policy == "never":
            source = base.where(exists().where(matches)).add_columns(
                literal("event").label("entry_key")
            )
        else:
            source = base.join(Event, matches).add_columns(
                (literal("event:") + cast(Event.id, String)).label("entry_key")
            )
    entrants = source.subquery()
    taken = exists().where(
        Enrollment.journey_id == journey_id,
        Enrollment.contact_id == entrants.c.contact_id,
        or_(
            Enrollment.entry_key == entrants.c.entry_key,
            Enrollment.state.in_([EnrollmentState.ACTIVE, EnrollmentState.WAITING]),
        ),
    )
    held = _holdout_on(entrants.c.contact_id, journey_id, journey.holdout)
    rows = (
        select(
            literal(journey_id).label("journey_id"),
            literal(version_id).label("journey_version_id"),
            entrants.c.contact_id,
            entrants.c.entry_key,
            entrants.c.segment,
            entrants.c.tier,
            held.label("holdout"),
            case(
                (held, literal(EnrollmentState.COMPLETED.value)),
                else_=literal(EnrollmentState.ACTIVE.value),
            ).label("state"),
            literal(first_step).label("current_step"),
            case((held, null()), else_=literal(now, type_=UTCDateTime())).label("next_run_at"),
            literal(now, type_=UTCDateTime()).label("entered_at"),
            case((held, literal(now, type_=UTCDateTime())), else_=null()).label("finished_at"),
            case((held, literal("holdout")), else_=null()).label("exit_reason"),
            literal({}, type_=JSONType).label("context"),
        )
        .where(~taken)
        .distinct()
    )
    columns = [
        "journey_id",
        "journey_version_id",
        "contact_id",
        "entry_key",
        "segment",
        "tier",
        "holdout",
        "state",
        "current_step",
        "next_run_at",
        "entered_at",
        "finished_at",
        "exit_reason",
        "context",
    ]
    statement = insert(Enrollment).from_select(columns, rows).returning(Enrollment.id)
    return EnrolResult(journey.key, len(session.scalars(statement).all()))


def _date_column(field: str) -> Any:
    if field.startswith("attributes."):
        return func.date(Account.attributes[field.split(".", 1)[1]].as_string())
    return getattr(Account, field)


def _holdout_on(contact_id: Any, journey_id: int, share: float) -> Any:
    if share <= 0:
        return literal(False)
    return ((cast(contact_id, Integer) * 7919 + journey_id * 104729) % 100) < round(share * 100)
