"""A contact's timeline: everything that happened between us and one person, newest first.

The CRM view a CSM reads before a call: every message (sent, bounced, held back and why),
every open, click, answer, RSVP, comment, unsubscribe, bounce and complaint, product events
posted to the API, tasks (created, done with their outcome), in-app messages (shown, seen,
clicked) and journey entries and exits. Opens and clicks from machines (image proxies,
privacy prefetch, link scanners) are in it too, marked as such with the classifier's reason,
because "the scanner clicked every link" is something a CSM should be able to see, and not
mistake for interest.

It reads a few indexed queries per page (each bounded by ``limit``) and merges them by
time; ``before`` pages further back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.store.enums import Classification, EventKind, MessageStatus, TaskStatus
from campaigns.store.models import (
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
    # task, task_done, in_app, entered, left
    kind: str
    title: str
    detail: str = ""
    journey: str | None = None
    step: str | None = None
    machine: bool = False  # a machine's hit, shown apart
    reason: str | None = None  # the classifier's reason, for hits
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
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
    keys = dict(session.execute(select(Journey.id, Journey.key)).all())
    entries: list[Entry] = []

    def window(column: Any) -> list[Any]:
        return [column < before] if before is not None else []

    messages = select(Message).where(
        Message.contact_id == contact_id,
        Message.attempt_key != "owner",
        *window(Message.created_at),
    )
    for message in session.scalars(
        messages.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    ):
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
        entries.append(
            Entry(
                message.sent_at or message.created_at,
                "message",
                f"{what} {state.lower()}{variant}",
                detail,
                keys.get(message.journey_id or 0),
                message.step_id,
                data={"message": message.id, "status": message.status},
            )
        )

    events = select(Event).where(
        Event.contact_id == contact_id,
        Event.kind != EventKind.DELIVERED,
        *window(Event.occurred_at),
    )
    for event in session.scalars(
        events.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit)
    ):
        entries.append(_event_entry(event, keys))

    tasks = select(Task).where(Task.contact_id == contact_id, *window(Task.created_at))
    for task in session.scalars(
        tasks.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
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
                )
            )

    in_app = select(InAppMessage).where(
        InAppMessage.contact_id == contact_id, *window(InAppMessage.created_at)
    )
    for item in session.scalars(
        in_app.order_by(InAppMessage.created_at.desc(), InAppMessage.id.desc()).limit(limit)
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
            )
        )

    account_id = session.scalar(select(Contact.account_id).where(Contact.id == contact_id))
    whose = Enrollment.contact_id == contact_id
    if account_id is not None:  # the account journeys of their account, too
        whose = whose | (Enrollment.contact_id.is_(None) & (Enrollment.account_id == account_id))
    enrollments = select(Enrollment).where(whose, *window(Enrollment.entered_at))
    for enrollment in session.scalars(
        enrollments.order_by(Enrollment.entered_at.desc(), Enrollment.id.desc()).limit(limit)
    ):
        journey = keys.get(enrollment.journey_id)
        group = " (holdout: sent nothing)" if enrollment.holdout else ""
        if enrollment.contact_id is None:
            group += " (their account)"
        entries.append(
            Entry(
                enrollment.entered_at,
                "entered",
                f"Entered {journey}{group}",
                f"segment {enrollment.segment}" if enrollment.segment else "",
                journey,
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
                )
            )

    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]


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
