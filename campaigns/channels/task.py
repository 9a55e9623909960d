"""The task channel: work for a person (a call, a meeting, a review), in the task inbox.

A task is stored once per enrollment and step, for its owner (the account owner, or a named
assignee; none: the unassigned inbox). An order with an ``open_key`` (journey, step and
account) opens at most one open task under that key: a second contact of the same account
gets the open one back instead of a twin, even when two workers try at once (the key is
unique; it is cleared when the task is closed). Telling the owner by email is the owner-mail
channel's job (:mod:`campaigns.channels.owner`), which the engine runs after this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.channels.base import Receipt, Status
from campaigns.store.enums import OutboundType
from campaigns.store.models import Task
from campaigns.store.outbox import emit_task


@dataclass(frozen=True)
class Order:
    """One task to open, in the session of the step that opens it."""

    session: Session
    enrollment_id: int
    journey_id: int
    step_id: str
    account_id: int | None
    contact_id: int | None
    owner_email: str | None
    kind: str
    title: str
    notes: str | None
    due_at: datetime
    created_at: datetime
    open_key: str | None = None


class TaskChannel:
    """Tasks as rows in the inbox; the receipt's ``ref`` is the task's id."""

    name = "task"

    def push(self, item: Order) -> Receipt:
        session = item.session
        existing = session.scalar(
            select(Task.id).where(
                Task.enrollment_id == item.enrollment_id, Task.step_id == item.step_id
            )
        )
        if existing is not None:  # a re-run of the step: opened once
            return Receipt(Status.SENT, ref=existing)
        shared = self._open(session, item.open_key)
        if shared is not None:
            return Receipt(Status.SENT, ref=shared)
        task = Task(
            enrollment_id=item.enrollment_id,
            journey_id=item.journey_id,
            step_id=item.step_id,
            account_id=item.account_id,
            contact_id=item.contact_id,
            owner_email=item.owner_email,
            kind=item.kind,
            title=item.title[:512] or item.step_id,
            notes=item.notes,
            due_at=item.due_at,
            created_at=item.created_at,
            open_key=item.open_key,
        )
        try:
            with session.begin_nested():  # another worker may take the key meanwhile
                session.add(task)
        except IntegrityError:
            shared = self._open(session, item.open_key)
            if shared is None:
                raise
            return Receipt(Status.SENT, ref=shared)
        emit_task(session, OutboundType.TASK_CREATED, task, item.created_at)
        return Receipt(Status.SENT, ref=task.id)

    @staticmethod
    def _open(session: Session, open_key: str | None) -> int | None:
        if open_key is None:
            return None
        return session.scalar(select(Task.id).where(Task.open_key == open_key))

    def close(self) -> None:
        """Nothing to release: rows go with the step's session."""
