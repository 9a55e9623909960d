"""A contact's timeline: everything that happened between us and one person, newest first.

The CRM view a CSM reads before a call: every message (sent, bounced, held back and why),
every open, click, answer, RSVP, comment, unsubscribe, bounce and complaint, product events
posted to the API, tasks (created, done with their outcome), in-app messages (shown, seen,
clicked) and journey entries and exits. Opens and clicks from machines (image proxies,
privacy prefetch, link scanners) are in it too, marked as such with the classifier's reason,
because "the scanner clicked every link" is something a CSM should be able to see, and not
mistake for interest.

It reads a few indexed queries per page (each bounded by ``limit``) and merges them by
time; ``before`` pages further back. :func:`account_timeline` is the same for a whole
account: its contacts' entries (each naming the person), the account's own events (a
health band that changed, a product event about the account) and its tasks and journeys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, false, select
from sqlalchemy.orm import Session

from campaigns.insight.stats import group_metric
from campaigns.store.enums import (
    Classification,
    ConsentAction,
    EventKind,
    MessageStatus,
    TaskStatus,
)
from campaigns.store.models import (
    ConsentRecord,
    Contact,
    Enrollment,
    Event,
    InAppMessage,
    Journey,
    Message,
    Task,
)

LIMIT = 100
"""Entries per page."""


@dataclass(frozen=True)
class Entry:
    """One thing on the timeline."""

    at: datetime
    # message, open, click, answer, rsvp, comment, unsubscribe, bounce, complaint, event,
    # task, task_done, in_app, entered, left, consent
    kind: str
    title: str
    detail: str = ""
    journey: str | None = None
    step: str | None = None
    machine: bool = False  # a machine's hit, shown apart
    reason: str | None = None  # the classifier's reason, for hits
    data: dict[str, Any] = field(default_factory=dict)
    who: str | None = None  # on an account's timeline: the contact (or "the account")

    def to_json(self) -> dict[str, Any]:
        extra = {"who": self.who} if self.who is not None else {}
        return {
            **extra,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "title": self.title,
            "detail": self.detail or None,
            "journey": self.journey,
            "step": self.step,
            "machine": self.machine,
            "reason": self.reason,
        }


_MESSAGE_STATES = {
    MessageStatus.SENT: "Sent",
    MessageStatus.BOUNCED: "Bounced",
    MessageStatus.SUPPRESSED: "Not sent",
    MessageStatus.FAILED: "Failed",
    MessageStatus.DEFERRED: "Scheduled",
    MessageStatus.PENDING: "Scheduled",
    MessageStatus.SENDING: "Sending",
}


def contact_timeline(
    session: Session, contact_id: int, *, before: datetime | None = None, limit: int = LIMIT
) -> list[Entry]:
    """The contact's newest ``limit`` entries (older than ``before``, if given)."""
    account_id = session.scalar(select(Contact.account_id).where(Contact.id == contact_id))
    whose = Enrollment.contact_id == contact_id
    if account_id is not None:  # the account journeys of their account, too
        whose = whose | (Enrollment.contact_id.is_(None) & (Enrollment.account_id == account_id))
    return _merged(
        session,
        messages=Message.contact_id == contact_id,
        events=Event.contact_id == contact_id,
        tasks=Task.contact_id == contact_id,
        in_app=InAppMessage.contact_id == contact_id,
        enrollments=whose,
        consents=ConsentRecord.contact_id == contact_id,
        before=before,
        limit=limit,
    )


def account_timeline(
    session: Session,
    account_id: int,
    contacts: Mapping[int, str],
    *,
    before: datetime | None = None,
    limit: int = LIMIT,
) -> list[Entry]:
    """An account's newest ``limit`` entries: everything of its ``contacts`` (id -> the name
    shown with each entry), the events of the account itself (``health_band_changed``, an
    account's product events: no contact), its tasks, and its journeys (its contacts' and
    the account journeys'). Each query is bounded by ``limit`` and indexed."""
    ids = sorted(contacts)
    of_contacts = Message.contact_id.in_(ids) if ids else false()
    own: ColumnElement[bool] = (Event.account_id == account_id) & Event.contact_id.is_(None)
    events = (Event.contact_id.in_(ids) | own) if ids else own
    enrollments = (Enrollment.contact_id.is_(None) & (Enrollment.account_id == account_id)) | (
        Enrollment.contact_id.in_(ids) if ids else false()
    )
    return _merged(
        session,
        messages=of_contacts,
        events=events,
        tasks=Task.account_id == account_id,
        in_app=InAppMessage.contact_id.in_(ids) if ids else false(),
        enrollments=enrollments,
        consents=ConsentRecord.contact_id.in_(ids) if ids else false(),
        before=before,
        limit=limit,
        who=contacts,
    )


