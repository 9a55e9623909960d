"""The product API's in-app messages: a contact's unexpired messages, and the product
saying it showed one (``seen``) or that the contact followed it (``clicked``).

Routes on the API blueprint (:mod:`campaigns.web.api_base`), behind its key check.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.insight import stats
from campaigns.store.enums import EventKind
from campaigns.store.models import InAppMessage
from campaigns.tracking.events import record_event
from campaigns.web import api_base as base
from campaigns.web import api_input
from campaigns.web.api_base import bp
from campaigns.web.api_input import ApiError
from campaigns.web.roles import INGEST, READ_PEOPLE, needs

IN_APP_LIMIT = 100
"""In-app messages returned for one contact, newest first."""


def _in_app(item: InAppMessage) -> dict[str, Any]:
    return {
        "id": item.id,
        "title": item.title,
        "body": item.body,
        "url": item.url,
        "created_at": base.iso(item.created_at),
        "expires_at": base.iso(item.expires_at),
        "seen_at": base.iso(item.seen_at),
        "clicked_at": base.iso(item.clicked_at),
    }


@bp.get("/contacts/<email>/in-app")
@needs(READ_PEOPLE)
def in_app_messages(email: str) -> ResponseReturnValue:
    """The contact's in-app messages that have not expired, newest first; unseen ones unless
    ``?all=1``."""
    address, include_seen, now = api_input.path_email(email), api_input.flag("all"), base.now()
    with base.sessions()() as session:
        contact = base.contact_or_404(session, address)
        query = select(InAppMessage).where(
            InAppMessage.contact_id == contact.id,
            InAppMessage.expires_at.is_(None) | (InAppMessage.expires_at > now),
        )
        if not include_seen:
            query = query.where(InAppMessage.seen_at.is_(None))
        items = session.scalars(
            query.order_by(InAppMessage.created_at.desc(), InAppMessage.id.desc()).limit(
                IN_APP_LIMIT
            )
        ).all()
        return jsonify([_in_app(item) for item in items])


@bp.post("/in-app/<int(max=2147483647):in_app_id>/seen")
@needs(INGEST)
def in_app_seen(in_app_id: int) -> ResponseReturnValue:
    """The product showed the message: ``seen_at`` is set the first time, and an ``in_app_seen``
    event recorded."""
    return _acknowledge(in_app_id, clicked=False)


@bp.post("/in-app/<int(max=2147483647):in_app_id>/clicked")
@needs(INGEST)
def in_app_clicked(in_app_id: int) -> ResponseReturnValue:
    """The contact followed the message: ``clicked_at`` (and ``seen_at``, if unset) the first
    time."""
    return _acknowledge(in_app_id, clicked=True)


def _acknowledge(in_app_id: int, *, clicked: bool) -> ResponseReturnValue:
    api_input.no_body()
    now = base.now()
    marks = [("seen_at", "in_app_seen")] + ([("clicked_at", "in_app_clicked")] if clicked else [])

    def work(session: Session) -> dict[str, Any]:
        item = session.get(InAppMessage, in_app_id)
        if item is None:
            raise ApiError(404, f"no in-app message {in_app_id}")
        for column, name in marks:
            # A conditional UPDATE, so two requests at once still record the first time only.
            first = (
                update(InAppMessage)
                .where(InAppMessage.id == in_app_id, getattr(InAppMessage, column).is_(None))
                .values({column: now})
            )
            if getattr(
                session.execute(first.execution_options(synchronize_session=False)), "rowcount", 0
            ):
                record_event(
                    session,
                    now,
                    kind=EventKind.CUSTOM,
                    name=name,
                    contact_id=item.contact_id,
                    enrollment_id=item.enrollment_id,
                    journey_id=item.journey_id,
                    step_id=item.step_id,
                    data={"in_app_id": item.id},
                )
                stats.count_in_app(
                    session, item, stats.IN_APP_METRICS[column], now
                )  # the first time only: the tuner's in-app responses
        session.flush()
        session.refresh(item)
        return _in_app(item)

    return jsonify(base.transaction(work))
