"""Pre-aggregated counts for reports: a report sums a few ``stats`` rows instead of scanning
raw events, so it stays fast at tens of millions of events.

A row counts one ``metric`` for a (journey, step, channel, variant, segment, tier, day)
key; empty strings stand for "none" (a journey-level metric has no step). Counts come from
two places, both exact:

- **Hits**, when the flusher writes them (:func:`count_hits`, called by
  :func:`campaigns.tracking.hits.write_hits` in the same transaction): only rows actually inserted are
  counted (a replayed hit is not), and unique opens, clicks and answers are decided by
  setting the message's ``opened_at`` / ``clicked_at`` / ``answered_at`` with ``UPDATE ...
  WHERE ... IS NULL RETURNING``, which two flushers cannot both win. A human hit later
  reclassified as a machine's moves from the human metric to the machine one.
- **Everything else** (entries, sends, bounces at sending, tasks, goals and exits) by
  :func:`rollup`, run with every scheduler pass: it takes rows not yet counted (a
  ``counted`` marker on enrollments, messages and tasks, with a partial index over the
  uncounted ones), adds them up, marks them, and adds the sums, in one transaction.
- **Bounces and complaints the relay reports later** by :func:`campaigns.tracking.bounces.store_notices`
  in the webhook's transaction (:func:`count_message`), once per message: the hard bounce
  is counted by the ``UPDATE ... WHERE status <> 'bounced'`` that marks the message, so a
  repeated or concurrent notice counts nothing. A message that was sent (and counted
  ``sent``) and bounces later **keeps its** ``sent`` and adds ``bounced`` and
  ``bounced_after_send``, both on the day it was sent: it did reach the relay, and the
  report's bounce rate (bounced of sent + bounced − bounced_after_send) counts it once.
  The rollup leaves such a message's bounce alone; it counts ``bounced`` only for what the
  relay refused at sending (no ``sent_at``).
- **In-app messages**: ``in_app_created`` as they are inserted (an ``after_flush`` hook
  in the inserting transaction; unique per enrollment and step), ``in_app_seen`` and
  ``in_app_clicked`` by the API that records the first acknowledgement (:func:`count_in_app`,
  after the ``UPDATE ... IS NULL`` that sets it). A ``best_of`` step's in-app arm is tuned
  on them (:mod:`campaigns.insight.tuning`).

Metrics: ``enrolled``, ``holdout`` (enrolled into the holdout group), ``goal``,
``holdout_goal``, ``exited``, ``completed``, ``failed_enrollment``; per step ``sent``,
``bounced``, ``bounced_after_send``, ``failed``, ``suppressed``, ``complained``; from hits
``opened``, ``clicked``, ``answered`` (unique, human), ``rsvp_yes``, ``rsvp_no``,
``unsubscribed``, ``commented``, ``score_0`` ... ``score_10`` (the first answer to a survey
email, by its score: NPS and CSAT, see :mod:`campaigns.insight.nps`), and the raw machine and unknown counts beside them
(``opened_machine``, ``opened_unknown``, ``clicked_machine``, ``clicked_unknown``,
``answered_machine``); tasks ``task_created``, ``task_done``, ``owner_notified`` (the notice
email to its owner); in-app ``in_app_created``, ``in_app_seen``, ``in_app_clicked``.

For a step with ``send_time: best_hour`` (:mod:`campaigns.insight.sendtime`), ``sent`` and the unique
human ``opened``, ``clicked``, ``answered`` and ``rsvp_yes`` are counted a second time under
the recipient-local hour the message was sent at, as ``sent@10``, ``clicked@10``... (the
hour of ``sent_at`` in the contact's time zone), in the same statements as the plain ones,
so they are as exact; a reclassified click takes its hour's count with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import event as orm_events
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns.insight.sendtime import HOUR_METRICS, hour_metric, local_hour, timed_steps
from campaigns.store.models import (
    Channel,
    Classification,
    Contact,
    Enrollment,
    EnrollmentState,
    Event,
    EventKind,
    InAppMessage,
    JourneyVersion,
    Message,
    MessageStatus,
    Stat,
    Task,
    TaskStatus,
)

Key = tuple[int, str, str, str, str, str, date, str]
"""journey id, step, channel, variant, segment, tier, day, metric"""

BATCH = 20_000
"""Rows of each kind counted per rollup transaction."""

_MESSAGE_METRIC = {
    MessageStatus.SENT: "sent",
    MessageStatus.BOUNCED: "bounced",
    MessageStatus.FAILED: "failed",
    MessageStatus.SUPPRESSED: "suppressed",
}
_END_METRIC = {
    EnrollmentState.GOAL: "goal",
    EnrollmentState.EXITED: "exited",
    EnrollmentState.COMPLETED: "completed",
    EnrollmentState.FAILED: "failed_enrollment",
}


def add(session: Session, counts: Counter[Key]) -> None:
    """Add ``counts`` to the stats rows (negative counts subtract)."""
    rows = [
        dict(
            zip(
                ("journey_id", "step_id", "channel", "variant", "segment", "tier", "day", "metric"),
                key,
                strict=True,
            ),
            count=n,
        )
        for key, n in sorted(counts.items())
        if n
    ]
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(Stat)
    statement = statement.on_conflict_do_update(
        index_elements=[
            "journey_id",
            "step_id",
            "channel",
            "variant",
            "segment",
            "tier",
            "day",
            "metric",
        ],
        set_={"count": Stat.count + statement.excluded.count},
    )
    for start in range(0, len(rows), 1_000):
        session.execute(statement, rows[start : start + 1_000])


def _key(
    journey_id: int | None,
    step: str | None,
    channel: str | None,
    variant: str | None,
    segment: str | None,
    tier: str | None,
    when: datetime | date,
    metric: str,
) -> Key:
    day = when.date() if isinstance(when, datetime) else when
    return (
        journey_id or 0,
        step or "",
        channel or "",
        variant or "",
        segment or "",
        tier or "",
        day,
        metric,
    )


# ---------------------------------------------------------------------------- rollup


def rollup(session: Session, now: datetime, batch: int = BATCH) -> Counter[str]:
    """Count what was not counted yet; the caller commits. Returns rows counted per source."""
    done: Counter[str] = Counter()
    counts: Counter[Key] = Counter()
    lock = session.get_bind().dialect.name == "postgresql"

    # Entries, and the ends of finished enrollments.
    entries = select(Enrollment).where(Enrollment.counted < 3).order_by(Enrollment.id).limit(batch)
    for enrollment in session.scalars(
        entries.with_for_update(skip_locked=True) if lock else entries
    ):
        flags = enrollment.counted
        if not flags & 1:
            counts[
                _key(
                    enrollment.journey_id,
                    None,
                    None,
                    None,
                    enrollment.segment,
                    enrollment.tier,
                    enrollment.entered_at,
                    "holdout" if enrollment.holdout else "enrolled",
                )
            ] += 1
            flags |= 1
            done["entries"] += 1
        ended = (
            _END_METRIC.get(EnrollmentState(enrollment.state))
            if enrollment.state in _END_METRIC
            else None
        )
        if ended and not flags & 2:
            metric = "holdout_goal" if enrollment.holdout and ended == "goal" else ended
            counts[
                _key(
                    enrollment.journey_id,
                    None,
                    None,
                    None,
                    enrollment.segment,
                    enrollment.tier,
                    enrollment.finished_at or now,
                    metric,
                )
            ] += 1
            flags |= 2
            done["ends"] += 1
        elif ended is None and enrollment.state not in (
            EnrollmentState.ACTIVE,
            EnrollmentState.WAITING,
        ):
            flags |= 2
        if flags != enrollment.counted:
            enrollment.counted = flags

    # Messages in a final state.
    final = list(_MESSAGE_METRIC)
    sends = (
        select(Message)
        .where(Message.counted.is_(False), Message.status.in_(final))
        .order_by(Message.id)
        .limit(batch)
    )
    messages = list(session.scalars(sends.with_for_update(skip_locked=True) if lock else sends))
    where = _places(session, {m.enrollment_id for m in messages if m.enrollment_id})
    for message in messages:
        place = where.get(message.enrollment_id or 0, NOWHERE)
        segment, tier = place.segment, place.tier
        when = message.sent_at or message.created_at
        message.counted = True
        done["messages"] += 1
        if message.attempt_key == "owner":  # a task's notice to its owner, not the journey's email
            if message.sent_at is not None:
                counts[
                    _key(
                        message.journey_id,
                        message.step_id,
                        "task",
                        None,
                        segment,
                        tier,
                        when,
                        "owner_notified",
                    )
                ] += 1
            continue
        if message.sent_at is not None:  # handed to the relay (even if it bounced later)
            for metric in _hourly(message, place, "sent"):
                counts[
                    _key(
                        message.journey_id,
                        message.step_id,
                        message.channel,
                        message.variant,
                        segment,
                        tier,
                        when,
                        metric,
                    )
                ] += 1
            if message.status == MessageStatus.BOUNCED:
                continue  # bounced after it was sent: counted when the relay reported it (campaigns.tracking.bounces)
        if message.status != MessageStatus.SENT:
            counts[
                _key(
                    message.journey_id,
                    message.step_id,
                    message.channel,
                    message.variant,
                    segment,
                    tier,
                    when,
                    _MESSAGE_METRIC[MessageStatus(message.status)],
                )
            ] += 1

    # Tasks created, and done.
    todo = select(Task).where(Task.counted < 3).order_by(Task.id).limit(batch)
    tasks = list(session.scalars(todo.with_for_update(skip_locked=True) if lock else todo))
    where = _places(session, {t.enrollment_id for t in tasks if t.enrollment_id})
    for task in tasks:
        segment, tier = where.get(task.enrollment_id or 0, NOWHERE)[:2]
        flags = task.counted
        if not flags & 1:
            counts[
                _key(
                    task.journey_id,
                    task.step_id,
                    "task",
                    None,
                    segment,
                    tier,
                    task.created_at,
                    "task_created",
                )
            ] += 1
            flags |= 1
            done["tasks"] += 1
        if task.status == TaskStatus.DONE and not flags & 2:
            counts[
                _key(
                    task.journey_id,
                    task.step_id,
                    "task",
                    None,
                    segment,
                    tier,
                    task.completed_at or now,
                    "task_done",
                )
            ] += 1
            flags |= 2
        elif task.status == TaskStatus.CANCELLED:
            flags |= 2  # nothing more to count
        if flags != task.counted:
            task.counted = flags
    session.flush()
    add(session, counts)
    return done


class Place(NamedTuple):
    """Where an enrollment's counts are filed, and what its send-time counts need."""

    segment: str
    tier: str
    time_zone: str | None  # the contact's: send-time counts are by the recipient's hour
    timed: frozenset[str]  # its version's steps with send_time: best_hour