def _merged(
    session: Session,
    *,
    messages: ColumnElement[bool],
    events: ColumnElement[bool],
    tasks: ColumnElement[bool],
    in_app: ColumnElement[bool],
    enrollments: ColumnElement[bool],
    consents: ColumnElement[bool],
    before: datetime | None,
    limit: int,
    who: Mapping[int, str] | None = None,
) -> list[Entry]:
    """The newest ``limit`` entries of the rows each condition picks, merged by time."""
    keys = dict(session.execute(select(Journey.id, Journey.key)).all())
    names = who or {}
    entries: list[Entry] = []

    def window(column: Any) -> list[Any]:
        return [column < before] if before is not None else []

    def person(contact_id: int | None) -> str | None:
        return names.get(contact_id) if who is not None and contact_id is not None else None

    q_messages = select(Message).where(
        messages, Message.attempt_key != "owner", *window(Message.created_at)
    )
    for message in session.scalars(
        q_messages.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    ):
        entries.append(
            dataclasses.replace(_message_entry(message, keys), who=person(message.contact_id))
        )

    q_events = select(Event).where(
        events, Event.kind != EventKind.DELIVERED, *window(Event.occurred_at)
    )
    for event in session.scalars(
        q_events.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit)
    ):
        entry = _event_entry(event, keys)
        if who is not None and event.contact_id is None:
            entry = dataclasses.replace(entry, who="the account")
        entries.append(dataclasses.replace(entry, who=entry.who or person(event.contact_id)))

    q_tasks = select(Task).where(tasks, *window(Task.created_at))
    for task in session.scalars(
        q_tasks.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
    ):
        due = f"due {task.due_at:%Y-%m-%d}" if task.due_at else "no due date"
        entries.append(
            Entry(
                task.created_at,
                "task",
                f"Task for {task.owner_email or 'nobody'}: {task.title}",
                f"{task.kind}, {due}, {task.status}",
                keys.get(task.journey_id or 0),
                task.step_id,
                data={"task": task.id},
                who=person(task.contact_id),
            )
        )
        if (
            task.status == TaskStatus.CANCELLED
            and task.completed_at
            and (before is None or task.completed_at < before)
        ):
            entries.append(
                Entry(
                    task.completed_at,
                    "task_done",
                    f"Task cancelled: {task.title}",
                    task.outcome or "",
                    keys.get(task.journey_id or 0),
                    task.step_id,
                    data={"task": task.id},
                    who=person(task.contact_id),
                )
            )
        if task.escalated_at and (before is None or task.escalated_at < before):
            entries.append(
                Entry(
                    task.escalated_at,
                    "escalated",
                    f"Task escalated to {task.escalated_to or 'nobody'}: {task.title}",
                    "overdue",
                    keys.get(task.journey_id or 0),
                    task.step_id,
                    data={"task": task.id},
                    who=person(task.contact_id),
                )
            )

    q_in_app = select(InAppMessage).where(in_app, *window(InAppMessage.created_at))
    for item in session.scalars(
        q_in_app.order_by(InAppMessage.created_at.desc(), InAppMessage.id.desc()).limit(limit)
    ):
        seen = "clicked" if item.clicked_at else "seen" if item.seen_at else "not seen yet"
        entries.append(
            Entry(
                item.created_at,
                "in_app",
                f"In-app message: {item.title}",
                seen,
                keys.get(item.journey_id or 0),
                item.step_id,
                who=person(item.contact_id),
            )
        )

    q_enrollments = select(Enrollment).where(enrollments, *window(Enrollment.entered_at))
    for enrollment in session.scalars(
        q_enrollments.order_by(Enrollment.entered_at.desc(), Enrollment.id.desc()).limit(limit)
    ):
        journey = keys.get(enrollment.journey_id)
        held = group_metric(enrollment.holdout, enrollment.context)
        group = (
            f" ({'global control' if held == 'control' else held}: sent nothing)" if held else ""
        )
        if enrollment.contact_id is None:
            group += " (their account)" if who is None else " (the account)"
        entries.append(
            Entry(
                enrollment.entered_at,
                "entered",
                f"Entered {journey}{group}",
                f"segment {enrollment.segment}" if enrollment.segment else "",
                journey,
                who=person(enrollment.contact_id),
            )
        )
        if enrollment.finished_at and (before is None or enrollment.finished_at < before):
            reason = f": {enrollment.exit_reason}" if enrollment.exit_reason else ""
            entries.append(
                Entry(
                    enrollment.finished_at,
                    "left",
                    f"Left {journey} ({enrollment.state}{reason})",
                    "",
                    journey,
                    enrollment.current_step,
                    who=person(enrollment.contact_id),
                )
            )

    q_consents = select(ConsentRecord).where(consents, *window(ConsentRecord.at))
    for record in session.scalars(
        q_consents.order_by(ConsentRecord.at.desc(), ConsentRecord.id.desc()).limit(limit)
    ):
        entries.append(dataclasses.replace(consent_entry(record), who=person(record.contact_id)))

    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]


