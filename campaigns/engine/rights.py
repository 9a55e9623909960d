"""Data rights (GDPR, Japan's APPI): everything we hold about a contact as JSON, and erasure.

:func:`export` gathers a contact's row, its account's name, its consent history, enrollments,
messages, events, tasks, in-app messages, suppressions and outgoing events. :func:`erase`
takes the person out of every table and leaves two things: the sha256 of the address in
``erased_addresses`` (the send-time gate refuses it for ever) and a tombstone contact row
without personal data (``erased-<id>@erased.invalid``), so that the messages, enrollments and
events that point at it keep the reports' counts right. The ``stats`` table is aggregate and
is left alone; consent records keep their proof under the hash, without the contact's id.

Both record an audit entry naming the address's hash, never the address, in the caller's
transaction; the caller commits. Neither knows about Flask or click.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import JSON, String, Table, Text, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from campaigns import defaults
from campaigns.store import audit, consent
from campaigns.store.consent import email_hash
from campaigns.store.enums import AuditAction, EnrollmentState, OutboundStatus
from campaigns.store.erased import is_tombstone, tombstone_address
from campaigns.store.models import (
    Account,
    AuditEntry,
    Base,
    ConsentRecord,
    Contact,
    Enrollment,
    ErasedAddress,
    Event,
    HealthScore,
    InAppMessage,
    Journey,
    Message,
    OutboundEvent,
    Suppression,
    Task,
    UsageMetric,
)
from campaigns.tracking.events import contacts_by_email

CONTACT = "contact"
"""The audit log's ``target_kind`` for a contact (the target is the address's hash)."""

ERASED = "[erased]"
"""What replaces a name or an address inside free text (task notes, audit details...)."""

# Tables erasure handles row by row through their keys, or that hold nobody's personal data;
# every other table's text and JSON columns are searched for the address (see _sweep), so a
# table added later is covered without being named here.
_NOT_SWEPT = {
    "contacts",
    "accounts",
    "messages",
    "events",
    "stats",
    "health_scores",
    "usage_metrics",
    "allocations",
    "journeys",
    "journey_versions",
    "users",
    "sign_in_attempts",
    "trigger_marks",
    "erased_addresses",
    "alembic_version",
}
_LIVE = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class NoSuchContact(LookupError):
    """No contact has this address (nothing to export)."""


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _row(obj: Any, *, leave: Iterable[str] = ()) -> dict[str, Any]:
    table: Table = obj.__table__
    skipped = set(leave)
    return {c.key: _json(getattr(obj, c.key)) for c in table.columns if c.key not in skipped}


def export(session: Session, email: str, *, actor: str, now: datetime) -> dict[str, Any]:
    """All data about the contact with ``email`` as a JSON-ready dict; audited
    (:attr:`AuditAction.DATA_EXPORT`). :class:`NoSuchContact` if there is none."""
    address = email.strip().lower()
    contact = contacts_by_email(session, [address]).get(address)
    if contact is None:
        raise NoSuchContact(address)
    cid, hashed = contact.id, email_hash(address)
    account = session.get(Account, contact.account_id) if contact.account_id else None
    enrollments = session.scalars(
        select(Enrollment).where(Enrollment.contact_id == cid).order_by(Enrollment.id)
    ).all()
    journeys = {id_: key for id_, key in session.execute(select(Journey.id, Journey.key))}
    messages = session.scalars(
        select(Message)
        .where(or_(Message.contact_id == cid, Message.to_address == address))
        .order_by(Message.id)
    ).all()
    message_ids = [m.id for m in messages]
    about = Event.contact_id == cid
    if message_ids:
        about = or_(about, Event.message_id.in_(message_ids))
    events = session.scalars(select(Event).where(about).order_by(Event.id)).all()
    data: dict[str, Any] = {
        "email": address,
        "exported_at": now.isoformat(),
        "contact": _row(contact),
        "account": (
            {"external_id": account.external_id, "name": account.name} if account else None
        ),
        "consent": [
            _row(r)
            for r in session.scalars(
                select(ConsentRecord)
                .where(or_(ConsentRecord.contact_id == cid, ConsentRecord.email_hash == hashed))
                .order_by(ConsentRecord.at, ConsentRecord.id)
            )
        ],
        "enrollments": [
            {"journey": journeys.get(e.journey_id), **_row(e, leave=_LEASE_COLUMNS)}
            for e in enrollments
        ],
        "messages": [
            {"journey": journeys.get(m.journey_id or 0), **_row(m, leave=("counted",))}
            for m in messages
        ],
        "events": [_row(e) for e in events],
        "tasks": [
            _row(t)
            for t in session.scalars(select(Task).where(Task.contact_id == cid).order_by(Task.id))
        ],
        "in_app_messages": [
            _row(m)
            for m in session.scalars(
                select(InAppMessage).where(InAppMessage.contact_id == cid).order_by(InAppMessage.id)
            )
        ],
        "suppressions": [
            _row(s)
            for s in session.scalars(select(Suppression).where(Suppression.email == address))
        ],
        "outbound_events": [
            _row(o, leave=("claimed_until",))
            for o in session.scalars(
                select(OutboundEvent)
                .where(OutboundEvent.contact_id == cid)
                .order_by(OutboundEvent.id)
            )
        ],
    }
    audit.record(
        session,
        actor,
        AuditAction.DATA_EXPORT,
        hashed,
        kind=CONTACT,
        detail={k: len(v) for k, v in data.items() if isinstance(v, list)},
        at=now,
    )
    return data


_LEASE_COLUMNS = ("claimed_until", "claimed_by", "lease_token", "unfinished_runs", "counted")


@dataclass
class Erasure:
    """What :func:`erase` did: the hash kept, whether a contact was found, and how many rows
    of each table it changed or deleted."""

    email_hash: str
    contact_found: bool
    already_erased: bool
    rows: dict[str, int] = field(default_factory=dict)

    def count(self, table: str, n: int) -> None:
        if n:
            self.rows[table] = self.rows.get(table, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {
            "email_hash": self.email_hash,
            "contact_found": self.contact_found,
            "already_erased": self.already_erased,
            "rows": dict(sorted(self.rows.items())),
        }


def scrub_text(value: str | None, needles: Sequence[str]) -> str | None:
    """``value`` with every needle (case-insensitive) replaced by :data:`ERASED`."""
    if not value:
        return value
    for needle in needles:
        value = re.sub(re.escape(needle), ERASED, value, flags=re.IGNORECASE)
    return value


def scrub_json(value: Any, needles: Sequence[str]) -> Any:
    """A JSON value with the needles replaced in every string, keys included."""
    if isinstance(value, str):
        return scrub_text(value, needles)
    if isinstance(value, list):
        return [scrub_json(v, needles) for v in value]
    if isinstance(value, dict):
        return {scrub_text(k, needles): scrub_json(v, needles) for k, v in value.items()}
    return value


def _needles(contact: Contact | None, address: str) -> list[str]:
    """The personal values to look for in free text, longest first (an address contains its
    local part, which may be a name)."""
    found = {address}
    if contact is not None:
        for value in (contact.name, contact.title):
            if value and len(value.strip()) >= 2:
                found.add(value.strip())
        for value in (contact.attributes or {}).values():
            if isinstance(value, str) and len(value.strip()) >= 4:
                found.add(value.strip())
    return sorted(found, key=len, reverse=True)


def erase(session: Session, email: str, actor: str, *, now: datetime) -> Erasure:
    """Take the person with ``email`` out of every table (see the module's notes); works for
    an address without a contact too (its suppression and mentions go, its hash is kept).
    Erasing twice is harmless. Audited (:attr:`AuditAction.ERASE`) under the hash."""
    address = email.strip().lower()
    hashed = email_hash(address)
    contact = contacts_by_email(session, [address]).get(address)
    already = session.get(ErasedAddress, hashed) is not None
    result = Erasure(hashed, contact is not None, already)
    needles = _needles(contact, address)
    if contact is not None:
        _erase_linked(session, contact, needles, now, result)
    result.count(
        "messages",
        session.execute(
            update(Message)
            .where(func.lower(Message.to_address) == address)
            .values(to_address=None, subject=None)
            .execution_options(synchronize_session=False)
        ).rowcount,  # type: ignore[attr-defined]
    )
    result.count(
        "suppressions",
        session.execute(
            delete(Suppression).where(func.lower(Suppression.email) == address)
        ).rowcount,  # type: ignore[attr-defined]
    )
    session.flush()
    for table in Base.metadata.sorted_tables:
        if table.name not in _NOT_SWEPT:
            result.count(table.name, _sweep(session, table, address, needles))
    if not already:
        session.add(ErasedAddress(email_hash=hashed, erased_at=now))
    audit.record(
        session,
        actor,
        AuditAction.ERASE,
        hashed,
        kind=CONTACT,
        detail={"contact_found": result.contact_found, "rows": dict(result.rows)},
        at=now,
    )
    return result


def _erase_linked(
    session: Session, contact: Contact, needles: Sequence[str], now: datetime, result: Erasure
) -> None:
    """The rows that point at the contact, by their keys; then the contact becomes a tombstone."""
    cid = contact.id
    message_ids = list(session.scalars(select(Message.id).where(Message.contact_id == cid)))
    for message in session.scalars(select(Message).where(Message.contact_id == cid)):
        message.to_address = None
        message.subject = None
        message.links = []
        message.error = scrub_text(message.error, needles)
    result.count("messages", len(message_ids))
    about = Event.contact_id == cid
    if message_ids:
        about = or_(about, Event.message_id.in_(message_ids))
    events = session.scalars(select(Event).where(about)).all()
    for event in events:
        # An answer's score stays (NPS counts it; on its own it names no one); a click's URL,
        # a product event's properties and the reader's user agent go.
        if event.value is not None and not _NUMBER.fullmatch(event.value):
            event.value = None
        event.user_agent = None
        event.data = {}
        event.dedupe_key = None
        event.reason = scrub_text(event.reason, needles)
    result.count("events", len(events))
    enrollments = session.scalars(select(Enrollment).where(Enrollment.contact_id == cid)).all()
    for enrollment in enrollments:
        if enrollment.state in _LIVE:
            enrollment.state = EnrollmentState.EXITED
            enrollment.exit_reason = "erased"
            enrollment.finished_at = now
            enrollment.next_run_at = None
        enrollment.context = {}
        enrollment.error = scrub_text(enrollment.error, needles)
        enrollment.exit_reason = scrub_text(enrollment.exit_reason, needles)
    result.count("enrollments", len(enrollments))
    tasks = session.scalars(
        select(Task).where(
            or_(Task.contact_id == cid, Task.account_id == contact.account_id)
            if contact.account_id
            else Task.contact_id == cid
        )
    ).all()
    for task in tasks:
        title = scrub_text(task.title, needles) or ERASED
        notes, outcome = scrub_text(task.notes, needles), scrub_text(task.outcome, needles)
        if task.contact_id == cid or (title, notes, outcome) != (
            task.title,
            task.notes,
            task.outcome,
        ):
            task.contact_id = None if task.contact_id == cid else task.contact_id
            task.title, task.notes, task.outcome = title, notes, outcome
            result.count("tasks", 1)
    result.count(
        "in_app_messages",
        session.execute(delete(InAppMessage).where(InAppMessage.contact_id == cid)).rowcount,  # type: ignore[attr-defined]
    )
    records = session.scalars(select(ConsentRecord).where(ConsentRecord.contact_id == cid)).all()
    # The retention purge counts the month after the last send from this stamp.
    last = consent.last_sent_at(session, contact)
    stamp = last.astimezone(UTC).isoformat() if last is not None else None
    for entry in records:
        entry.contact_id = None
        entry.actor = scrub_text(entry.actor, needles)
        entry.detail = {**scrub_json(entry.detail, needles), consent.LAST_SENT_AT: stamp}
    result.count("consent_records", len(records))
    # Not yet delivered: never tell a subscriber about an erased person. Delivered: the
    # subscriber has it (erasing there is theirs to do); our copy keeps no payload.
    outbound = OutboundEvent.contact_id == cid
    result.count(
        "outbound_events",
        session.execute(
            delete(OutboundEvent).where(outbound, OutboundEvent.status != OutboundStatus.DELIVERED)
        ).rowcount,  # type: ignore[attr-defined]
    )
    delivered = session.execute(
        update(OutboundEvent)
        .where(outbound)
        .values(payload={}, last_error=None)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    result.count("outbound_events", delivered)
    contact.email = tombstone_address(cid)
    contact.name = contact.role = contact.title = None
    contact.attributes, contact.tags, contact.opt_out = {}, [], []
    contact.subscribed = False
    contact.paused_until = None
    contact.country = None
    contact.consent_basis = contact.consent_source = contact.consent_wording = None
    contact.consent_at = None
    contact.time_zone = defaults.DEFAULT_TIME_ZONE
    result.count("contacts", 1)


def _sweep(session: Session, table: Table, address: str, needles: Sequence[str]) -> int:
    """Scrub the address (and the other needles) from the text and JSON columns of the rows
    of ``table`` whose text mentions the address; one scan of the table."""
    columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
    keys = list(table.primary_key.columns)
    if not columns or not keys:
        return 0
    mentions = or_(*(func.lower(cast(c, Text)).contains(address, autoescape=True) for c in columns))
    changed = 0
    for row in session.execute(select(*keys, *columns).where(mentions)).mappings().all():
        values: dict[str, Any] = {}
        for column in columns:
            old = row[column.name]
            new = (
                scrub_json(old, needles)
                if isinstance(column.type, JSON)
                else scrub_text(old, needles)
            )
            if new != old:
                values[column.name] = new
        if values:
            where = [k == row[k.name] for k in keys]
            session.execute(update(table).where(*where).values(**values))
            changed += 1
    return changed


def entries_about(session: Session, email: str) -> Sequence[AuditEntry]:
    """The audit entries about the address (exports and erasures), newest first."""
    return audit.entries(session, kind=CONTACT, target=email_hash(email))


ACCOUNT = "account"
"""The audit log's ``target_kind`` for an account (the target is its external_id)."""

ContactsChoice = Literal["detach", "erase"]


class AccountHasContacts(Exception):
    """The account still has contacts and the caller did not say what becomes of them."""

    def __init__(self, count: int) -> None:
        super().__init__(f"the account has {count} contacts")
        self.count = count


def delete_account(
    session: Session,
    external_id: str,
    actor: str,
    *,
    now: datetime,
    contacts: ContactsChoice | None = None,
) -> dict[str, Any] | None:
    """Delete the account ``external_id`` (None if there is none); audited
    (:attr:`AuditAction.DELETE`).

    Its contacts are people with histories and consent of their own, so they are not deleted
    with it by surprise: with contacts left, ``contacts`` must say ``detach`` (they stay,
    without an account, as a CRM keeps a person whose company was deleted) or ``erase`` (each
    is erased as by :func:`erase`); otherwise :class:`AccountHasContacts`. Its usage and
    health history goes; its journeys' enrollments end and, with its tasks and events, no
    longer point at it; the ``stats`` table keeps its counts."""
    account = session.scalar(select(Account).where(Account.external_id == external_id))
    if account is None:
        return None
    aid = account.id
    people = session.scalars(select(Contact).where(Contact.account_id == aid)).all()
    if people and contacts is None:
        raise AccountHasContacts(len(people))
    erased = 0
    for person in people:
        if contacts == "erase" and not is_tombstone(person.email):
            erase(session, person.email, actor, now=now)
            erased += 1
        person.account_id = None
    session.flush()
    ended = session.execute(
        update(Enrollment)
        .where(Enrollment.account_id == aid, Enrollment.state.in_(_LIVE))
        .values(
            state=EnrollmentState.EXITED,
            exit_reason="account deleted",
            finished_at=now,
            next_run_at=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    for model in (Enrollment, Task, Event):
        session.execute(
            update(model)
            .where(model.account_id == aid)
            .values(account_id=None)
            .execution_options(synchronize_session=False)
        )
    session.execute(delete(UsageMetric).where(UsageMetric.account_id == aid))
    session.execute(delete(HealthScore).where(HealthScore.account_id == aid))
    session.delete(account)
    detail = {"contacts": len(people), "erased": erased, "enrollments_ended": ended}
    audit.record(
        session, actor, AuditAction.DELETE, external_id, kind=ACCOUNT, detail=detail, at=now
    )
    session.flush()
    return detail
