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

An account journey (``enrol: account``) enrols accounts instead, by the same triggers:
an account is in a segment when the rule holds for the account (a rule over account fields)
or for any of its contacts; a date is the account's; one event of the account or of any of
its contacts is one entry. The key is (journey, account, entry key) among the enrollments
without a contact.

A share of entrants (``holdout``) is set aside: enrolled, finished at once, sent nothing,
so that reports can measure lift against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
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
from sqlalchemy.sql.selectable import Subquery

from campaigns.engine.audience import RuleCompiler
from campaigns.journeys.expressions import parse
from campaigns.journeys.model import Journey, Trigger
from campaigns.journeys.segments import SegmentSet
from campaigns.store.enums import EnrollmentState, EventKind
from campaigns.store.models import Account, Contact, Enrollment, Event, JSONType, UTCDateTime

DATE_GRACE = timedelta(days=7)
"""How late a date- or event-triggered entry may still happen (a tick that was down)."""


@dataclass(frozen=True)
class EnrolResult:
    journey: str
    entered: int


COLUMNS = (
    "journey_id",
    "journey_version_id",
    "contact_id",
    "account_id",
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
)
"""The enrollment columns one INSERT ... SELECT fills."""


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
    if journey.per_account:
        base = _accounts(compiler, journey, segset)
    else:
        base = _contacts(compiler, journey)
    trigger = journey.entry.trigger
    if trigger == Trigger.SEGMENT:
        source = _by_segment(base, journey, today)
    elif trigger == Trigger.DATE:
        source = _by_date(base, journey, today)
    else:
        source = _by_event(base, journey, now)
    rows = _rows(source.subquery(), journey, journey_id, version_id, now)
    statement = insert(Enrollment).from_select(list(COLUMNS), rows).returning(Enrollment.id)
    return EnrolResult(journey.key, len(session.scalars(statement).all()))


def _contacts(compiler: RuleCompiler, journey: Journey) -> Select[Any]:
    """The contacts in the journey's segments and audience, with the first segment each is
    in and the account's tier (the enrollment keeps them; reports break down by them)."""
    audience = or_(*(compiler.where(name) for name in journey.segments))
    if journey.audience:
        audience = and_(audience, compiler.compile(parse(journey.audience)))
    # The first of the journey's segments the contact is in, and the account's tier: the
    # enrollment keeps them, and reports and the tuner break their numbers down by them.
    segment = (
        case(*[(compiler.where(name), literal(name)) for name in journey.segments], else_=null())
        if journey.segments
        else null()
    )
    return (
        select(
            Contact.id.label("contact_id"),
            Contact.account_id.label("account_id"),
            segment.label("segment"),
            Account.tier.label("tier"),
        )
        .select_from(Contact)
        .outerjoin(Account, Contact.account_id == Account.id)
        .where(audience)
    )


def _accounts(compiler: RuleCompiler, journey: Journey, segset: SegmentSet) -> Select[Any]:
    """The accounts in the journey's segments (the rule holds for the account, or for any
    of its contacts when it reads contact fields) and its audience (account fields)."""

    def member(name: str) -> ColumnElement[bool]:
        rule = compiler.where(name)
        if name in segset and segset.reads_contacts(segset.get(name)):
            return exists().where(Contact.account_id == Account.id, rule)
        return rule

    audience = or_(*(member(name) for name in journey.segments))
    if journey.audience:
        audience = and_(audience, compiler.compile(parse(journey.audience)))
    segment = (
        case(*[(member(name), literal(name)) for name in journey.segments], else_=null())
        if journey.segments
        else null()
    )
    return (
        select(
            cast(null(), Integer).label("contact_id"),
            Account.id.label("account_id"),
            segment.label("segment"),
            Account.tier.label("tier"),
        )
        .select_from(Account)
        .where(audience)
    )


