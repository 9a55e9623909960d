"""Tasks for people: the calls, meetings and reviews a journey hands to an account's owner.

A ``task`` step writes a :class:`~campaigns.store.models.Task` (and emails its owner); this module
is what the people do with it afterwards, for the dashboard's inbox, the API and the CLI:

- :func:`list_tasks` filters by owner, status (open, done, cancelled), due date (overdue,
  due today, this week) and escalation, oldest due first, with the account, contact and
  journey (or the trigger point that opened it) beside each;
- :func:`complete_task` marks a task done with an outcome note and records a ``task_done``
  event: the journey that made the task, waiting on it (``wait_until: {signal: task_done}``),
  is woken and goes on at once, and the rollup counts it (``task_done`` in the reports);
- :func:`cancel_task` closes a task nobody will do; a journey waiting on it keeps waiting
  until its timeout (cancelled is not done).

Completing is idempotent in the way people need: a second "done" on a done task changes
nothing and says so (:class:`TaskError`), so a double-submitted form does not record twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from campaigns.store.enums import EventKind, OutboundType, TaskStatus
from campaigns.store.models import Account, Contact, Journey, Task
from campaigns.store.outbox import emit_task
from campaigns.tracking.events import record_event, wake

OUTCOME_MAX = 4_000
"""Characters kept of an outcome note."""


class TaskError(ValueError):
    """A task that cannot be changed as asked (unknown, or no longer open)."""


class Due(enum.StrEnum):
    """Due-date filters of the inbox."""

    OVERDUE = "overdue"
    TODAY = "today"
    WEEK = "week"


@dataclass(frozen=True)
class TaskItem:
    """A task with what a person needs to act on it."""

    task: Task
    account: str | None
    contact_id: int | None
    contact: str | None  # name, or the address when there is no name
    contact_email: str | None
    journey_key: str | None
    journey_name: str | None

    def overdue(self, now: datetime) -> bool:
        return (
            self.task.status == TaskStatus.OPEN
            and self.task.due_at is not None
            and self.task.due_at < now
        )

    def to_json(self) -> dict[str, Any]:
        task = self.task
        return {
            "id": task.id,
            "kind": task.kind,
            "priority": task.priority,
            "trigger": task.trigger,
            "title": task.title,
            "notes": task.notes,
            "status": task.status,
            "owner_email": task.owner_email,
            "due_at": _iso(task.due_at),
            "created_at": _iso(task.created_at),
            "completed_at": _iso(task.completed_at),
            "outcome": task.outcome,
            "escalated_at": _iso(task.escalated_at),
            "escalated_to": task.escalated_to,
            "account": self.account,
            "contact": {"id": self.contact_id, "name": self.contact, "email": self.contact_email}
            if self.contact_id
            else None,
            "journey": self.journey_key,
            "step": task.step_id,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def list_tasks(
    session: Session,
    now: datetime,
    *,
    owner: str | None = None,
    status: str = TaskStatus.OPEN,
    due: Due | str | None = None,
    contact_id: int | None = None,
    escalated: bool = False,
    limit: int = 200,
    offset: int = 0,
    zone: str = "UTC",
) -> tuple[list[TaskItem], int]:
    """The tasks matching the filters (``status`` ``"all"`` for every status; ``escalated``:
    only those escalated to a manager) and how many match in all. Open tasks come oldest due
    first (undated last); closed ones latest first. "Today" and "this week" are days in
    ``zone`` (the team's TASK_TIME_ZONE): this week is today and the 7 days after it."""
    if status != "all" and status not in TaskStatus.__members__.values():
        raise ValueError(f"status: expected one of open, done, cancelled, all; got {status!r}")
    where = _filters(now, owner, status, Due(due) if due else None, contact_id, zone)
    if escalated:
        where.append(Task.escalated_at.is_not(None))
    total = session.scalar(select(func.count()).select_from(Task).where(*where)) or 0
    order: list[Any]
    if status == TaskStatus.OPEN or due:
        order = [Task.due_at.is_(None), Task.due_at, Task.id]
    else:
        order = [func.coalesce(Task.completed_at, Task.created_at).desc(), Task.id.desc()]
    query = (
        select(
            Task, Account.name, Contact.id, Contact.name, Contact.email, Journey.key, Journey.name
        )
        .outerjoin(Account, Account.id == Task.account_id)
        .outerjoin(Contact, Contact.id == Task.contact_id)
        .outerjoin(Journey, Journey.id == Task.journey_id)
        .where(*where)
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    )
    items = [
        TaskItem(
            task,
            account,
            contact,
            contact_name or contact_email,
            contact_email,
            journey_key,
            journey_name,
        )
        for (
            task,
            account,
            contact,
            contact_name,
            contact_email,
            journey_key,
            journey_name,
        ) in session.execute(query)
    ]
    return items, int(total)


def _filters(
    now: datetime,
    owner: str | None,
    status: str,
    due: Due | None,
    contact_id: int | None,
    zone: str = "UTC",
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of the inbox's filters."""
    where: list[ColumnElement[bool]] = []
    if owner:
        where.append(func.lower(Task.owner_email) == owner.strip().lower())
    if status != "all":
        where.append(Task.status == status)
    if contact_id is not None:
        where.append(Task.contact_id == contact_id)
    if due:
        limit_at = {
            Due.OVERDUE: now,
            Due.TODAY: day_end(now, zone, 0),
            Due.WEEK: day_end(now, zone, 7),  # a task due in exactly 7 days is due this week
        }[due]
        where += [Task.status == TaskStatus.OPEN, Task.due_at.is_not(None), Task.due_at < limit_at]
    return where


def owners(session: Session) -> list[str]:
    """Every owner address that has a task, for the inbox's filter."""
    return [
        o
        for o in session.scalars(
            select(Task.owner_email)
            .where(Task.owner_email.is_not(None))
            .distinct()
            .order_by(Task.owner_email)
        )
        if o
    ]


def _open_task(session: Session, task_id: int) -> Task:
    query = select(Task).where(Task.id == task_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # two people pressing "done" at once: one wins
    task = session.scalar(query)
    if task is None:
        raise TaskError(f"There is no task {task_id}.")
    if task.status != TaskStatus.OPEN:
        raise TaskError(f"Task {task_id} is already {task.status}.")
    return task


def complete_task(
    session: Session,
    task_id: int,
    now: datetime,
    *,
    by: str | None = None,
    outcome: str | None = None,
) -> Task:
    """Mark an open task done (the caller commits): its outcome kept, a ``task_done`` event
    recorded and the journeys waiting on it woken."""
    task = _open_task(session, task_id)
    note = (outcome or "").strip()[:OUTCOME_MAX] or None
    shared, task.open_key = task.open_key, None
    task.status, task.completed_at, task.outcome = TaskStatus.DONE, now, note
    if shared and task.account_id:  # the account's other contacts joined it: wake them too
        wake(session, now, kind=EventKind.TASK_DONE, account_id=task.account_id)
    record_event(
        session,
        now,
        kind=EventKind.TASK_DONE,
        name=task.kind,
        value=note[:2048] if note else None,
        contact_id=task.contact_id,
        account_id=task.account_id,
        enrollment_id=task.enrollment_id,
        journey_id=task.journey_id,
        step_id=task.step_id,
        data={"task": task.id, "by": by} if by else {"task": task.id},
    )
    emit_task(session, OutboundType.TASK_DONE, task, now, by=by)
    return task


def cancel_task(
    session: Session,
    task_id: int,
    now: datetime,
    *,
    by: str | None = None,
    reason: str | None = None,
) -> Task:
    """Close an open task that will not be done (the caller commits); nothing is woken."""
    task = _open_task(session, task_id)
    note = (reason or "").strip()[:OUTCOME_MAX] or None
    task.status, task.completed_at, task.outcome = TaskStatus.CANCELLED, now, note
    task.open_key = None
    return task


def day_end(now: datetime, zone: str, days: int) -> datetime:
    """The end (the next midnight, as UTC) of the day ``days`` after ``now``'s day in ``zone``."""
    local = now.astimezone(ZoneInfo(zone)).date() + timedelta(days=days + 1)
    return datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def open_counts(
    session: Session, now: datetime, owner: str | None = None, zone: str = "UTC"
) -> dict[str, int]:
    """Open, overdue, due-today and escalated counts (for the inbox's heading); today is a
    day in ``zone``."""
    where: list[Any] = [Task.status == TaskStatus.OPEN]
    if owner:
        where.append(func.lower(Task.owner_email) == owner.strip().lower())
    tomorrow = day_end(now, zone, 0)
    row = session.execute(
        select(
            func.count(),
            func.count().filter(Task.due_at < now),
            func.count().filter(Task.due_at < tomorrow),
            func.count().filter(Task.escalated_at.is_not(None)),
        ).where(*where)
    ).one()
    return {
        "open": int(row[0]),
        "overdue": int(row[1]),
        "due_today": int(row[2]),
        "escalated": int(row[3]),
    }
