"""Leases on enrollments: who may advance them, until when, proven at every write.

A worker advances an enrollment only while it holds the enrollment's lease. A claim stamps
the due rows it takes with the claimant (``claimed_by``, e.g. ``host:pid``), a fresh random
fencing token (``lease_token``) and an expiry (``claimed_until``), and counts the run in
``unfinished_runs``. From then on:

- **The holder renews the lease while it works**: a heartbeat thread every quarter of the
  lease (and, on SQLite, every commit of the batch's session).
- **Every commit is fenced.** Before the batch's session commits, one statement checks
  exactly the rows the holder believes it holds for its token and an unexpired lease
  (``SELECT ... FOR UPDATE`` on PostgreSQL, which locks them until the commit so no claim
  can slip in between; an ``UPDATE`` extending the lease on SQLite, which takes its one
  writer's lock). If any row does not match, the commit is refused with
  :class:`LeaseLost` and the batch stops: a holder whose lease ran out, or was taken over,
  can write nothing.
- **Before every send the holder asks** :meth:`Lease.valid`: whether its last renewal still
  covers a third of the lease. A holder cut off from the database stops sending well before
  anyone else may claim its rows, so a slow relay or a database blip never makes two workers
  send the same message.
- **A release ends the run** (the batch is done, or stopped cleanly at its time budget): the
  rows lose their claim and ``unfinished_runs`` goes back to 0.

A lease that simply runs out means its holder died, hung, or lost the database: the row's
run did not finish. Such rows are claimed first, as soon as their lease has run out, and
then **run one at a time**, each counted on its own: a second crash leaves at most one
enrollment's message in doubt, and an enrollment that kills every worker running it (a
poison enrollment) is found: after ``max_runs`` unfinished runs in a row it is marked
failed instead of being run again.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rq.timeouts import BaseTimeoutException
from sqlalchemy import and_, event, or_, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.engine.lifecycle import live_ids
from campaigns.outages import is_outage
from campaigns.store.enums import EnrollmentState, MessageStatus, OutboundType
from campaigns.store.models import Base
from campaigns.store.outbox import Item, emit_many

log = logging.getLogger("campaigns.leases")

# The lease columns are written with Core statements only: the ORM never writes them, so a
# batch's flush cannot undo a renewal or a release.
_enrollments = Base.metadata.tables["enrollments"]
_messages = Base.metadata.tables["messages"]

RUNNABLE = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)


class LeaseLost(Exception):
    """The batch's lease ran out or was taken over: it must stop, writing and sending nothing."""


def is_abort(exc: BaseException) -> bool:
    """True for errors that say nothing about the enrollment being run.

    A lost lease, RQ's job timeout, or the database or Redis going away must stop the job (and
    let RQ retry it), never be caught and retried enrollment by enrollment inside the same
    job: that would mark healthy enrollments failed, or send while the lease is in doubt.
    """
    return isinstance(exc, LeaseLost | BaseTimeoutException) or is_outage(exc)


