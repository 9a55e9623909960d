"""A journey's lifecycle: draft, live, paused, archived; and taking one contact or account out.

One module for the CLI and the dashboard, each change a function of a session, an actor and
a time, with its audit entry (:mod:`campaigns.store.audit`) in the same transaction:

- **draft**: stored, runs nothing; ``live`` makes it enrol and send.
- **paused**: nobody enters, no step runs and nothing is sent, not even the messages already
  written for delivery: the claim (:func:`campaigns.engine.leases.claim`) takes only the
  enrollments of live journeys (:func:`live_ids`), and a send batch looks again
  (:func:`live_among`) after it has marked a round "sending" and while it delivers it,
  handing the rows of a journey paused meanwhile back as pending, with their Message-IDs.
- **resume**: nothing is moved. Every enrollment kept its step and its ``next_run_at``, so a
  wait that ended during the pause is due at once and a wait still running keeps its time;
  what is released goes through the same delivery controls as ever (frequency cap, sending
  window, rate limits), one send batch after another, never around them.
- **archived**: nobody enters; the running enrollments end (``exited``, ``archived``), their
  unsent messages are suppressed, and the journey leaves the default lists.
- **remove**: one contact (by email) or one account (by external id) leaves a journey: its
  running enrollments end (``exited``, ``removed by <actor>``) and their unsent messages are
  suppressed with that reason.

Ending enrollments also drops their lease (:mod:`campaigns.engine.leases`): a worker that
holds one finds its fence broken at its next commit and writes and sends nothing more.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.orm import Session

from campaigns.exceptions import CampaignsError, UnknownJourney
from campaigns.store import audit
from campaigns.store.enums import (
    AuditAction,
    EnrollmentState,
    JourneyStatus,
    MessageStatus,
    OutboundType,
)
from campaigns.store.models import Account, Contact, Enrollment, Message
from campaigns.store.models import Journey as JourneyRow
from campaigns.store.outbox import Item, emit_many, wants

RUNNING = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)
"""The states of an enrollment that has not ended."""

UNSENT = (MessageStatus.PENDING, MessageStatus.DEFERRED, MessageStatus.SENDING)
"""A message in one of these states may still go: ending its enrollment suppresses it."""

ARCHIVED_REASON = "archived"


class LifecycleError(CampaignsError):
    """A change the journey's status does not allow, or someone who is not in it."""


@dataclass(frozen=True)
class Change:
    """What a status change did: the journey, its status before and after, and (archive)
    how many enrollments ended and messages were withdrawn."""

    key: str
    before: str
    after: str
    ended: int = 0
    withdrawn: int = 0


@dataclass(frozen=True)
class Removal:
    """Who was taken out of which journey: the enrollments ended, the messages withdrawn."""

    key: str
    who: str
    ended: int
    withdrawn: int


ALLOWED: dict[JourneyStatus, tuple[JourneyStatus, ...]] = {
    JourneyStatus.LIVE: (JourneyStatus.DRAFT,),
    JourneyStatus.PAUSED: (JourneyStatus.LIVE,),
    JourneyStatus.ARCHIVED: (JourneyStatus.DRAFT, JourneyStatus.LIVE, JourneyStatus.PAUSED),
}
"""For each target status, the statuses it may be reached from (resume: paused to live)."""

_HINT = {
    (JourneyStatus.LIVE, JourneyStatus.PAUSED): "it is paused: resume it",
    (JourneyStatus.LIVE, JourneyStatus.ARCHIVED): (
        "it is archived: deploy it again with --draft, then make it live"
    ),
    (JourneyStatus.LIVE, JourneyStatus.LIVE): "it is live already",
    (JourneyStatus.PAUSED, JourneyStatus.PAUSED): "it is paused already",
    (JourneyStatus.ARCHIVED, JourneyStatus.ARCHIVED): "it is archived already",
}


# ---------------------------------------------------------------------------- what may run


def live_ids() -> Select[Any]:
    """The ids of the live journeys, as a subquery for the claim: only their enrollments run."""
    return select(JourneyRow.id).where(JourneyRow.status == JourneyStatus.LIVE)