def _by_segment(base: Select[Any], journey: Journey, today: date) -> Select[Any]:
    """Members enter once; with ``re_entry: after N days`` once per N-day period."""
    key = literal("segment")
    if journey.re_entry.policy == "after" and journey.re_entry.after:
        period = max(1, journey.re_entry.after.days)
        key = literal(f"segment:{today.toordinal() // period}")
    return base.add_columns(key.label("entry_key"))


def _by_date(base: Select[Any], journey: Journey, today: date) -> Select[Any]:
    """Contacts whose account date plus the offset has come (see the module's docstring)."""
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
    return base.where(column.is_not(None), due, fresh).add_columns(key.label("entry_key"))


def _by_event(base: Select[Any], journey: Journey, now: datetime) -> Select[Any]:
    """Contacts (or every contact of an account) with a matching recent product event; for
    an account journey, accounts with one, of the account or of any of its contacts."""
    since = now - DATE_GRACE
    if journey.per_account:
        members = select(Contact.id).where(Contact.account_id == Account.id)
        whose = or_(Event.account_id == Account.id, Event.contact_id.in_(members))
    else:
        whose = or_(
            Event.contact_id == Contact.id,
            and_(Event.contact_id.is_(None), Event.account_id == Contact.account_id),
        )
    matches = and_(
        Event.kind == EventKind.CUSTOM,
        Event.name == journey.entry.event,
        Event.occurred_at >= since,
        whose,
    )
    if journey.re_entry.policy == "never":
        return base.where(exists().where(matches)).add_columns(literal("event").label("entry_key"))
    return base.join(Event, matches).add_columns(
        (literal("event:") + cast(Event.id, String)).label("entry_key")
    )


def _rows(
    entrants: Subquery, journey: Journey, journey_id: int, version_id: int, now: datetime
) -> Select[Any]:
    """The new enrollments of ``entrants`` who hold none with the same entry key (nor a
    running one); the holdout's share finished at once."""
    subject = (
        and_(Enrollment.contact_id.is_(None), Enrollment.account_id == entrants.c.account_id)
        if journey.per_account
        else Enrollment.contact_id == entrants.c.contact_id
    )
    taken = exists().where(
        Enrollment.journey_id == journey_id,
        subject,
        or_(
            Enrollment.entry_key == entrants.c.entry_key,
            Enrollment.state.in_([EnrollmentState.ACTIVE, EnrollmentState.WAITING]),
        ),
    )
    who = entrants.c.account_id if journey.per_account else entrants.c.contact_id
    held = _holdout_on(who, journey_id, journey.holdout)
    at = literal(now, type_=UTCDateTime())
    return (
        select(
            literal(journey_id).label("journey_id"),
            literal(version_id).label("journey_version_id"),
            entrants.c.contact_id,
            entrants.c.account_id,
            entrants.c.entry_key,
            entrants.c.segment,
            entrants.c.tier,
            held.label("holdout"),
            case(
                (held, literal(EnrollmentState.COMPLETED.value)),
                else_=literal(EnrollmentState.ACTIVE.value),
            ).label("state"),
            literal(journey.steps[0].id).label("current_step"),
            case((held, null()), else_=at).label("next_run_at"),
            at.label("entered_at"),
            case((held, at), else_=null()).label("finished_at"),
            case((held, literal("holdout")), else_=null()).label("exit_reason"),
            literal({}, type_=JSONType).label("context"),
        )
        .where(~taken)
        .distinct()
    )


def _date_column(field: str) -> ColumnElement[date]:
    if field.startswith("attributes."):
        return func.date(Account.attributes[field.split(".", 1)[1]].as_string())
    column: ColumnElement[date] = getattr(Account, field)
    return column


def _holdout_on(
    contact_id: ColumnElement[int], journey_id: int, share: float
) -> ColumnElement[bool]:
    if share <= 0:
        return literal(False)
    return ((cast(contact_id, Integer) * 7919 + journey_id * 104729) % 100) < round(share * 100)
