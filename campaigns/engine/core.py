"""The engine: enrol, claim what is due, and advance the claimed enrollments in send batches.

The database holds every enrollment's state (current step, next_run_at); Redis/RQ only
carries work. :meth:`Engine.work` claims due enrollments a send batch at a time under a
lease (:mod:`campaigns.engine.leases`: a fencing token checked at every commit, renewed by a
heartbeat while the batch runs) and advances them (:mod:`campaigns.engine.batch`); in a
worker it runs inside an RQ job (``campaigns.worker.jobs.advance``) with a time budget, and
hands what is left to a fresh job. A tick enrols new entrants and, when jobs carry the work,
asks for enough of those jobs.

Every step is keyed so that running it twice does nothing twice, and every email is written
"sending" with its Message-ID before its channel is called: a worker that dies leaves at
most its in-flight batch in doubt, and the next run sends those under the same Message-IDs.
The steps (:mod:`campaigns.engine.steps`) never call back into the engine: it lends them
:class:`~campaigns.engine.context.Tools` (the channels, the settings, the tuner).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns.channels import registry
from campaigns.channels.transports import Transport
from campaigns.clock import Clock
from campaigns.content.render import Renderer
from campaigns.engine import health, leases, taskpass
from campaigns.engine.batch import Pace, SendBatch
from campaigns.engine.context import Tools
from campaigns.engine.enrol import enrol
from campaigns.engine.leases import Lease, is_abort
from campaigns.engine.ratelimit import RateLimiter
from campaigns.engine.results import AdvanceResult, TickResult
from campaigns.engine.settings import EngineSettings
from campaigns.exceptions import JourneyError
from campaigns.insight import sendtime, stats, tuning
from campaigns.journeys.model import Journey
from campaigns.journeys.scorecards import ScorecardSet
from campaigns.journeys.segments import SegmentSet
from campaigns.journeys.triggers import TriggerSet
from campaigns.store.enums import EventKind, JourneyStatus
from campaigns.store.models import Event
from campaigns.store.models import Journey as JourneyRow
from campaigns.store.versions import ParsedJourneys
from campaigns.tracking.events import record_event

__all__ = ["AdvanceResult", "Engine", "EngineSettings", "TickResult"]

log = logging.getLogger("campaigns.engine")

SUSPECT_PROBE_SECONDS = 1.0
"""How often a worker looks for rows whose run did not finish (a dead worker's), when the
last look found none: a statement per second instead of one per batch."""

DUE_COUNT_CAP = 100_000
"""A tick counts due enrollments up to this many to decide how many jobs to ask for."""


class Engine:
    """Runs journeys. Every dependency is passed in: the database, a clock, the segments,
    a renderer and a transport for email, (optionally) the health ``scorecards`` (see
    :mod:`campaigns.engine.health`), and ``dispatch``, which asks for jobs
    to do the due work: given how many send batches are due, it enqueues up to that many
    ``campaigns.worker.jobs.advance`` jobs and returns how many it enqueued. Without it, a
    tick does the work itself. The channels (:mod:`campaigns.channels.registry`) are built
    from the renderer and the transport."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        segments: Callable[[], SegmentSet],
        renderer: Renderer,
        transport: Transport,
        settings: EngineSettings | None = None,
        dispatch: Callable[[int], int] | None = None,
        links: Mapping[str, str] | None = None,
        rate_limiter: RateLimiter | None = None,
        tuner: tuning.Tuner | None = None,
        send_times: sendtime.SendTimes | None = None,
        journeys: ParsedJourneys | None = None,
        triggers: Callable[[], TriggerSet] | None = None,
        scorecards: Callable[[], ScorecardSet | None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.segments = segments
        self.renderer = renderer
        self.settings = settings or EngineSettings()
        self.dispatch = dispatch
        self.links = dict(links or {})
        self.rate_limiter = rate_limiter
        self.tuner = tuner or tuning.Tuner()
        self.send_times = send_times or sendtime.SendTimes()
        self.journeys = journeys or ParsedJourneys()
        self.triggers = triggers  # journeys/triggers.yaml: the trigger points and escalation
        self.scorecards = scorecards  # health: the first tick of each day scores it
        self.pace = Pace()
        self._next_probe = 0.0  # when to look again for a dead worker's rows
        self.transport = transport  # and the channels that use it

    @property
    def transport(self) -> Transport:
        """The email transport (customer email and owner mail share its connection)."""
        return self._transport

    @transport.setter
    def transport(self, transport: Transport) -> None:
        self._transport = transport
        self.channels = registry.build(
            self.renderer,
            transport,
            webhook_secret=self.settings.webhook_secret,
            dry_run=self.settings.dry_run,
        )

    @property
    def tools(self) -> Tools:
        """What the executors of a batch get: the channels, settings, tuner, rate limiter
        (read when the batch starts: tests and the CLI may swap one in between), and the
        segments file, whose persona rules choose each contact's content."""
        try:
            segset: SegmentSet | None = self.segments()
        except JourneyError as exc:  # the tick reports it; the steps send their own content
            log.error("the segments file does not load, personas are off: %s", exc)
            segset = None
        return Tools(
            self.channels,
            self.settings,
            self.links,
            self.tuner,
            self.send_times,
            self.rate_limiter,
            segset,
        )

    # ------------------------------------------------------------------ journeys

    def journey(self, session: Session, version_id: int) -> Journey:
        """The parsed journey of a stored version (parsed once per process)."""
        return self.journeys.version(session, version_id)

    def _active(self) -> list[tuple[int, int, Journey]]:
        """(journey id, current version id, parsed journey) of every active journey."""
        journeys: list[tuple[int, int, Journey]] = []
        with self.sessions() as session:
            rows = session.execute(
                select(JourneyRow.id, JourneyRow.current_version_id).where(
                    JourneyRow.status == JourneyStatus.LIVE,
                    JourneyRow.current_version_id.is_not(None),
                )
            ).all()
            for journey_id, version_id in rows:
                if version_id is None:
                    continue
                try:
                    journeys.append((journey_id, version_id, self.journey(session, version_id)))
                except JourneyError as exc:  # stored by a release with laxer rules: go on
                    log.error(
                        "journey %s: its current version %s no longer parses (%s);"
                        " fix and deploy it again",
                        journey_id,
                        version_id,
                        exc,
                    )
        return journeys

    # ------------------------------------------------------------------ tick

    def tick(self) -> TickResult:
        """One scheduler pass: enrol, then do the due work, or ask for jobs to do it."""
        result = TickResult()
        now = self.clock.now()
        segset = self.segments()
        result.health = health.on_tick(self.sessions, self.scorecards, segset, now)
        for journey_id, version_id, journey in self._active():
            with self.sessions() as session, session.begin():
                entered = enrol(
                    session,
                    journey,
                    journey_id,
                    version_id,
                    segset,
                    now,
                    self.settings.global_control,
                )
            result.entered[journey.key] = entered.entered
        if self.dispatch is None:
            done = self.work()
            result.claimed, result.batches = done.claimed, done.claims
            result.sent, result.deferred, result.failed = done.sent, done.deferred, done.failed
        else:
            result.due, result.batches = self.dispatch_due()
        result.tasks = taskpass.run(
            self.sessions,
            self.clock.now(),
            self.channels.owner,
            self.triggers,
            segset,
            self.settings,
        )
        with self.sessions() as session, session.begin():  # what happened, into the report
            stats.rollup(session, self.clock.now())
        return result

    def dispatch_due(self) -> tuple[int, int]:
        """Count the due enrollments and ask ``dispatch`` for jobs to run them: (due, jobs
        asked for)."""
        if self.dispatch is None:
            raise LookupError("this engine has no dispatch: its ticks do the work")
        due = leases.count_due(self.sessions, self.clock.now(), DUE_COUNT_CAP)
        return due, self.dispatch(math.ceil(due / max(1, self.settings.send_batch))) if due else 0

    def claim(self) -> Lease | None:
        """Take a lease on the next send batch of due enrollments (see
        :func:`campaigns.engine.leases.claim`)."""
        probe = time.monotonic() >= self._next_probe
        lease = self._claim(suspects=probe)
        if probe and not (lease is not None and lease.suspect):
            self._next_probe = time.monotonic() + SUSPECT_PROBE_SECONDS
        if lease is None and not probe:  # nothing free: look for a dead worker's rows
            lease = self._claim(suspects=True)
        return lease

    def _claim(self, *, suspects: bool) -> Lease | None:
        return leases.claim(
            self.sessions,
            self.clock,
            self.settings.worker_id,
            limit=max(1, self.settings.send_batch),
            duration=self.settings.lease,
            suspects=suspects,
        )

    def work(self, deadline: float | None = None) -> AdvanceResult:
        """Claim due enrollments and advance them, a send batch at a time, until none is due
        or ``deadline`` (a :func:`time.monotonic` time) comes; ``more`` says work was left.

        The lease is renewed by a heartbeat while each batch runs, and a batch stops before a
        send that would not end by the deadline, so a job never runs into its timeout."""
        total = AdvanceResult()
        self.pace.sends_this_run = 0
        while deadline is None or time.monotonic() < deadline:
            lease = self.claim()
            if lease is None:
                return total
            total.claims += 1
            total.claimed += len(lease.ids)
            if self.settings.heartbeat:
                with lease.heartbeat():
                    total.add(self.advance(lease, deadline))
            else:
                total.add(self.advance(lease, deadline))
            if total.stopped:
                break
        total.more = True
        return total

    # ------------------------------------------------------------------ advance

    def _batch(self, session: Session, lease: Lease, deadline: float | None) -> SendBatch:
        return SendBatch(
            self.tools, session, self.clock.now(), lease, self.journey, self.pace, deadline
        )

    def advance(self, lease: Lease, deadline: float | None = None) -> AdvanceResult:
        """Run the due steps of the enrollments under ``lease``, as one send batch.

        The batch is loaded in a few queries, its emails are rendered and marked "sending"
        in one commit, delivered over the transport's one connection, and their results
        stored (every second, and at the end). If anything in the batch raises, it is run
        again one enrollment at a time, so one bad enrollment fails alone and loses nothing.
        An abort (a lost lease, a job timeout, the database or Redis going away) is never
        caught here: the job stops, and what the transport accepted is recorded if it can be.
        """
        counts = AdvanceResult()
        if lease.suspect or len(lease.ids) == 1:  # rows whose last run did not finish; or 1
            return self._advance_each(lease, lease.ids, deadline, counts)
        batch = None
        try:
            with self.sessions() as session, lease.fence(session):
                batch = self._batch(session, lease, deadline)
                batch.run(lease.ids)
            return batch.counts
        except Exception as exc:
            if batch is not None:  # what reached the transport happened: count it
                counts.sent += batch.counts.sent
                counts.failed += batch.counts.failed
            if is_abort(exc):
                self._abort(lease, batch)
                raise
            log.warning(
                "send batch of %d failed; running it one enrollment at a time",
                len(lease.ids),
                exc_info=True,
            )
        return self._advance_each(lease, sorted(lease.held()), deadline, counts)

    def _advance_each(
        self, lease: Lease, ids: Sequence[int], deadline: float | None, counts: AdvanceResult
    ) -> AdvanceResult:
        """Run ``ids`` one enrollment at a time under ``lease``, until one stops (its time
        budget, its lease); release whatever is left."""
        for enrollment_id in ids:
            if counts.stopped:
                break
            self._advance_alone(lease, enrollment_id, deadline, counts)
        self._release_rest(lease)
        return counts

    def _advance_alone(
        self, lease: Lease, enrollment_id: int, deadline: float | None, counts: AdvanceResult
    ) -> None:
        batch = None
        try:
            with self.sessions() as session, lease.fence(session):
                if lease.suspect and not lease.begin_alone(
                    session, enrollment_id, self.settings.max_unfinished_runs
                ):
                    counts.failed += 1
                    return
                batch = self._batch(session, lease, deadline)
                batch.run([enrollment_id])
            counts.add(batch.counts)
            return
        except Exception as exc:
            if batch is not None:
                counts.sent += batch.counts.sent
                counts.failed += batch.counts.failed
            if is_abort(exc):
                self._abort(lease, batch)
                raise
            log.exception("enrollment %s failed", enrollment_id)
            error = f"{type(exc).__name__}: {exc}"[:2000]
        with self.sessions() as session, lease.fence(session):
            lease.fail(session, enrollment_id, error)
            session.commit()
        counts.failed += 1

    def _release_rest(self, lease: Lease) -> None:
        """Release what a stopped run left claimed, so the next job takes it at once."""
        rest = lease.held()
        if rest:
            with self.sessions() as session, lease.fence(session):
                lease.release(rest)
                session.commit()

    def _abort(self, lease: Lease, batch: SendBatch | None) -> None:
        """After an abort: record what the transport accepted, hand the rows back, and drop
        the transport's connection, which may be in the middle of a message."""
        lease.abandon(batch.unrecorded if batch is not None else [])
        self.transport.abort()

    # ------------------------------------------------------------------ events

    def record_event(
        self,
        session: Session,
        *,
        kind: EventKind,
        contact_id: int | None = None,
        account_id: int | None = None,
        name: str | None = None,
        value: str | None = None,
        enrollment_id: int | None = None,
        step_id: str | None = None,
        message_id: int | None = None,
    ) -> Event:
        """Store an event and wake the enrollments that wait for one (see
        :mod:`campaigns.tracking.events`)."""
        return record_event(
            session,
            self.clock.now(),
            kind=kind,
            contact_id=contact_id,
            account_id=account_id,
            name=name,
            value=value,
            enrollment_id=enrollment_id,
            step_id=step_id,
            message_id=message_id,
        )
