"""A send batch: enrollments advanced together in one session, under one lease, with their
emails delivered in rounds.

Loading takes a few queries for the whole batch (enrollments, contacts, accounts, their
messages, suppressions, recent sends). Each enrollment runs until it waits, ends, or queues
an email; then the round's emails are rendered and marked "sending" in one commit, handed to
their channel one after another over the transport's connection, and their results stored
(at least every :data:`RESULTS_COMMIT_SECONDS`, and at the end). Enrollments that queued an
email run again from that step, which now sees its message's result, until none queues
another.

Every commit of the session is fenced by the lease (:meth:`Lease.fence`). Before each send
the batch checks that its lease is still good and that the send can end before the job's
``deadline``; if not, it stops: what was not handed to the channel goes back to pending, and
the enrollments are released for the next job.

A journey paused while its batch runs (:mod:`campaigns.engine.lifecycle`) is seen when a
round has been marked "sending" and at every commit of its results: its messages not yet
handed to the channel go back to pending, keeping their Message-IDs, and its enrollments stop
where they are, due, for the resume.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from campaigns.channels.base import Status
from campaigns.engine import controls, delivery, leases, lifecycle
from campaigns.engine.context import StepContext, Tools
from campaigns.engine.leases import Lease
from campaigns.engine.outgoing import Outgoing
from campaigns.engine.results import AdvanceResult
from campaigns.engine.runner import MAX_STEPS_PER_RUN, run_steps
from campaigns.journeys.model import Journey
from campaigns.store import erased
from campaigns.store.enums import MessageStatus, OutboundType, SuppressionReason
from campaigns.store.models import Account, Contact, Enrollment, Message, Suppression
from campaigns.store.outbox import Item, emit_many, wants

RESULTS_COMMIT_SECONDS = 0.5
"""While a batch is being delivered, its results so far are committed at least this often,
so that a crash in the middle of a delivery leaves about this much of its sends in doubt
(two commits a second per worker while a relay is slow; none when a batch is quick)."""


@dataclass
class Pace:
    """How long the last sends took (what the next one is expected to take), and how many
    this run made: a run's first send always goes, so every job gets something done."""

    send_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    sends_this_run: int = 0

    def fits(self, deadline: float | None) -> bool:
        """Whether the next send is expected to end before ``deadline`` (twice the slowest
        of the recent sends)."""
        if deadline is None or not self.sends_this_run:
            return True
        return time.monotonic() + 2 * max(self.send_seconds, default=0.0) < deadline


