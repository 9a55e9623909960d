"""Pre-aggregated counts for reports: a report sums a few ``stats`` rows instead of scanning
raw events, so it stays fast at tens of millions of events.

A row counts one ``metric`` for a (journey, step, channel, variant, segment, tier, day)
key; empty strings stand for "none" (a journey-level metric has no step). Counts come from
two places, both exact:

- **Hits**, when the flusher writes them (:func:`campaigns.insight.hitcounts.count_hits`,
  called by :func:`campaigns.tracking.hits.write_hits` in the same transaction): only rows
  actually inserted are counted (a replayed hit is not), and unique opens, clicks and
  answers are decided by setting the message's ``opened_at`` / ``clicked_at`` /
  ``answered_at`` with ``UPDATE ... WHERE ... IS NULL RETURNING``, which two flushers cannot
  both win. A human hit later reclassified as a machine's moves from the human metric to the
  machine one.
- **Everything else** (entries, sends, bounces at sending, tasks, goals and exits) by
  :func:`rollup`, run with every scheduler pass: it takes rows not yet counted (a
  ``counted`` marker on enrollments, messages and tasks, with a partial index over the
  uncounted ones), adds them up, marks them, and adds the sums, in one transaction.
- **Bounces and complaints the relay reports later** by
  :func:`campaigns.tracking.bounces.store_notices` in the webhook's transaction
  (:func:`count_message`), once per message: the hard bounce is counted by the ``UPDATE ...
  WHERE status <> 'bounced'`` that marks the message, so a repeated or concurrent notice
  counts nothing. A message that was sent (and counted ``sent``) and bounces later **keeps
  its** ``sent`` and adds ``bounced`` and ``bounced_after_send``, both on the day it was
  sent: it did reach the relay, and the report's bounce rate (bounced of sent + bounced −
  bounced_after_send) counts it once. The rollup leaves such a message's bounce alone; it
  counts ``bounced`` only for what the relay refused at sending (no ``sent_at``).
- **In-app messages**: ``in_app_created`` by the in-app step as it inserts one
  (:func:`count_in_app`, in the inserting transaction; unique per enrollment and step),
  ``in_app_seen`` and ``in_app_clicked`` by the API that records the first acknowledgement
  (:func:`count_in_app`, after the ``UPDATE ... IS NULL`` that sets it). A ``best_of``
  step's in-app arm is tuned on them (:mod:`campaigns.insight.tuning`).

Metrics: ``enrolled``, ``holdout`` (enrolled into the holdout group), ``goal``,
``holdout_goal``, ``exited``, ``completed``, ``failed_enrollment``; per step ``sent``,
``bounced``, ``bounced_after_send``, ``failed``, ``suppressed``, ``complained``; from hits
``opened``, ``clicked``, ``answered`` (unique, human), ``rsvp_yes``, ``rsvp_no``,
``unsubscribed``, ``commented``, ``score_0`` ... ``score_10`` (the first answer to a survey
email, by its score: NPS and CSAT, see :mod:`campaigns.insight.nps`), and the raw machine
and unknown counts beside them (``opened_machine``, ``opened_unknown``, ``clicked_machine``,
``clicked_unknown``, ``answered_machine``); tasks ``task_created``, ``task_done``,
``owner_notified`` (the notice email to its owner); in-app ``in_app_created``,
``in_app_seen``, ``in_app_clicked``.

For a step with ``send_time: best_hour`` (:mod:`campaigns.insight.sendtime`), ``sent`` and
the unique human ``opened``, ``clicked``, ``answered`` and ``rsvp_yes`` are counted a second
time under the recipient-local hour the message was sent at, as ``sent@10``,
``clicked@10``... (the hour of ``sent_at`` in the contact's time zone), in the same
statements as the plain ones, so they are as exact; a reclassified click takes its hour's
count with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns.insight.sendtime import HOUR_METRICS, hour_metric, local_hour, timed_steps
from campaigns.store.enums import Channel, EnrollmentState, MessageStatus, TaskStatus
from campaigns.store.models import (
    Contact,
    Enrollment,
    InAppMessage,
    JourneyVersion,
    Message,
    Stat,
    Task,
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


def stat_key(
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


def message_key(
    message: Message, segment: str | None, tier: str | None, when: datetime | date, metric: str
) -> Key:
    """The key of a count about one message: its journey, step, channel and variant."""
    return stat_key(
        message.journey_id,
        message.step_id,
        message.channel,
        message.variant,
        segment,
        tier,
        when,
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
                stat_key(
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
                stat_key(
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
    where = places(session, {m.enrollment_id for m in messages if m.enrollment_id})
    for message in messages:
        place = where.get(message.enrollment_id or 0, NOWHERE)
        segment, tier = place.segment, place.tier
        when = message.sent_at or message.created_at
        message.counted = True
        done["messages"] += 1
        if message.attempt_key == "owner":  # a task's notice to its owner, not the journey's email
            if message.sent_at is not None:
                counts[
                    stat_key(
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
            for metric in hourly(message, place, "sent"):
                counts[message_key(message, segment, tier, when, metric)] += 1
            if message.status == MessageStatus.BOUNCED:
                # Bounced after it was sent: counted when the relay reported it
                # (campaigns.tracking.bounces).
                continue
        if message.status != MessageStatus.SENT:
            counts[
                message_key(
                    message,
                    segment,
                    tier,
                    when,
                    _MESSAGE_METRIC[MessageStatus(message.status)],
                )
            ] += 1

    # Tasks created, and done.
    todo = select(Task).where(Task.counted < 3).order_by(Task.id).limit(batch)
    tasks = list(session.scalars(todo.with_for_update(skip_locked=True) if lock else todo))
    where = places(session, {t.enrollment_id for t in tasks if t.enrollment_id})
    for task in tasks:
        segment, tier = where.get(task.enrollment_id or 0, NOWHERE)[:2]
        flags = task.counted
        if not flags & 1:
            counts[
                stat_key(
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
                stat_key(
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


def places(session: Session, enrollment_ids: Iterable[int]) -> dict[int, Place]:
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
            .outerjoin(Contact, Contact.id == Enrollment.contact_id)  # none: an account's
            .join(JourneyVersion, JourneyVersion.id == Enrollment.journey_version_id)
            .where(Enrollment.id.in_(ids[start : start + 5_000]))
        )
        rows.extend(session.execute(query))
    timed = timed_steps(session, {row[4] for row in rows})
    return {
        enrollment_id: Place(segment or "", tier or "", zone, timed.get(digest, frozenset()))
        for enrollment_id, segment, tier, zone, digest in rows
    }


def hourly(message: Message, place: Place, metric: str) -> list[str]:
    """``metric``, and its hour of sending (``clicked@10``) when the message's step learns its
    send time (:mod:`campaigns.insight.sendtime`): the hour its ``sent_at`` was for the
    recipient."""
    if (
        metric in HOUR_METRICS
        and message.step_id in place.timed
        and message.sent_at is not None
        and message.channel == Channel.EMAIL
        and message.attempt_key == "1"
    ):
        return [metric, hour_metric(metric, local_hour(message.sent_at, place.time_zone))]
    return [metric]


# ---------------------------------------------------------------------------- reported later


def count_message(
    session: Session, message: Message, metrics: Iterable[str], when: datetime | date
) -> None:
    """Count one of each of ``metrics`` for ``message`` (its journey, step, channel, variant,
    segment and tier) on ``when``'s day. The caller makes sure it is the first time (see
    :func:`campaigns.tracking.bounces.store_notices`) and commits."""
    place = places(session, [message.enrollment_id] if message.enrollment_id else []).get(
        message.enrollment_id or 0, NOWHERE
    )
    add(
        session,
        Counter(
            {message_key(message, place.segment, place.tier, when, metric): 1 for metric in metrics}
        ),
    )


# ---------------------------------------------------------------------------- in-app messages

IN_APP_METRICS = {"seen_at": "in_app_seen", "clicked_at": "in_app_clicked"}
"""The metric of each first acknowledgement of an in-app message."""


def count_in_app(session: Session, item: InAppMessage, metric: str, when: datetime) -> None:
    """Count ``metric`` (``in_app_seen``, ``in_app_clicked``) for an in-app message; the caller
    counts the first acknowledgement only (the one whose ``UPDATE ... IS NULL`` set it) and
    commits."""
    if item.journey_id is None:
        return
    place = places(session, [item.enrollment_id] if item.enrollment_id else []).get(
        item.enrollment_id or 0, NOWHERE
    )
    add(
        session,
        Counter(
            {
                stat_key(
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
