"""Counting hits as the flusher writes them: unique human opens, clicks and answers, the
raw machine and unknown counts beside them, and the moves when a hit is reclassified.

:func:`count_hits` is called by :func:`campaigns.tracking.hits.write_hits` in the same
transaction as the events it counts (see :mod:`campaigns.insight.stats` for the metrics and
the other sources of counts). Only rows actually inserted are counted (a replayed hit is
not), and unique opens, clicks and answers are decided by setting the message's
``opened_at`` / ``clicked_at`` / ``answered_at`` with ``UPDATE ... WHERE ... IS NULL
RETURNING``, which two flushers cannot both win.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.insight.stats import NOWHERE, Key, hourly, message_key, places
from campaigns.store.enums import Classification, EventKind
from campaigns.store.models import Event, Message

_FIRST = {
    EventKind.OPEN: "opened_at",
    EventKind.CLICK: "clicked_at",
    EventKind.ANSWER: "answered_at",
    EventKind.RSVP: "answered_at",
}
_RAW_METRIC = {
    EventKind.OPEN: "opened",
    EventKind.CLICK: "clicked",
    EventKind.ANSWER: "answered",
    EventKind.RSVP: "answered",
}


class Reclassified(Protocol):
    """An earlier hit's event whose classification a flush has just changed, as the hit
    writer holds it (:class:`campaigns.tracking.hits.PriorHit`)."""

    @property
    def message_id(self) -> int | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def classification(self) -> str: ...


def count_hits(
    session: Session,
    inserted: Sequence[dict[str, Any]],
    reclassified: Sequence[tuple[Reclassified, str]],
    messages: dict[int, Message],
    now: datetime,
) -> Counter[Key]:
    """Count the hit events just inserted (``inserted``: their rows) and move the ones whose
    classification changed (``reclassified``: event, old classification). The caller commits."""
    counts: Counter[Key] = Counter()
    where = places(session, {m.enrollment_id for m in messages.values() if m.enrollment_id})

    def key(message: Message, when: datetime, metric: str) -> Key:
        segment, tier = where.get(message.enrollment_id or 0, NOWHERE)[:2]
        return message_key(message, segment, tier, when, metric)

    def bump(message: Message, when: datetime, metric: str, n: int = 1) -> None:
        """Count a unique human response, and by the hour its message was sent if its step
        learns that."""
        for name in hourly(message, where.get(message.enrollment_id or 0, NOWHERE), metric):
            counts[key(message, when, name)] += n

    # Unique human signals: the first per message and kind wins the UPDATE ... IS NULL.
    wanted: dict[str, dict[int, datetime]] = {"opened_at": {}, "clicked_at": {}, "answered_at": {}}
    for row in inserted:
        if row["kind"] not in _FIRST or not _human(row["kind"], row["classification"]):
            continue
        wanted[_FIRST[row["kind"]]].setdefault(row["message_id"], row["occurred_at"])
        if row["kind"] == EventKind.CLICK:  # a click is an open too (images may be off)
            wanted["opened_at"].setdefault(row["message_id"], row["occurred_at"])
    won = {column: _claim(session, column, set(first), now) for column, first in wanted.items()}
    for column, ids in won.items():
        metric = {"opened_at": "opened", "clicked_at": "clicked", "answered_at": "answered"}[column]
        for message_id in ids:
            bump(messages[message_id], wanted[column][message_id], metric)
    answered = set(won["answered_at"])
    for row in inserted:
        message = messages[row["message_id"]]
        kind, verdict, when = row["kind"], row["classification"], row["occurred_at"]
        if (
            kind == EventKind.RSVP
            and verdict != Classification.MACHINE
            and row["message_id"] in answered
            and row["value"] in ("yes", "no")
        ):
            bump(message, when, f"rsvp_{row['value']}")
            answered.discard(row["message_id"])  # the first answer counts
        elif (
            kind == EventKind.ANSWER
            and verdict != Classification.MACHINE
            and row["message_id"] in answered
            and _score(row["value"]) is not None
        ):
            counts[key(message, when, f"score_{_score(row['value'])}")] += (
                1  # NPS and CSAT (campaigns.insight.nps)
            )
            answered.discard(row["message_id"])  # the first answer counts
        elif kind in _RAW_METRIC and not _human(kind, verdict):
            counts[key(message, when, f"{_RAW_METRIC[kind]}_{verdict}")] += 1
        elif kind == EventKind.UNSUBSCRIBE:
            counts[key(message, when, "unsubscribed")] += 1
        elif kind == EventKind.COMMENT:
            counts[key(message, when, "commented")] += 1
    session.flush()  # the new classifications, for the checks below
    for event, old in reclassified:
        hit_message = messages.get(event.message_id or 0)
        if hit_message is None or event.kind not in _RAW_METRIC or old == event.classification:
            continue
        raw = _RAW_METRIC[EventKind(event.kind)]
        if not _human(event.kind, old):
            counts[key(hit_message, event.occurred_at, f"{raw}_{old}")] -= 1
        if not _human(event.kind, event.classification):
            counts[key(hit_message, event.occurred_at, f"{raw}_{event.classification}")] += 1
        if _human(event.kind, old) and not _human(event.kind, event.classification):
            # If no human hit that makes it so is left on the message, its unique count goes
            # (a click was an open too).
            columns = (
                ["clicked_at", "opened_at"]
                if event.kind == EventKind.CLICK
                else [_FIRST[EventKind(event.kind)]]
            )
            for column in columns:
                kinds = (
                    [EventKind.OPEN, EventKind.CLICK]
                    if column == "opened_at"
                    else [EventKind(event.kind)]
                )
                left = session.scalar(
                    select(Event.id)
                    .where(
                        Event.message_id == hit_message.id,
                        Event.kind.in_(kinds),
                        Event.classification == Classification.HUMAN,
                    )
                    .limit(1)
                )
                if left is None and getattr(hit_message, column) is not None:
                    setattr(hit_message, column, None)
                    bump(
                        hit_message,
                        event.occurred_at,
                        {"opened_at": "opened", "clicked_at": "clicked", "answered_at": "answered"}[
                            column
                        ],
                        -1,
                    )
    return counts


def _score(value: str | None) -> int | None:
    """A survey answer's score (0 to 10), or None for anything else."""
    return (
        int(value)
        if value is not None and value.isdigit() and len(value) <= 2 and int(value) <= 10
        else None
    )


def _human(kind: str, classification: str) -> bool:
    """Whether a hit counts as a person's: opens and clicks only when classified human;
    answers unless a machine's (a POSTed answer is a person's intent)."""
    if kind in (EventKind.ANSWER, EventKind.RSVP, EventKind.COMMENT, EventKind.UNSUBSCRIBE):
        return classification != Classification.MACHINE
    return classification == Classification.HUMAN


def _claim(session: Session, column: str, ids: set[int], now: datetime) -> set[int]:
    """Set ``column`` to ``now`` on the messages among ``ids`` that have none yet: the ones
    that were set (one statement; concurrent flushers cannot both set one)."""
    if not ids:
        return set()
    statement = (
        update(Message)
        .where(Message.id.in_(sorted(ids)), getattr(Message, column).is_(None))
        .values({column: now})
        .returning(Message.id)
    )
    won = set(session.execute(statement.execution_options(synchronize_session=False)).scalars())
    for message in session.identity_map.values():
        if isinstance(message, Message) and message.id in won:
            session.expire(message, [column])
    return won