NOWHERE = Place("", "", None, frozenset())


def _places(session: Session, enrollment_ids: Iterable[int]) -> dict[int, Place]:
    """The segment, tier, time zone and timed steps of each enrollment (one query per 5,000)."""
    ids = sorted(set(enrollment_ids))
    rows: list[Any] = []
    for start in range(0, len(ids), 5_000):
        query = (
            select(
                Enrollment.id,
                Enrollment.segment,
                Enrollment.tier,
                Contact.time_zone,
                JourneyVersion.source_hash,
            )
            .join(Contact, Contact.id == Enrollment.contact_id)
            .join(JourneyVersion, JourneyVersion.id == Enrollment.journey_version_id)
            .where(Enrollment.id.in_(ids[start : start + 5_000]))
        )
        rows.extend(session.execute(query))
    timed = timed_steps(session, {row[4] for row in rows})
    return {
        enrollment_id: Place(segment or "", tier or "", zone, timed.get(digest, frozenset()))
        for enrollment_id, segment, tier, zone, digest in rows
    }


def _hourly(message: Message, place: Place, metric: str) -> list[str]:
    """``metric``, and its hour of sending (``clicked@10``) when the message's step learns its
    send time (:mod:`campaigns.insight.sendtime`): the hour its ``sent_at`` was for the recipient."""
    if (
        metric in HOUR_METRICS
        and message.step_id in place.timed
        and message.sent_at is not None
        and message.channel == Channel.EMAIL
        and message.attempt_key == "1"
    ):
        return [metric, hour_metric(metric, local_hour(message.sent_at, place.time_zone))]
    return [metric]


