"""Enrolment: who enters which journey, set-based.

Each trigger is one ``INSERT ... SELECT`` per journey that skips contacts already holding an
enrollment with the same entry key (the unique key ``journey, contact, entry_key`` makes a
second tick, or two ticks at once, harmless):

- ``segment``: members of the journey's segments (and audience) enter once; with
  ``re_entry: after N days`` again once N days have passed since their last entry.
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

``re_entry: after N days`` counts from the **last** entry, whatever the trigger: nobody
enters while an enrollment of theirs in the journey runs, or within N days of the start of
their latest one (``entered_at``); an event trigger takes at most one of a subject's events
per pass.

A share of entrants (the journey's ``holdout``, and the global control group) is held out:
enrolled, sent nothing, and kept until the goal window ends (:mod:`campaigns.engine.holdout`),
so that reports can measure lift against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Column as SAColumn
from sqlalchemy import (
    ColumnElement,
    Integer,
    MetaData,
    Select,
    String,
    Table,
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
from sqlalchemy.sql.selectable import CTE, Subquery

from campaigns.engine import holdout
from campaigns.engine.audience import RuleCompiler, live_tiers
from campaigns.journeys.expressions import parse
from campaigns.journeys.model import Journey, Trigger
from campaigns.journeys.segments import SegmentSet
from campaigns.store.enums import EnrollmentState, EventKind, OutboundType
from campaigns.store.models import Account, Contact, Enrollment, Event, JSONType, UTCDateTime
from campaigns.store.outbox import Item, emit_many, wants

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
    control: float = 0.0,
) -> EnrolResult:
    """Enrol every contact who qualifies for ``journey`` now; return how many entered.
    ``control`` is the share (0 to 1) of subjects in the global control group."""
    today = now.date()
    tiers = live_tiers(segset, today)
    compiler = RuleCompiler(segset, today, tier=tiers.c.tier)
    if journey.per_account:
        base = _accounts(compiler, journey, segset, tiers)
    else:
        base = _contacts(compiler, journey, tiers)
    trigger = journey.entry.trigger
    if trigger == Trigger.SEGMENT:
        source = _by_segment(base, journey, today)
    elif trigger == Trigger.DATE:
        source = _by_date(base, journey, today)
    else:
        source = _by_event(base, journey, now)
    rows = _rows(source.subquery(), journey, journey_id, version_id, now, control)
    announce = wants(session, OutboundType.JOURNEY_ENTERED)
    entered, ids = _insert(session, rows, returning=announce)
    if ids:  # one bulk insert into the outbox, in the enrolment's transaction
        emit_many(
            session,
            [
                Item(
                    OutboundType.JOURNEY_ENTERED,
                    now,
                    enrollment_id=i,
                    journey_id=journey_id,
                    data={"version": version_id, "trigger": str(trigger)},
                )
                for i in ids
            ],
        )
    return EnrolResult(journey.key, entered)


def _insert(
    session: Session, rows: Select[Any], *, returning: bool = False
) -> tuple[int, list[int]]:
    """Write ``rows`` (one per subject and entry key: no DISTINCT) into ``enrollments``; how
    many were written, and (``returning``) their ids.

    On PostgreSQL the new rows are first worked out in full into a temporary table: the check
    for an existing enrollment must not read the table while the same statement grows it (a
    nested-loop check of each entrant then rescans the rows just written, invisible but there,
    and the first enrolment of a large journey into an empty table takes minutes). SQLite
    stages a statement that reads the table it writes by itself; there the new ids are
    counted as they come back (SQLite reports no row count for a statement with a CTE).
    """
    conn = session.connection()
    source: Select[Any] = rows
    stage: Table | None = None
    if conn.dialect.name == "postgresql":
        table = Enrollment.__table__
        columns = (SAColumn(name, table.c[name].type) for name in COLUMNS)
        stage = Table("new_enrollments", MetaData(), *columns, prefixes=["TEMPORARY"])
        stage.create(conn)  # an error rolls the transaction back, and the table with it
        conn.execute(insert(stage).from_select(list(COLUMNS), rows))
        source = select(*stage.c)
    statement = insert(Enrollment).from_select(list(COLUMNS), source)
    ids: list[int] = []
    if stage is None:
        ids = list(conn.execute(statement.returning(Enrollment.id)).scalars())
        entered = len(ids)
    elif returning:  # the new ids are wanted for their outgoing events
        ids = list(conn.execute(statement.returning(Enrollment.id)).scalars())
        entered = len(ids)
        stage.drop(conn)
    else:
        counted = conn.execute(statement, execution_options={"preserve_rowcount": True})
        entered = int(counted.rowcount)  # no CTE here: the driver's count is the truth
        stage.drop(conn)
    return entered, (ids if returning else [])


def _contacts(compiler: RuleCompiler, journey: Journey, tiers: CTE) -> Select[Any]:
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
            # Only an account journey's enrollment names its account: a contact's is found
            # through the contact (and a NULL costs no foreign-key check on a million rows).
            cast(null(), Integer).label("account_id"),
            segment.label("segment"),
            tiers.c.tier.label("tier"),
        )
        .select_from(Contact)
        .outerjoin(Account, Contact.account_id == Account.id)
        .outerjoin(tiers, tiers.c.id == Account.id)
        .where(audience)
    )


def _accounts(
    compiler: RuleCompiler, journey: Journey, segset: SegmentSet, tiers: CTE
) -> Select[Any]:
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
            tiers.c.tier.label("tier"),
        )
        .select_from(Account)
        .join(tiers, tiers.c.id == Account.id)
        .where(audience)
    )


def _by_segment(base: Select[Any], journey: Journey, today: date) -> Select[Any]:
    """Members enter once; with ``re_entry: after N days`` again once N days have passed
    since their last entry (the ``taken`` rule of :func:`_rows`), keyed by the day."""
    key = literal("segment")
    if journey.re_entry.policy == "after" and journey.re_entry.after:
        key = literal(f"segment:{today.isoformat()}")
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
    entrants: Subquery,
    journey: Journey,
    journey_id: int,
    version_id: int,
    now: datetime,
    control: float = 0.0,
) -> Select[Any]:
    """The new enrollments of ``entrants`` who hold none with the same entry key, nor a
    running one, nor (``re_entry: after N days``) one that started less than N days ago. The
    held-out share (the journey's holdout and the global control group) waits, sent nothing,
    until its goal window ends."""
    subject = (
        and_(Enrollment.contact_id.is_(None), Enrollment.account_id == entrants.c.account_id)
        if journey.per_account
        else Enrollment.contact_id == entrants.c.contact_id
    )
    recent = (
        [Enrollment.entered_at > literal(now - journey.re_entry.after, type_=UTCDateTime())]
        if journey.re_entry.policy == "after" and journey.re_entry.after
        else []
    )
    taken = exists().where(
        Enrollment.journey_id == journey_id,
        subject,
        or_(
            Enrollment.entry_key == entrants.c.entry_key,
            Enrollment.state.in_([EnrollmentState.ACTIVE, EnrollmentState.WAITING]),
            *recent,
        ),
    )
    who = entrants.c.account_id if journey.per_account else entrants.c.contact_id
    in_control = holdout.global_control(who, control)
    held = or_(in_control, _holdout_on(who, journey_id, journey.holdout))
    at = literal(now, type_=UTCDateTime())
    until = literal(holdout.held_until(now, journey), type_=UTCDateTime())
    rows: Select[Any] = select(
        literal(journey_id).label("journey_id"),
        literal(version_id).label("journey_version_id"),
        entrants.c.contact_id,
        entrants.c.account_id,
        entrants.c.entry_key,
        entrants.c.segment,
        entrants.c.tier,
        held.label("holdout"),
        literal(EnrollmentState.ACTIVE.value).label("state"),
        literal(journey.steps[0].id).label("current_step"),
        case((held, until), else_=at).label("next_run_at"),
        at.label("entered_at"),
        literal(None, type_=UTCDateTime()).label("finished_at"),
        literal(None, type_=String()).label("exit_reason"),
        case(
            (in_control, literal(holdout.CONTROL_MARK, type_=JSONType)),
            else_=literal({}, type_=JSONType),
        ).label("context"),
    ).where(~taken)
    if journey.entry.trigger == Trigger.EVENT and journey.re_entry.policy != "never":
        # One entry per subject and pass, however many of its events came since the last.
        first = func.min(entrants.c.entry_key).over(partition_by=who)
        each = rows.add_columns(first.label("first_key")).subquery()
        rows = select(*(each.c[name] for name in COLUMNS)).where(
            each.c.entry_key == each.c.first_key
        )
    return rows


def _date_column(field: str) -> ColumnElement[date]:
    if field.startswith("attributes."):
        return func.date(Account.attributes[field.split(".", 1)[1]].as_string())
    column: ColumnElement[date] = getattr(Account, field)
    return column


def _holdout_on(
    contact_id: ColumnElement[int], journey_id: int, share: float
) -> ColumnElement[bool]:
    return holdout.journey_holdout(contact_id, journey_id, share)