@dataclass
class Lease:
    """A claim on enrollments under one fencing token. Thread-safe: the heartbeat renews it
    while the batch runs."""

    sessions: sessionmaker[Session]
    clock: Clock
    owner: str
    token: int
    duration: timedelta
    ids: list[int]
    until: datetime
    suspect: bool = False  # rows whose last run did not finish: run one at a time
    lost: bool = False
    _held: set[int] = field(default_factory=set, repr=False)
    _releasing: set[int] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._held = set(self.ids)

    # -- what the holder asks

    def held(self) -> set[int]:
        with self._lock:
            return set(self._held)

    def valid(self) -> bool:
        """May the holder still send? Its last renewal must cover a third of the lease more,
        so a holder whose renewals fail stops well before the rows can be claimed by others."""
        return not self.lost and self.clock.now() < self.until - self.duration / 3

    # -- renewing

    def _expected(self) -> set[int]:
        with self._lock:
            return self._held - self._releasing

    def _renew_in(self, session: Session, *, fence: bool = False) -> None:
        """Check the rows still held (but those the batch is releasing) in ``session``'s
        transaction, and extend their lease; raise :class:`LeaseLost` (and mark the lease
        lost) if any row no longer matches.

        As a commit's fence on PostgreSQL (``fence``) it only checks, with ``SELECT ... FOR
        UPDATE``: the rows stay locked until the commit, so no claim can slip in, and no new
        row versions are written (the heartbeat renews). Elsewhere it is an ``UPDATE``, which
        on SQLite also takes the write lock at once."""
        ids = self._expected()
        if not ids:
            return
        now = self.clock.now()
        until = now + self.duration
        c = _enrollments.c
        mine = (c.id.in_(sorted(ids)), c.lease_token == self.token, c.claimed_until > now)
        if fence and session.get_bind().dialect.name == "postgresql":
            renewed = set(session.scalars(select(c.id).where(*mine).with_for_update()))
        else:
            renewed = set(
                session.scalars(
                    update(_enrollments).where(*mine).values(claimed_until=until).returning(c.id)
                )
            )
            self.until = until
        missing = (
            ids & self._expected()
        ) - renewed  # rows the batch released meanwhile are not missed
        if missing:
            self._lose(len(missing))

    def _lose(self, rows: int) -> None:
        self.lost = True
        raise LeaseLost(f"lease {self.token} of {self.owner} lost on {rows} enrollment(s)")

    def renew(self) -> bool:
        """One heartbeat: renew in a transaction of its own. False when the lease is lost;
        a database error is logged and left for the next beat (:meth:`valid` tells when
        waiting is no longer safe)."""
        try:
            with self.sessions() as session, session.begin():
                if session.get_bind().dialect.name == "postgresql":
                    # The batch's own transaction may hold some of these rows; give way to it
                    # rather than wait (and never deadlock with it).
                    session.execute(text("SET LOCAL lock_timeout = '200ms'"))
                self._renew_in(session)
        except LeaseLost:
            log.warning(
                "lease %s of %s lost: the batch stops before its next send", self.token, self.owner
            )
            return False
        except sa_exc.SQLAlchemyError as exc:
            log.warning(
                "lease %s: renewal failed (%s); trying again", self.token, type(exc).__name__
            )
        return True

    @contextmanager
    def heartbeat(self) -> Iterator[Lease]:
        """Renew the lease every quarter of its duration while the block runs (one beat
        may fail and :meth:`valid` still holds)."""
        stop = threading.Event()
        interval = self.duration.total_seconds() / 4

        def beat() -> None:
            while not stop.wait(interval):
                if not self.renew():
                    return

        thread = threading.Thread(target=beat, name=f"lease-{self.token}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=5)

    # -- fencing the batch's session

    @contextmanager
    def fence(self, session: Session) -> Iterator[Session]:
        """Fence every commit of ``session``: check the lease first (refusing the commit if
        it is lost), then write the releases staged with :meth:`release`."""

        def before_commit(s: Session) -> None:
            with s.no_autoflush:
                self._renew_in(s, fence=True)
                if self._releasing:
                    self._release_in(s)  # checks those rows itself

        def after_commit(s: Session) -> None:
            with self._lock:
                self._held -= self._releasing
                self._releasing = set()

        event.listen(session, "before_commit", before_commit)
        event.listen(session, "after_commit", after_commit)
        try:
            yield session
        finally:
            event.remove(session, "before_commit", before_commit)
            event.remove(session, "after_commit", after_commit)

    def release(self, ids: Iterable[int]) -> None:
        """Stage a release: the fenced session's next commit ends these rows' run."""
        with self._lock:
            self._releasing |= set(ids) & self._held

    def begin_alone(self, session: Session, enrollment_id: int, max_runs: int) -> bool:
        """Start running one row of a suspect lease on its own: count the run (committed
        before anything can crash), or, if its runs did not finish ``max_runs`` times in a
        row, mark it failed instead and release it. True when it may run. Only the row being
        run is counted, so the rows waiting behind an enrollment that kills its worker are
        not blamed for it."""
        c = _enrollments.c
        runs = session.scalar(
            update(_enrollments)
            .where(c.id == enrollment_id, c.lease_token == self.token)
            .values(unfinished_runs=c.unfinished_runs + 1)
            .returning(c.unfinished_runs)
            .execution_options(synchronize_session=False)
        )
        if runs is None:
            self.lost = True
            raise LeaseLost(
                f"lease {self.token} of {self.owner} lost on enrollment {enrollment_id}"
            )
        if runs <= max_runs:
            session.commit()
            return True
        log.error(
            "enrollment %s: %d runs in a row did not finish; marked failed", enrollment_id, max_runs
        )
        self.fail(
            session,
            enrollment_id,
            f"stopped after {max_runs} runs in a row that did not finish (the worker died, timed "
            "out or lost its lease each time; see the worker's log)",
        )
        session.commit()
        return False

    def fail(self, session: Session, enrollment_id: int, error: str) -> None:
        """Mark a held enrollment failed for good, with ``error``, and stage its release
        (the fenced session's next commit writes both)."""
        session.execute(
            update(_enrollments)
            .where(_enrollments.c.id == enrollment_id)
            .values(
                state=EnrollmentState.FAILED,
                error=error[:2000],
                finished_at=self.clock.now(),
                next_run_at=None,
            )
        )
        emit_many(
            session,
            [
                Item(
                    OutboundType.JOURNEY_EXITED,
                    self.clock.now(),
                    enrollment_id=enrollment_id,
                    data={"state": str(EnrollmentState.FAILED), "reason": error[:255]},
                )
            ],
        )
        self.release([enrollment_id])

    def _release_in(self, session: Session) -> None:
        """End the run of the staged rows, if they are still under this unexpired lease (the
        release is their fence: one statement instead of a renewal and a release)."""
        c = _enrollments.c
        staged = set(self._releasing)
        released = set(
            session.scalars(
                update(_enrollments)
                .where(
                    c.id.in_(sorted(staged)),
                    c.lease_token == self.token,
                    c.claimed_until > self.clock.now(),
                )
                .values(claimed_until=None, claimed_by=None, lease_token=None, unfinished_runs=0)
                .returning(c.id)
            )
        )
        if released != staged:
            self._lose(len(staged - released))

    # -- after an abort

    def abandon(self, sent: Sequence[int]) -> None:
        """Best effort after an abort (a job timeout, a lost lease, an outage): record the
        messages the transport accepted whose "sent" was not committed yet, and let the rows
        be claimed again at once (one at a time: their run did not finish). Writes only
        where the token still matches; if the database is down, the lease runs out instead."""
        ids = self.held()
        if not ids:
            return
        try:
            with self.sessions() as session, session.begin():
                now = self.clock.now()
                mine = list(
                    session.scalars(
                        update(_enrollments)
                        .where(
                            _enrollments.c.id.in_(sorted(ids)),
                            _enrollments.c.lease_token == self.token,
                        )
                        .values(
                            claimed_until=now - timedelta(seconds=1)
                        )  # run out: claimable at once
                        .returning(_enrollments.c.id)
                    )
                )
                if sent and mine:
                    recorded = session.scalars(
                        update(_messages)
                        .where(
                            _messages.c.id.in_(sorted(sent)),
                            _messages.c.status == MessageStatus.SENDING,
                            _messages.c.enrollment_id.in_(mine),
                        )
                        .values(status=MessageStatus.SENT, sent_at=now, error=None)
                        .returning(_messages.c.id)
                    ).all()
                    emit_many(
                        session,
                        [Item(OutboundType.MESSAGE_SENT, now, message_id=m) for m in recorded],
                    )
        except sa_exc.SQLAlchemyError as exc:
            log.warning(
                "lease %s: could not hand back its enrollments (%s); they are claimed again when "
                "it runs out",
                self.token,
                type(exc).__name__,
            )
            return
        with self._lock:
            self._held.clear()


def claim(
    sessions: sessionmaker[Session],
    clock: Clock,
    owner: str,
    *,
    limit: int,
    duration: timedelta,
    suspects: bool = True,
) -> Lease | None:
    """Take a lease on up to ``limit`` due enrollments: first those whose last run did not
    finish (a *suspect* lease: its rows are run one at a time, see :meth:`Lease.begin_alone`),
    else free ones, whose run starts now (counted in ``unfinished_runs``). Safe with many
    workers (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, one atomic ``UPDATE ... RETURNING``
    on SQLite). ``suspects=False`` skips the look for unfinished rows (it costs a statement).
    Only live journeys' enrollments are claimed: a paused or draft journey's wait, due or not,
    keeps its place (:mod:`campaigns.engine.lifecycle`)."""
    now = clock.now()
    until = now + duration
    token = secrets.randbits(62) + 1
    c = _enrollments.c
    due = and_(
        c.state.in_(RUNNABLE), c.next_run_at <= now, c.journey_id.in_(live_ids().scalar_subquery())
    )
    unfinished = and_(c.claimed_until < now, c.unfinished_runs > 0)
    free = or_(c.claimed_until.is_(None), and_(c.claimed_until < now, c.unfinished_runs == 0))
    stamp = {"claimed_until": until, "claimed_by": owner[:128], "lease_token": token}
    with sessions() as session, session.begin():
        postgres = session.get_bind().dialect.name == "postgresql"
        for condition, values, suspect in (
            (unfinished, stamp, True),
            (free, {**stamp, "unfinished_runs": c.unfinished_runs + 1}, False),
        ):
            if suspect and not suspects:
                continue
            query = select(c.id).where(due, condition).order_by(c.next_run_at).limit(limit)
            if postgres:
                query = query.with_for_update(skip_locked=True)
            ids = sorted(
                session.scalars(
                    update(_enrollments)
                    .where(c.id.in_(query.scalar_subquery()))
                    .values(**values)
                    .returning(c.id)
                )
            )
            if ids:
                return Lease(sessions, clock, owner, token, duration, ids, until, suspect=suspect)
    return None


def count_due(sessions: sessionmaker[Session], now: datetime, cap: int) -> int:
    """How many due enrollments a claim could take now (counted up to ``cap``): those of live
    journeys only, so a paused journey asks for no jobs."""
    c = _enrollments.c
    claimable = or_(c.claimed_until.is_(None), c.claimed_until < now)
    live = c.journey_id.in_(live_ids().scalar_subquery())
    inner = (
        select(c.id)
        .where(c.state.in_(RUNNABLE), c.next_run_at <= now, claimable, live)
        .limit(cap)
        .subquery()
    )
    with sessions() as session:
        return int(session.scalar(select(text("count(*)")).select_from(inner)) or 0)