def live_among(session: Session, journey_ids: Collection[int | None]) -> set[int]:
    """Which of ``journey_ids`` are live now (one statement; read committed, so a pause
    committed a moment ago is seen)."""
    wanted = sorted({j for j in journey_ids if j is not None})
    if not wanted:
        return set()
    return set(session.scalars(live_ids().where(JourneyRow.id.in_(wanted))))


# ---------------------------------------------------------------------------- status changes


def journey_row(session: Session, key: str, *, lock: bool = False) -> JourneyRow:
    """The deployed journey ``key``, or :class:`UnknownJourney`."""
    query = select(JourneyRow).where(JourneyRow.key == key)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise UnknownJourney(f"no journey {key!r} is deployed")
    return row


def _move(
    session: Session,
    key: str,
    target: JourneyStatus,
    actor: str,
    now: datetime,
    action: AuditAction,
    allowed: Sequence[JourneyStatus],
    end: bool = False,
) -> Change:
    """Move journey ``key`` to ``target`` if its status is one of ``allowed`` (else a
    :class:`LifecycleError` with a hint), ending its running enrollments if ``end``, and
    record ``action``."""
    row = journey_row(session, key, lock=True)
    before = row.status
    if before not in allowed:
        hint = _HINT.get((target, JourneyStatus(before)), f"it is {before}")
        verb = "go live" if target == JourneyStatus.LIVE and action == AuditAction.LIVE else action
        raise LifecycleError(f"journey {key}: cannot {verb} ({hint})")
    row.status = target
    row.updated_at = now
    detail: dict[str, object] = {"from": before, "to": str(target)}
    if target == JourneyStatus.PAUSED:
        row.paused_at = now
    elif row.paused_at is not None:
        detail["paused_at"] = row.paused_at.isoformat()
        detail["paused_seconds"] = max(0, int((now - row.paused_at).total_seconds()))
        row.paused_at = None
    ended = withdrawn = 0
    if end:
        ended, withdrawn = _end(session, Enrollment.journey_id == row.id, ARCHIVED_REASON, now)
        detail.update(ended=ended, withdrawn=withdrawn)
    audit.record(session, actor, action, key, detail=detail, at=now)
    return Change(key, before, target, ended, withdrawn)


def go_live(session: Session, key: str, actor: str, now: datetime) -> Change:
    """A draft goes live: it enrols and sends from the next tick."""
    return _move(
        session, key, JourneyStatus.LIVE, actor, now, AuditAction.LIVE, ALLOWED[JourneyStatus.LIVE]
    )


def pause(session: Session, key: str, actor: str, now: datetime) -> Change:
    """Hold every step of a live journey (see the module's text)."""
    return _move(
        session,
        key,
        JourneyStatus.PAUSED,
        actor,
        now,
        AuditAction.PAUSE,
        ALLOWED[JourneyStatus.PAUSED],
    )


def resume(session: Session, key: str, actor: str, now: datetime) -> Change:
    """A paused journey goes on where each enrollment was (see the module's text)."""
    return _move(
        session, key, JourneyStatus.LIVE, actor, now, AuditAction.RESUME, (JourneyStatus.PAUSED,)
    )


def archive(session: Session, key: str, actor: str, now: datetime) -> Change:
    """Done with the journey: nobody enters, its running enrollments end."""
    return _move(
        session,
        key,
        JourneyStatus.ARCHIVED,
        actor,
        now,
        AuditAction.ARCHIVE,
        ALLOWED[JourneyStatus.ARCHIVED],
        end=True,
    )


def stored_as_draft(session: Session, key: str, actor: str, now: datetime, version: int) -> None:
    """``deploy --draft``: the journey (new, or back from any status) is a draft: it runs
    nothing until it is made live. Its running enrollments keep their place."""
    row = journey_row(session, key, lock=True)
    before = row.status
    row.status = JourneyStatus.DRAFT
    row.paused_at = None
    audit.record(
        session,
        actor,
        AuditAction.DRAFT,
        key,
        detail={"from": before, "to": str(JourneyStatus.DRAFT), "version": version},
        at=now,
    )