class SendBatch:
    """Enrollments advanced together under one lease (see the module's docstring)."""

    def __init__(
        self,
        tools: Tools,
        session: Session,
        now: datetime,
        lease: Lease,
        journeys: Callable[[Session, int], Journey],
        pace: Pace,
        deadline: float | None = None,
    ) -> None:
        self.tools, self.session, self.now = tools, session, now
        self.lease, self.journeys, self.pace, self.deadline = lease, journeys, pace, deadline
        self.counts = AdvanceResult()
        self.outbox: list[Outgoing] = []
        self.unrecorded: list[int] = []
        """Messages the channel accepted whose "sent" is not committed yet."""
        self.announced: list[Item] = []
        """Outgoing events of this round's results, written with them (at the commit)."""
        self._announce_sent = wants(session, OutboundType.MESSAGE_SENT)
        self._announce_bounced = wants(session, OutboundType.MESSAGE_BOUNCED)
        self.stopped: str | None = None
        self.held: set[int] = set()
        """Enrollments whose journey was paused while the batch ran: they run no further."""
        self._messages: dict[tuple[int, str, str], Message] = {}
        self._known: set[str] = set()
        self._suppressed: set[str] = set()
        self._erased: set[str] = set()
        self._recent: dict[int, list[datetime]] = {}

    def run(self, ids: Sequence[int]) -> None:
        todo = self._contexts(ids)
        self.counts.advanced += len(todo)
        for _ in range(MAX_STEPS_PER_RUN):
            todo = [ctx for ctx in todo if run_steps(ctx)]
            self.flush()
            todo = [ctx for ctx in todo if ctx.enrollment.id not in self.held]
            if not todo or self.stopped:
                break
        self.counts.stopped = self.stopped is not None
        self.lease.release(ids)
        self.commit()

    def _contexts(self, ids: Sequence[int]) -> list[StepContext]:
        """The due enrollments among ``ids``, each with its contact (or, for an account
        enrollment, its account's contacts) and account, loaded in a few queries for the
        whole batch."""
        session, now = self.session, self.now
        enrollments = session.scalars(select(Enrollment).where(Enrollment.id.in_(ids))).all()
        due = [
            e
            for e in enrollments
            if e.state in leases.RUNNABLE and e.next_run_at is not None and e.next_run_at <= now
        ]
        live = lifecycle.live_among(session, {e.journey_id for e in due}) if due else set()
        due = [e for e in due if e.journey_id in live]  # paused since the claim: it waits
        if not due:
            return []
        of_accounts = {e.account_id for e in due if e.contact_id is None and e.account_id}
        wanted: ColumnElement[bool] = Contact.id.in_(
            {e.contact_id for e in due if e.contact_id is not None}
        )
        if of_accounts:
            wanted = wanted | Contact.account_id.in_(of_accounts)
        contacts = {c.id: c for c in session.scalars(select(Contact).where(wanted))}
        members: dict[int, list[Contact]] = {}
        for contact in sorted(contacts.values(), key=lambda c: c.id):
            if contact.account_id in of_accounts:
                members.setdefault(contact.account_id, []).append(contact)
        account_ids = {c.account_id for c in contacts.values() if c.account_id} | of_accounts
        accounts = (
            {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(account_ids)))}
            if account_ids
            else {}
        )
        self._load(due, contacts)
        todo = []
        for enrollment in due:
            journey = self.journeys(session, enrollment.journey_version_id)
            if enrollment.contact_id is None:
                account_id = enrollment.account_id
                account = accounts.get(account_id) if account_id else None
                people = members.get(account_id, []) if account_id else []
                todo.append(
                    StepContext(
                        self.tools, session, enrollment, None, account, journey, now, self, people
                    )
                )
                continue
            contact = contacts[enrollment.contact_id]
            account = accounts.get(contact.account_id) if contact.account_id else None
            todo.append(
                StepContext(self.tools, session, enrollment, contact, account, journey, now, self)
            )
        return todo

    def _load(self, due: Sequence[Enrollment], contacts: dict[int, Contact]) -> None:
        session = self.session
        for message in session.scalars(
            select(Message).where(Message.enrollment_id.in_([e.id for e in due]))
        ):
            if message.enrollment_id is not None:
                key = (message.enrollment_id, message.step_id, message.attempt_key)
                self._messages[key] = message
        self._known = {c.email.lower() for c in contacts.values()}
        self._suppressed = set(
            session.scalars(select(Suppression.email).where(Suppression.email.in_(self._known)))
        )
        self._erased = erased.erased_among(session, self._known)  # by hash, one query
        settings = self.tools.settings
        if settings.frequency_cap > 0:
            query = controls.recent_sends_query(list(contacts), self.now, settings.frequency_period)
            for contact_id, sent_at in session.execute(query):
                if sent_at is not None and contact_id is not None:
                    self._recent.setdefault(contact_id, []).append(sent_at)

    # -- what the steps ask of the batch while they run

    def message(self, key: tuple[int, str, str], values: dict[str, object]) -> Message:
        """The row of ``key`` (enrollment, step, attempt), or a new one of ``values``."""
        message = self._messages.get(key)
        if message is None:
            message = Message(**values)
            self.session.add(message)  # inserted with the round's flush, many rows at once
            self._messages[key] = message
        return message

    def written(self, key: tuple[int, str, str]) -> Message | None:
        """The row of ``key`` (enrollment, step, attempt) if one is written already."""
        return self._messages.get(key)

    def variant(self, enrollment_id: int, step_id: str, attempt_key: str = "1") -> str | None:
        message = self._messages.get((enrollment_id, step_id, attempt_key))
        return message.variant if message is not None else None

    def suppressed(self, address: str) -> bool:
        address = address.lower()
        if address not in self._known:
            self._known.add(address)
            if erased.is_erased(self.session, address):
                self._erased.add(address)
            elif controls.is_suppressed(self.session, address):
                self._suppressed.add(address)
        return address in self._suppressed

    def erased(self, address: str) -> bool:
        """Whether ``address`` was erased (preloaded by hash for the batch's contacts)."""
        address = address.lower()
        if address not in self._known:
            self.suppressed(address)  # looks it up, and remembers both answers
        return address in self._erased

    def recent_sends(self, contact_id: int) -> list[datetime]:
        return self._recent.get(contact_id, [])

    def queue(self, outgoing: Outgoing) -> None:
        self.outbox.append(outgoing)
        if outgoing.marketing and outgoing.contact_id is not None:  # counts against the cap
            self._recent.setdefault(outgoing.contact_id, []).append(self.now)

    def may_send(self) -> bool:
        """Whether the next send may start: the lease still holds, and the send is expected
        to end before the deadline. Once False, the batch stops."""
        if self.stopped is None:
            if not self.lease.valid():
                self.stopped = "lease"
            elif not self.pace.fits(self.deadline):
                self.stopped = "time budget"
        return self.stopped is None

    # -- a round of delivery

    def flush(self) -> None:
        outbox, self.outbox = self.outbox, []
        if not outbox:
            return
        session = self.session
        session.flush()  # new message rows get their ids (tokens carry them)
        for outgoing in outbox:
            outgoing.prepare()
        # Written before the channel is called: a crash from here on leaves these
        # messages "sending" with their Message-IDs, and a re-run resends them under them.
        self.commit()
        committed = time.monotonic()
        with session.no_autoflush:  # no write transaction stays open while the relay is slow
            todo = deque(self._live(outbox))
            while todo:
                if not self.may_send():
                    for rest in todo:
                        rest.unprepare()
                    break
                self.deliver(todo.popleft())
                if time.monotonic() - committed >= RESULTS_COMMIT_SECONDS:
                    self.commit()
                    committed = time.monotonic()
                    todo = deque(self._live(todo))
        # Recorded now, before the next round runs: a step that raises there makes the batch
        # run again one enrollment at a time, and must find these sends done.
        self.commit()

    def _live(self, outgoings: Sequence[Outgoing]) -> list[Outgoing]:
        """The prepared messages whose journey is still live; the others go back to pending
        (with their Message-IDs) and their enrollments are held where they are."""
        if not outgoings:
            return []
        live = lifecycle.live_among(self.session, {o.message.journey_id for o in outgoings})
        going = []
        for outgoing in outgoings:
            journey_id = outgoing.message.journey_id
            if journey_id is None or journey_id in live:
                going.append(outgoing)
                continue
            outgoing.unprepare()
            if outgoing.message.enrollment_id is not None:
                self.held.add(outgoing.message.enrollment_id)
        return going

    def deliver(self, outgoing: Outgoing) -> None:
        """Hand a prepared ("sending") message to its channel and record what happened
        (the caller commits); the step sees the result when it runs again."""
        message, rendered, counts = outgoing.message, outgoing.rendered, self.counts
        assert rendered is not None, "prepared first"
        started = time.monotonic()
        try:
            receipt = outgoing.channel.push(rendered)
        finally:
            self.pace.send_seconds.append(time.monotonic() - started)
            self.pace.sends_this_run += 1
        if receipt.status == Status.SENT:
            message.status, message.sent_at, message.error = MessageStatus.SENT, self.now, None
            counts.sent += 1
            self.unrecorded.append(message.id)
            if self._announce_sent:
                self.announced.append(
                    Item(OutboundType.MESSAGE_SENT, self.now, message_id=message.id)
                )
        elif receipt.status == Status.RETRY:
            wait = delivery.backoff(message.tries)
            controls.backoff(message, receipt.error or "", self.now, wait)
            if wait is None:
                counts.failed += 1
            else:
                counts.deferred += 1
        else:
            message.status, message.error = MessageStatus.BOUNCED, (receipt.error or "")[:2000]
            if self._announce_bounced:
                self.announced.append(
                    Item(
                        OutboundType.MESSAGE_BOUNCED,
                        self.now,
                        message_id=message.id,
                        data={"hard": bool(receipt.bad_address), "source": "smtp"},
                    )
                )
            if receipt.bad_address:  # a 5xx about the content or the sender says nothing
                controls.suppress(
                    self.session,
                    rendered.to,
                    SuppressionReason.HARD_BOUNCE,
                    receipt.source,
                    self.now,
                )
            counts.failed += 1
            self._known.discard(rendered.to.lower())  # look again: it may be suppressed now

    def commit(self) -> None:
        """Commit (fenced by the lease): what the channels accepted is recorded, and the
        outgoing events that say so."""
        if self.announced:
            announced, self.announced = self.announced, []
            emit_many(self.session, announced)
        self.session.commit()
        self.unrecorded.clear()