# ---------------------------------------------------------------------------- hits

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
    where = _places(session, {m.enrollment_id for m in messages.values() if m.enrollment_id})

    def key(message: Message, when: datetime, metric: str) -> Key:
        segment, tier = where.get(message.enrollment_id or 0, NOWHERE)[:2]
        return _key(
            message.journey_id,
            message.step_id,
            message.channel,
            message.variant,
            segment,
            tier,
            when,
            metric,
        )

    def bump(message: Message, when: datetime, metric: str, n: int = 1) -> None:
        """Count a unique human response, and by the hour its message was sent if its step learns that."""
        for name in _hourly(message, where.get(message.enrollment_id or 0, NOWHERE), metric):
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


# ---------------------------------------------------------------------------- reported later


def count_message(
    session: Session, message: Message, metrics: Iterable[str], when: datetime | date
) -> None:
    """Count one of each of ``metrics`` for ``message`` (its journey, step, channel, variant,
    segment and tier) on ``when``'s day. The caller makes sure it is the first time (see
    :func:`campaigns.tracking.bounces.store_notices`) and commits."""
    place = _places(session, [message.enrollment_id] if message.enrollment_id else []).get(
        message.enrollment_id or 0, NOWHERE
    )
    add(
        session,
        Counter(
            {
                _key(
                    message.journey_id,
                    message.step_id,
                    message.channel,
                    message.variant,
                    place.segment,
                    place.tier,
                    when,
                    metric,
                ): 1
                for metric in metrics
            }
        ),
    )


