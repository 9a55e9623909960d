"""The outbox of outgoing events: what happened, written in the transaction of the change
that made it happen, one row per subscriber that wants it (``outbound_events``).

Writing the event with the change is the whole guarantee: if the change commits, so does
the event, and the deliverer (:mod:`campaigns.engine.hooks`) POSTs it until the subscriber
says 2xx; if the change rolls back, nothing is announced. A process that dies after the
commit loses nothing.

The subscribers reach the event sites on the session: :func:`attach` gives a sessionmaker
an :class:`Outbox` (the composition root does it from ``EVENT_SUBSCRIBERS``), and
:func:`emit` reads it from ``session.info``. A session without one, or with no subscribers,
writes nothing and costs one dictionary lookup, which keeps the send, enrol and tracking
paths as fast as they were.

An event names the rows it is about (contact, account, journey, message, enrollment);
:func:`emit_many` looks their names up once per batch (the contact's email, the account's
``external_id``, the journey's key, the message's Message-ID) for the payload.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from campaigns.config import Subscriber
from campaigns.store.enums import Classification, OutboundStatus, OutboundType
from campaigns.store.models import (
    Account,
    Contact,
    Enrollment,
    Journey,
    Message,
    OutboundEvent,
    Task,
)

INFO_KEY = "campaigns.outbox"
"""Where a session keeps its :class:`Outbox` (``Session.info``)."""

MACHINE_TYPES = frozenset({OutboundType.MESSAGE_OPENED, OutboundType.MESSAGE_CLICKED})
"""The types a subscriber with ``machine=no`` does not get when a machine made them."""


class Outbox:
    """The subscribers, as the event sites see them: who wants each type."""

    def __init__(self, subscribers: Sequence[Subscriber]) -> None:
        self.subscribers = tuple(subscribers)
        self._wanting = {
            str(t): tuple(s.name for s in self.subscribers if s.wants(str(t))) for t in OutboundType
        }
        self._human_only = frozenset(s.name for s in self.subscribers if not s.machine)

    def __bool__(self) -> bool:
        return bool(self.subscribers)

    def wanting(self, type_: str, *, machine: bool = False) -> tuple[str, ...]:
        """The names of the subscribers that take an event of ``type_``."""
        names = self._wanting.get(type_, ())
        if machine and type_ in MACHINE_TYPES and self._human_only:
            return tuple(n for n in names if n not in self._human_only)
        return names

    def wants(self, type_: str) -> bool:
        return bool(self._wanting.get(type_))


def attach(sessions: sessionmaker[Session], outbox: Outbox) -> sessionmaker[Session]:
    """A copy of ``sessions`` whose sessions carry ``outbox`` (the caller's is unchanged)."""
    kw = dict(sessions.kw)
    kw["info"] = {**(kw.get("info") or {}), INFO_KEY: outbox}
    return sessionmaker(class_=sessions.class_, **kw)


def outbox_of(session: Session) -> Outbox | None:
    """The session's outbox if it has subscribers, else None (then there is nothing to do)."""
    outbox: Outbox | None = session.info.get(INFO_KEY)
    return outbox if outbox else None


def wants(session: Session, type_: str) -> bool:
    """Whether any subscriber takes ``type_``: lets a site skip gathering what it would emit."""
    outbox = outbox_of(session)
    return outbox is not None and outbox.wants(type_)


@dataclass
class Item:
    """One event to emit: its type, when it happened, the rows it is about and the rest of
    its data. ``machine``: an open or click a machine made (``classification`` says so)."""

    type: str
    occurred_at: datetime
    contact_id: int | None = None
    account_id: int | None = None
    journey_id: int | None = None
    message_id: int | None = None  # the messages row; the payload carries its Message-ID
    enrollment_id: int | None = None
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    machine: bool = False


def emit(
    session: Session,
    type_: str,
    occurred_at: datetime,
    payload: dict[str, Any] | None = None,
    contact_id: int | None = None,
    **about: Any,
) -> str | None:
    """Write one event for every subscriber that wants ``type_`` (the caller commits); its
    ``uid``, or None when no subscriber wants it. ``payload`` is the event's own data;
    ``about`` names more rows (``account_id``, ``journey_id``, ``message_id``, ...)."""
    if outbox_of(session) is None:
        return None
    uids = emit_many(
        session, [Item(type_, occurred_at, contact_id=contact_id, data=payload or {}, **about)]
    )
    return uids[0] if uids else None


def emit_many(session: Session, items: Sequence[Item]) -> list[str]:
    """Write ``items`` for the subscribers that want each, in one bulk insert (the caller
    commits); the uids of the events written (one per item that anyone wants)."""
    outbox = outbox_of(session)
    if outbox is None or not items:
        return []
    wanted = [(item, outbox.wanting(item.type, machine=item.machine)) for item in items]
    wanted = [(item, names) for item, names in wanted if names]
    if not wanted:
        return []
    names = _Names(session, [item for item, _ in wanted])
    rows: list[dict[str, Any]] = []
    uids: list[str] = []
    now = datetime.now(UTC)
    for item, subscribers in wanted:
        uid = str(uuid.uuid4())
        uids.append(uid)
        occurred = _utc(item.occurred_at)
        body = {
            "id": uid,
            "type": item.type,
            "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
            "data": names.data(item),
        }
        for subscriber in subscribers:
            rows.append(
                {
                    "uid": uid,
                    "subscriber": subscriber,
                    "type": item.type,
                    "occurred_at": occurred,
                    "payload": body,
                    "contact_id": item.contact_id,
                    "status": OutboundStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": occurred,  # due at once (in the event's own time)
                    "created_at": now,
                }
            )
    for start in range(0, len(rows), 1_000):
        session.execute(insert(OutboundEvent), rows[start : start + 1_000])
    return uids


def emit_task(
    session: Session, type_: str, task: Task, at: datetime, *, by: str | None = None
) -> None:
    """``task.created`` or ``task.done`` for ``task`` (flushed, so it has its id)."""
    if not wants(session, type_):
        return
    data: dict[str, Any] = {
        "task": {
            "id": task.id,
            "kind": task.kind,
            "title": task.title,
            "priority": task.priority,
            "owner": task.owner_email,
            "due_at": task.due_at.isoformat() if task.due_at else None,
            "trigger": task.trigger,
            "outcome": task.outcome,
        }
    }
    if by:
        data["by"] = by
    emit_many(
        session,
        [
            Item(
                type_,
                at,
                contact_id=task.contact_id,
                account_id=task.account_id,
                journey_id=task.journey_id,
                enrollment_id=task.enrollment_id,
                step=task.step_id,
                data=data,
            )
        ],
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Names:
    """The names of the rows a batch of events is about, each table read once."""

    def __init__(self, session: Session, items: Iterable[Item]) -> None:
        items = list(items)
        enrollment_ids = {i.enrollment_id for i in items if i.enrollment_id is not None}
        self.enrollments: dict[int, tuple[int | None, int | None, int]] = {}
        if enrollment_ids:
            self.enrollments = {
                row.id: (row.contact_id, row.account_id, row.journey_id)
                for row in session.execute(
                    select(
                        Enrollment.id,
                        Enrollment.contact_id,
                        Enrollment.account_id,
                        Enrollment.journey_id,
                    ).where(Enrollment.id.in_(enrollment_ids))
                )
            }
        message_ids = {i.message_id for i in items if i.message_id is not None}
        self.messages: dict[int, Any] = {}
        if message_ids:
            self.messages = {
                row.id: row
                for row in session.execute(
                    select(
                        Message.id,
                        Message.message_id,
                        Message.channel,
                        Message.subject,
                        Message.template,
                        Message.variant,
                        Message.contact_id,
                        Message.journey_id,
                        Message.step_id,
                        Message.enrollment_id,
                    ).where(Message.id.in_(message_ids))
                )
            }
        contact_ids = {self._contact_id(i) for i in items} - {None}
        self.contacts: dict[int, Any] = {}
        if contact_ids:
            self.contacts = {
                row.id: row
                for row in session.execute(
                    select(Contact.id, Contact.email, Contact.name, Contact.account_id).where(
                        Contact.id.in_(contact_ids)
                    )
                )
            }
        account_ids = {self._account_id(i) for i in items} - {None}
        self.accounts: dict[int, Any] = {}
        if account_ids:
            self.accounts = {
                row.id: row
                for row in session.execute(
                    select(Account.id, Account.external_id, Account.name).where(
                        Account.id.in_(account_ids)
                    )
                )
            }
        journey_ids = {self._journey_id(i) for i in items} - {None}
        self.journeys: dict[int, str] = {}
        if journey_ids:
            self.journeys = {
                int(row.id): str(row.key)
                for row in session.execute(
                    select(Journey.id, Journey.key).where(Journey.id.in_(journey_ids))
                )
            }

    def _enrollment(self, item: Item) -> tuple[int | None, int | None, int | None]:
        enrollment_id = item.enrollment_id
        if enrollment_id is None and item.message_id is not None:
            message = self.messages.get(item.message_id)
            enrollment_id = message.enrollment_id if message is not None else None
        if enrollment_id is None:
            return None, None, None
        return self.enrollments.get(enrollment_id, (None, None, None))

    def _contact_id(self, item: Item) -> int | None:
        if item.contact_id is not None:
            return item.contact_id
        message = self.messages.get(item.message_id) if item.message_id is not None else None
        if message is not None and message.contact_id is not None:
            return int(message.contact_id)
        return self._enrollment(item)[0]

    def _account_id(self, item: Item) -> int | None:
        if item.account_id is not None:
            return item.account_id
        contact_id = self._contact_id(item)
        contact = self.contacts.get(contact_id) if contact_id is not None else None
        if contact is not None and contact.account_id is not None:
            return int(contact.account_id)
        return self._enrollment(item)[1]

    def _journey_id(self, item: Item) -> int | None:
        if item.journey_id is not None:
            return item.journey_id
        message = self.messages.get(item.message_id) if item.message_id is not None else None
        if message is not None and message.journey_id is not None:
            return int(message.journey_id)
        return self._enrollment(item)[2]

    def data(self, item: Item) -> dict[str, Any]:
        contact_id, account_id = self._contact_id(item), self._account_id(item)
        contact = self.contacts.get(contact_id) if contact_id is not None else None
        account = self.accounts.get(account_id) if account_id is not None else None
        journey_id = self._journey_id(item)
        message = self.messages.get(item.message_id) if item.message_id is not None else None
        data: dict[str, Any] = {
            "contact": {"email": contact.email, "name": contact.name} if contact else None,
            "account": (
                {"external_id": account.external_id, "name": account.name} if account else None
            ),
            "journey": self.journeys.get(journey_id) if journey_id is not None else None,
            "step": item.step or (message.step_id if message is not None else None),
        }
        if message is not None:
            data["message"] = {
                "message_id": message.message_id,
                "channel": message.channel,
                "subject": message.subject,
                "template": message.template,
                "variant": message.variant,
            }
        if item.type in MACHINE_TYPES and "classification" not in item.data:
            data["classification"] = (
                Classification.MACHINE if item.machine else Classification.HUMAN
            )
        data.update(item.data)
        return data
