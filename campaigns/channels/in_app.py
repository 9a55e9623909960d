"""The in-app channel: a message shown inside the product, stored for the app to fetch.

The product asks ``GET /api/v1/contacts/<email>/in-app`` and reports ``seen`` and
``clicked``; this channel stores the message, once per enrollment and step, and counts it
(``in_app_created``, :mod:`campaigns.insight.stats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.channels.base import Receipt, Status
from campaigns.insight import stats
from campaigns.store.models import InAppMessage


@dataclass(frozen=True)
class Note:
    """One in-app message, in the session of the step that shows it."""

    session: Session
    enrollment_id: int
    journey_id: int
    step_id: str
    contact_id: int
    title: str
    body: str
    url: str | None
    created_at: datetime
    expires_at: datetime | None


class InAppChannel:
    """In-app messages as rows (the step's session commits them with the step)."""

    name = "in_app"

    def push(self, item: Note) -> Receipt:
        session = item.session
        existing = session.scalar(
            select(InAppMessage.id).where(
                InAppMessage.enrollment_id == item.enrollment_id,
                InAppMessage.step_id == item.step_id,
                InAppMessage.contact_id == item.contact_id,
            )
        )
        if existing is not None:  # a re-run of the step: shown once (to each recipient)
            return Receipt(Status.SENT, ref=existing)
        row = InAppMessage(
            enrollment_id=item.enrollment_id,
            journey_id=item.journey_id,
            step_id=item.step_id,
            contact_id=item.contact_id,
            title=item.title[:512],
            body=item.body,
            url=item.url,
            created_at=item.created_at,
            expires_at=item.expires_at,
        )
        session.add(row)
        session.flush()
        # Counted in the inserting transaction: the row is unique per enrollment, step and
        # contact, and its count commits or rolls back with it.
        stats.count_in_app(session, row, "in_app_created", item.created_at)
        return Receipt(Status.SENT, ref=row.id)

    def close(self) -> None:
        """Nothing to release: rows go with the step's session."""