# ---------------------------------------------------------------------------- in-app messages

IN_APP_METRICS = {"seen_at": "in_app_seen", "clicked_at": "in_app_clicked"}
"""The metric of each first acknowledgement of an in-app message."""


def count_in_app(session: Session, item: InAppMessage, metric: str, when: datetime) -> None:
    """Count ``metric`` (``in_app_seen``, ``in_app_clicked``) for an in-app message; the caller
    counts the first acknowledgement only (the one whose ``UPDATE ... IS NULL`` set it) and commits."""
    if item.journey_id is None:
        return
    place = _places(session, [item.enrollment_id] if item.enrollment_id else []).get(
        item.enrollment_id or 0, NOWHERE
    )
    add(
        session,
        Counter(
            {
                _key(
                    item.journey_id,
                    item.step_id,
                    Channel.IN_APP,
                    None,
                    place.segment,
                    place.tier,
                    when,
                    metric,
                ): 1
            }
        ),
    )


@orm_events.listens_for(Session, "after_flush")
def _count_created_in_app(session: Session, _flush: Any) -> None:
    """Count ``in_app_created`` for the journeys' in-app messages a flush has just inserted,
    in the flush's transaction: a row is inserted once (unique per enrollment and step), and
    its count commits or rolls back with it."""
    created = [
        item
        for item in session.new
        if isinstance(item, InAppMessage) and item.journey_id is not None
    ]
    if not created:
        return
    where = _places(session, {item.enrollment_id for item in created if item.enrollment_id})
    counts: Counter[Key] = Counter()
    for item in created:
        place = where.get(item.enrollment_id or 0, NOWHERE)
        counts[
            _key(
                item.journey_id,
                item.step_id,
                Channel.IN_APP,
                None,
                place.segment,
                place.tier,
                item.created_at or datetime.now(UTC),
                "in_app_created",
            )
        ] += 1
    add(session, counts)
