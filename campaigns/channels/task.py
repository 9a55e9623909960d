"""The task channel: work for a person (a call, a meeting, a review), in the task inbox.

A task is stored once per enrollment and step, for its owner (the account owner, or a named
assignee; none: the unassigned inbox). Telling the owner by email is the owner-mail channel's
job (:mod:`campaigns.channels.owner`), which the engine runs after this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.channels.base import Receipt, Status
from campaigns.store.models import Task


@dataclass(frozen=True)
class Order:
    """One task to open, in the session of the step that opens it."""

    session: Session
    enrollment_id: int
    journey_id: int
    step_id: str
    account_id: int | None
    contact_id: int
    owner_email: str | None
    kind: str
    title: str
    notes: str | None
    due_at: datetime
    created_at: datetime


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
        )
        session.add(task)
        session.flush()
        return Receipt(Status.SENT, ref=task.id)

    def close(self) -> None:
        """Nothing to release: rows go with the step's session."""