def consent_entry(record: ConsentRecord) -> Entry:
    """A grant (``Consent to marketing mail: opt_in``) or a withdrawal, with where it came
    from, the wording's version and who recorded it."""
    granted = record.action == ConsentAction.GRANTED
    title = (
        f"Consent to marketing mail: {record.basis}"
        if granted
        else "Consent to marketing mail withdrawn"
    )
    parts = [
        f"source {record.source}" if record.source else "",
        f"wording {record.wording}" if record.wording else "",
        f"by {record.actor}" if record.actor else "",
    ]
    return Entry(
        record.at,
        "consent",
        title,
        ", ".join(p for p in parts if p),
        data={
            "action": record.action,
            "basis": record.basis,
            "source": record.source,
            "wording": record.wording,
        },
    )


def _message_entry(message: Message, keys: dict[int, str]) -> Entry:
    state = _MESSAGE_STATES.get(MessageStatus(message.status), message.status)
    what = "In-app" if message.channel == "in_app" else message.channel.capitalize()
    detail = message.subject or message.template or ""
    if (
        message.status
        in (
            MessageStatus.SUPPRESSED,
            MessageStatus.BOUNCED,
            MessageStatus.FAILED,
            MessageStatus.DEFERRED,
        )
        and message.error
    ):
        detail = f"{detail} ({message.error[:200]})" if detail else message.error[:200]
    variant = f", variant {message.variant}" if message.variant else ""
    persona = f", for {message.persona}" if message.persona else ""
    return Entry(
        message.sent_at or message.created_at,
        "message",
        f"{what} {state.lower()}{variant}{persona}",
        detail,
        keys.get(message.journey_id or 0),
        message.step_id,
        data={"message": message.id, "status": message.status},
    )


def _event_entry(event: Event, keys: dict[int, str]) -> Entry:
    journey = keys.get(event.journey_id or 0)
    machine = event.classification == Classification.MACHINE
    data = event.data or {}
    kind = str(event.kind)
    title: str
    detail = ""
    if event.kind == EventKind.OPEN:
        title = "Opened"
    elif event.kind == EventKind.CLICK:
        title = "Clicked the hidden trap link" if data.get("trap") else "Clicked"
        if "link" in data and not data.get("trap"):
            detail = f"link {int(data['link']) + 1}"
    elif event.kind == EventKind.ANSWER:
        title, detail = f"Answered {event.value}", ""
    elif event.kind == EventKind.RSVP:
        title = f"RSVP {event.value}"
    elif event.kind == EventKind.COMMENT:
        title, detail = "Left a comment", event.value or ""
    elif event.kind == EventKind.UNSUBSCRIBE:
        title = "Unsubscribed"
    elif event.kind == EventKind.BOUNCE:
        title, detail = "Bounced", event.value or ""
    elif event.kind == EventKind.COMPLAINT:
        title = "Marked as spam"
    elif event.kind == EventKind.TASK_DONE:
        title, detail = f"Task done ({event.name or 'task'})", event.value or ""
    elif event.kind == EventKind.CUSTOM:
        title, detail, kind = f"Product event: {event.name}", event.value or "", "event"
    else:
        title = kind.replace("_", " ").capitalize()
        detail = event.value or ""
    if event.classification == Classification.UNKNOWN and event.kind in (
        EventKind.OPEN,
        EventKind.CLICK,
    ):
        title += " (maybe a machine)"
    return Entry(
        event.occurred_at,
        kind,
        title,
        detail,
        journey,
        event.step_id,
        machine=machine,
        reason=event.reason if event.kind in (EventKind.OPEN, EventKind.CLICK) else None,
    )