def deployed(
    session: Session, key: str, actor: str, now: datetime, version: int, created: bool, path: str
) -> None:
    """Record a deploy of ``key`` (the new or re-current ``version``) in the audit log."""
    audit.record(
        session,
        actor,
        AuditAction.DEPLOY,
        key,
        detail={"version": version, "created": created, "path": path[-200:]},
        at=now,
    )


# ---------------------------------------------------------------------------- taking people out


def remove(
    session: Session,
    key: str,
    actor: str,
    now: datetime,
    *,
    contact: str | None = None,
    account: str | None = None,
) -> Removal:
    """Take one contact (by email) or one account (by external id) out of journey ``key``:
    its running enrollments there end and their unsent messages are suppressed. An account
    leaves an account journey, and each of its contacts a contact journey."""
    if (contact is None) == (account is None):
        raise LifecycleError("name one contact (email) or one account (external id)")
    row = journey_row(session, key)
    reason = f"removed by {actor}"[:255]
    if contact is not None:
        email = contact.strip()
        person = session.scalars(
            select(Contact).where(func.lower(Contact.email) == email.lower())
        ).first()
        if person is None:
            raise LifecycleError(f"no contact with the email {email!r}")
        who, subject = f"contact {person.email}", Enrollment.contact_id == person.id
    else:
        external = (account or "").strip()
        company = session.scalars(select(Account).where(Account.external_id == external)).first()
        if company is None:
            raise LifecycleError(f"no account with the external id {external!r}")
        members = select(Contact.id).where(Contact.account_id == company.id)
        who = f"account {company.external_id}"
        subject = or_(
            Enrollment.account_id == company.id,
            Enrollment.contact_id.in_(members.scalar_subquery()),
        )
    ended, withdrawn = _end(session, (Enrollment.journey_id == row.id) & subject, reason, now)
    if not ended:
        raise LifecycleError(f"journey {key}: {who} is not in it (no running enrollment)")
    audit.record(
        session,
        actor,
        AuditAction.REMOVE,
        key,
        detail={"who": who, "ended": ended, "withdrawn": withdrawn},
        at=now,
    )
    return Removal(key, who, ended, withdrawn)


def _end(
    session: Session, which: ColumnElement[bool], reason: str, now: datetime
) -> tuple[int, int]:
    """End the running enrollments ``which`` selects (``exited``, ``reason``), drop their
    leases, and suppress their unsent messages: (enrollments ended, messages withdrawn)."""
    ids = list(
        session.scalars(
            select(Enrollment.id).where(which, Enrollment.state.in_(RUNNING)).with_for_update()
        )
    )
    if not ids:
        return 0, 0
    withdrawn = 0
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        session.execute(
            update(Enrollment)
            .where(Enrollment.id.in_(chunk), Enrollment.state.in_(RUNNING))
            .values(
                state=EnrollmentState.EXITED,
                exit_reason=reason[:255],
                finished_at=now,
                next_run_at=None,
                claimed_until=None,
                claimed_by=None,
                lease_token=None,
                unfinished_runs=0,
            )
            .execution_options(synchronize_session=False)
        )
        result = session.execute(
            update(Message)
            .where(Message.enrollment_id.in_(chunk), Message.status.in_(UNSENT))
            .values(status=MessageStatus.SUPPRESSED, error=reason[:2000])
            .execution_options(synchronize_session=False)
        )
        withdrawn += int(getattr(result, "rowcount", 0) or 0)
    if wants(session, OutboundType.JOURNEY_EXITED):
        emit_many(
            session,
            [
                Item(
                    OutboundType.JOURNEY_EXITED,
                    now,
                    enrollment_id=i,
                    data={"state": str(EnrollmentState.EXITED), "reason": reason[:255]},
                )
                for i in ids
            ],
        )
    return len(ids), withdrawn
