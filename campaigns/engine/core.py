"""The engine: enrol, claim what is due, advance enrollments step by step, deliver.

The database holds every enrollment's state (current step, next_run_at); Redis/RQ only
carries work. :meth:`Engine.work` claims due enrollments a send batch at a time under a
lease (:mod:`campaigns.engine.leases`: a fencing token checked at every commit, renewed by a
heartbeat while the batch runs) and advances them; in a worker it runs inside an RQ job
(``campaigns.worker.jobs.advance``) with a time budget, and hands what is left to a fresh job. A
tick enrols new entrants and, when jobs carry the work, asks for enough of those jobs.

Every step is keyed so that running it twice does nothing twice, and every email is written
"sending" with its Message-ID before the transport is called: a worker that dies leaves at
most its in-flight batch in doubt, and the next run sends those under the same Message-IDs.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import defaults
from campaigns.clock import Clock
from campaigns.engine import delivery, leases
from campaigns.engine.enrol import enrol
from campaigns.engine.leases import Lease, is_abort
from campaigns.engine.steps import (
    EXECUTORS,
    NEXT,
    PAUSE,
    Outcome,
    StepContext,
    backoff_message,
    email_parts,
    next_step,
    post_json,
    sign_webhook,
    webhook_payload,
)
from campaigns.exceptions import JourneyError
from campaigns.insight import sendtime, stats, tuning
from campaigns.journeys.expressions import Condition
from campaigns.journeys.model import (
    EmailStep,
    InviteStep,
    Journey,
    Step,
    SurveyStep,
    WebhookStep,
)
from campaigns.journeys.segments import SegmentSet
from campaigns.store.models import (
    Account,
    Channel,
    Contact,
    Enrollment,
    EnrollmentState,
    Event,
    EventKind,
    JourneyStatus,
    Message,
    MessageStatus,
    Suppression,
    SuppressionReason,
    Task,
)
from campaigns.store.models import (
    Journey as JourneyRow,
)
from campaigns.store.versions import ParsedJourneys
from campaigns.tracking.events import record_event

log = logging.getLogger("campaigns.engine")

MAX_STEPS_PER_RUN = 64
"""Steps one enrollment may run in one go (a journey without waits ends well before)."""

RESULTS_COMMIT_SECONDS = 0.5
"""While a batch is being delivered, its results so far are committed at least this often,
so that a crash in the middle of a delivery leaves about this much of its sends in doubt
(two commits a second per worker while a relay is slow; none when a batch is quick)."""

SUSPECT_PROBE_SECONDS = 1.0
"""How often a worker looks for rows whose run did not finish (a dead worker's), when the
last look found none: a statement per second instead of one per batch."""

DUE_COUNT_CAP = 100_000
"""A tick counts due enrollments up to this many to decide how many jobs to ask for."""


@dataclass(frozen=True)
class EngineSettings:
    send_batch: int = defaults.SEND_BATCH
    lease: timedelta = timedelta(seconds=defaults.LEASE_SECONDS)
    max_unfinished_runs: int = defaults.MAX_UNFINISHED_RUNS
    heartbeat: bool = True  # off where time is fake and sessions share one connection (simulate)
    frequency_cap: int = 3
    frequency_period: timedelta = timedelta(days=7)
    webhook_secret: str = ""
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


@dataclass
class TickResult:
    entered: dict[str, int] = field(default_factory=dict)
    claimed: int = 0
    batches: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    due: int = 0  # when jobs carry the work: the due enrollments counted for them


@dataclass
class AdvanceResult:
    advanced: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    finished: int = 0
    claimed: int = 0  # enrollments claimed (by :meth:`Engine.work`)
    claims: int = 0  # leases taken
    stopped: bool = (
        False  # a batch stopped before its end: the time budget ran out, or the lease did
    )
    more: bool = False  # :meth:`Engine.work` left due work for the next job

    def add(self, other: AdvanceResult) -> None:
        self.advanced += other.advanced
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.finished += other.finished
        self.claimed += other.claimed
        self.claims += other.claims
        self.stopped = self.stopped or other.stopped


class Engine:
    """Runs journeys. Every dependency is passed in: the database, a clock, the segments,
    a renderer and a transport for email, and (optionally) ``dispatch``, which asks for jobs
    to do the due work: given how many send batches are due, it enqueues up to that many
    ``campaigns.worker.jobs.advance`` jobs and returns how many it enqueued. Without it, a tick
    does the work itself."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        segments: Callable[[], SegmentSet],
        renderer: Any,
        transport: Any,
        settings: EngineSettings | None = None,
        dispatch: Callable[[int], int] | None = None,
        links: dict[str, str] | None = None,
        rate_limiter: Any | None = None,
        tuner: tuning.Tuner | None = None,
        send_times: sendtime.SendTimes | None = None,
        journeys: ParsedJourneys | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.segments = segments
        self.renderer = renderer
        self.transport = transport
        self.settings = settings or EngineSettings()
        self.dispatch = dispatch
        self.links = links or {}
        self.rate_limiter = rate_limiter
        self.tuner = tuner or tuning.Tuner()
        self.send_times = send_times or sendtime.SendTimes()
        self.journeys = journeys or ParsedJourneys()
        self.send_seconds: deque[float] = deque(maxlen=32)
        """How long the transport took for the last sends: what the next one is expected to take."""
        self.sends_this_run = 0
        self._next_probe = 0.0  # when to look again for a dead worker's rows

    # ------------------------------------------------------------------ journeys

    def journey(self, session: Session, version_id: int) -> Journey:
        """The parsed journey of a stored version (parsed once per process)."""
        return self.journeys.version(session, version_id)

    # ------------------------------------------------------------------ tick

    def tick(self) -> TickResult:
        """One scheduler pass: enrol, then do the due work, or ask for jobs to do it."""
        result = TickResult()
        now = self.clock.now()
        segset = self.segments()
        journeys: list[tuple[int, int, Journey]] = []
        with self.sessions() as session:
            rows = session.execute(
                select(JourneyRow.id, JourneyRow.current_version_id).where(
                    JourneyRow.status == JourneyStatus.ACTIVE,
                    JourneyRow.current_version_id.is_not(None),
                )
            ).all()
            for journey_id, version_id in rows:
                if version_id is None:
                    continue
                try:
                    journeys.append((journey_id, version_id, self.journey(session, version_id)))
                except (
                    JourneyError
                ) as exc:  # stored by a release with laxer rules: the others go on
                    log.error(
                        "journey %s: its current version %s no longer parses (%s); fix and deploy it again",
                        journey_id,
                        version_id,
                        exc,
                    )
        for journey_id, version_id, journey in journeys:
            with self.sessions() as session, session.begin():
                entered = enrol(session, journey, journey_id, version_id, segset, now)
            result.entered[journey.key] = entered.entered
        if self.dispatch is None:
            done = self.work()
            result.claimed, result.batches = done.claimed, done.claims
            result.sent, result.deferred, result.failed = done.sent, done.deferred, done.failed
        else:
            result.due, result.batches = self.dispatch_due()
        with self.sessions() as session, session.begin():  # what happened, into the report counts
            stats.rollup(session, self.clock.now())
        return result

    def dispatch_due(self) -> tuple[int, int]:
        """Count the due enrollments and ask ``dispatch`` for jobs to run them: (due, jobs asked for)."""
        assert self.dispatch is not None
        due = leases.count_due(self.sessions, self.clock.now(), DUE_COUNT_CAP)
        return due, self.dispatch(math.ceil(due / max(1, self.settings.send_batch))) if due else 0

    def claim(self) -> Lease | None:
        """Take a lease on the next send batch of due enrollments (see :func:`campaigns.engine.leases.claim`)."""
        probe = time.monotonic() >= self._next_probe
        lease = leases.claim(
            self.sessions,
            self.clock,
            self.settings.worker_id,
            limit=max(1, self.settings.send_batch),
            duration=self.settings.lease,
            suspects=probe,
        )
        if probe and not (lease is not None and lease.suspect):
            self._next_probe = time.monotonic() + SUSPECT_PROBE_SECONDS
        if (
            lease is None and not probe
        ):  # nothing free: look for a dead worker's rows before giving up
            lease = leases.claim(
                self.sessions,
                self.clock,
                self.settings.worker_id,
                limit=max(1, self.settings.send_batch),
                duration=self.settings.lease,
            )
        return lease

    def work(self, deadline: float | None = None) -> AdvanceResult:
        """Claim due enrollments and advance them, a send batch at a time, until none is due
        or ``deadline`` (a :func:`time.monotonic` time) comes; ``more`` says work was left.

        The lease is renewed by a heartbeat while each batch runs, and a batch stops before a
        send that would not end by the deadline, so a job never runs into its timeout."""
        total = AdvanceResult()
        self.sends_this_run = 0
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
        if (
            lease.suspect or len(lease.ids) == 1
        ):  # rows whose last run did not finish; or SEND_BATCH=1
            return self._advance_each(lease, lease.ids, deadline, counts)
        batch = None
        try:
            with self.sessions() as session, lease.fence(session):
                batch = SendBatch(self, session, self.clock.now(), lease, deadline)
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
                batch = SendBatch(self, session, self.clock.now(), lease, deadline)
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

    def run_steps(self, ctx: StepContext) -> bool:
        """Run an enrollment's steps until it waits, ends, or (in a send batch) pauses on a
        queued message; True when it paused and must run again after the delivery."""
        enrollment, journey = ctx.enrollment, ctx.journey
        for _ in range(MAX_STEPS_PER_RUN):
            reason = self._ended(ctx)
            if reason is not None:
                self._finish(ctx, *reason)
                return False
            if enrollment.current_step is None:
                self._finish(ctx, EnrollmentState.COMPLETED, "completed")
                return False
            try:
                step = journey.step(enrollment.current_step)
            except KeyError:
                # The version was edited under a running enrollment; it stays on its own
                # version, so this means a stored version lost a step: end it visibly.
                self._finish(
                    ctx, EnrollmentState.FAILED, f"step {enrollment.current_step} not in version"
                )
                return False
            outcome = EXECUTORS[step.type](ctx, step)
            if outcome.paused:
                return True
            if not self._apply(ctx, step, outcome):
                return False
        enrollment.next_run_at = ctx.now
        return False

    def _apply(self, ctx: StepContext, step: Step, outcome: Outcome) -> bool:
        """Record an outcome; True when the next step should run now."""
        enrollment = ctx.enrollment
        if outcome.finish is not None:
            self._finish(ctx, EnrollmentState.COMPLETED, outcome.finish)
            return False
        target = outcome.goto if outcome.goto is not None else next_step(ctx.journey, step.id)
        if outcome.wait_until is not None and outcome.wait_until > ctx.now:
            enrollment.current_step = target
            enrollment.next_run_at = outcome.wait_until
            enrollment.state = (
                EnrollmentState.WAITING if outcome.waiting else EnrollmentState.ACTIVE
            )
            return False  # committed with the release of the claim
        # Not committed yet: the next step's first write commits this move with it.
        enrollment.state = EnrollmentState.ACTIVE
        enrollment.current_step = target
        if target is None:
            self._finish(ctx, EnrollmentState.COMPLETED, "completed")
            return False
        return True

    def _ended(self, ctx: StepContext) -> tuple[EnrollmentState, str] | None:
        """The goal or an exit condition holds: how the enrollment ends."""
        journey = ctx.journey
        if journey.goal is not None:
            within = journey.goal.within
            if (
                within is None or ctx.now <= ctx.enrollment.entered_at + within
            ) and ctx.event_since_entry(journey.goal.event):
                return (EnrollmentState.GOAL, f"goal: {journey.goal.event}")
        for rule in journey.exit_when:
            if rule.event and ctx.event_since_entry(rule.event):
                return (EnrollmentState.EXITED, f"event: {rule.event}")
            if rule.condition and Condition(rule.condition)(ctx.values(), ctx.functions()):
                return (EnrollmentState.EXITED, f"condition: {rule.condition}"[:255])
            if rule.unsubscribed and not ctx.contact.subscribed:
                return (EnrollmentState.EXITED, "unsubscribed")
        return None

    def _finish(self, ctx: StepContext, state: EnrollmentState, reason: str) -> None:
        ctx.enrollment.state = state
        ctx.enrollment.exit_reason = reason[:255]
        ctx.enrollment.finished_at = ctx.now
        ctx.enrollment.next_run_at = None
        self._counts(ctx).finished += 1

    def _counts(self, ctx: StepContext) -> AdvanceResult:
        return ctx.batch.counts

    # ------------------------------------------------------------------ channels

    def choose_channel(self, ctx: StepContext, step: Step) -> str:
        """A ``best_of`` step's channel for this contact, drawn by the tuner for the
        contact's segment (see :mod:`campaigns.insight.tuning`) and kept in the enrollment's context
        so that a re-run takes the same channel."""
        chosen = dict(ctx.enrollment.context.get("arms", {}))
        if chosen.get(step.id) not in step.best_of:
            goal = step.goal or tuning.default_goal(step.best_of[0])
            chosen[step.id] = self.tuner.choose(
                ctx.session,
                journey_id=ctx.enrollment.journey_id,
                step_id=step.id,
                segment=ctx.enrollment.segment,
                arms=step.best_of,
                dimension="channel",
                goal=goal,
                now=ctx.now,
            )
            ctx.enrollment.context = {**ctx.enrollment.context, "arms": chosen}
        return str(chosen[step.id])

    def deliver_step_email(self, ctx: StepContext, step: Step, config: Any) -> Outcome:
        """Send the email of an email, survey or invite step, exactly once."""
        assert isinstance(config, EmailStep | SurveyStep | InviteStep)
        variant = None
        if isinstance(config, EmailStep) and config.variants:
            names = tuple(v.id for v in config.variants)
            variant = self._sent_variant(ctx, step.id)  # a re-run keeps the variant it drew
            if variant not in names:
                goal = step.goal or tuning.default_goal(step.type.value)
                variant = self.tuner.choose(
                    ctx.session,
                    journey_id=ctx.enrollment.journey_id,
                    step_id=step.id,
                    segment=ctx.enrollment.segment,
                    arms=names,
                    dimension="variant",
                    goal=goal,
                    now=ctx.now,
                )
        parts = email_parts(ctx, config, variant)  # the dashboard's preview renders the same parts
        return self._send(
            ctx,
            step_id=step.id,
            attempt_key="1",
            to=ctx.contact.email,
            to_name=ctx.contact.name,
            template=parts.template,
            locale=parts.locale,
            subject=parts.subject,
            preheader=parts.preheader,
            category=step.category
            or ("survey" if parts.survey else "event" if parts.invite else "marketing"),
            variant=variant,
            survey=parts.survey,
            invite=parts.invite,
            marketing=True,
        )

    def notify_owner(self, ctx: StepContext, step: Step, task: Task) -> Outcome:
        """Tell the task's owner by email (transactional: no cap, no window)."""
        if not task.owner_email or self.renderer is None:
            return NEXT
        store = getattr(self.renderer, "store", None)
        if store is not None and not store.exists("owner_task_notification"):
            return NEXT
        return self._send(
            ctx,
            step_id=step.id,
            attempt_key="owner",
            to=task.owner_email,
            to_name=None,
            template="owner_task_notification",
            locale=ctx.journey.locale,
            subject=f"[Task] {task.title}",
            preheader=None,
            category="transactional",
            variant=None,
            extra={
                "task": {
                    "title": task.title,
                    "kind": task.kind,
                    "notes": task.notes,
                    "due": task.due_at.date().isoformat() if task.due_at else "",
                }
            },
            marketing=False,
        )

    def _sent_variant(self, ctx: StepContext, step_id: str) -> str | None:
        """The variant of this step's message if it was written already."""
        return ctx.batch.variant(ctx.enrollment.id, step_id)

    def _message(self, ctx: StepContext, step_id: str, attempt_key: str, **fields: Any) -> Message:
        """The message row of this attempt, written if it is not there yet.

        The batch loaded its enrollments' messages at once; a new row is inserted with the
        batch's next flush. The unique (enrollment, step, attempt key) cannot be taken by
        another worker meanwhile: the lease fences every commit.
        """
        values = dict(
            enrollment_id=ctx.enrollment.id,
            contact_id=ctx.contact.id,
            journey_id=ctx.enrollment.journey_id,
            step_id=step_id,
            attempt_key=attempt_key,
            created_at=ctx.now,
            status=MessageStatus.PENDING,
            tries=0,
            links=[],
            **fields,
        )
        return ctx.batch.message(values)

    def _send(
        self,
        ctx: StepContext,
        *,
        step_id: str,
        attempt_key: str,
        to: str,
        to_name: str | None,
        template: str,
        locale: str,
        subject: str,
        preheader: str | None,
        category: str,
        variant: str | None,
        marketing: bool,
        survey: Any = None,
        invite: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> Outcome:
        """Send one message of a step exactly once: queued in the send batch, which marks it
        "sending" and hands it to the transport (the step runs again to see the result)."""
        now = ctx.now
        counts = self._counts(ctx)
        message = self._message(
            ctx,
            step_id,
            attempt_key,
            channel=Channel.EMAIL,
            category=category,
            variant=variant,
            template=template,
            locale=locale,
            to_address=to,
        )
        if message.status in (
            MessageStatus.SENT,
            MessageStatus.BOUNCED,
            MessageStatus.SUPPRESSED,
            MessageStatus.FAILED,
        ):
            return NEXT
        if (
            message.status == MessageStatus.DEFERRED
            and message.not_before
            and message.not_before > now
        ):
            return Outcome(goto=step_id, wait_until=message.not_before)
        # Delivery controls, engine-wide.
        skip = self._declined(ctx, to, category, marketing)
        if skip is not None:
            message.status, message.error = MessageStatus.SUPPRESSED, skip
            return NEXT
        if marketing:
            opening = delivery.next_opening(ctx.journey.sending_window, now, ctx.contact.time_zone)
            released = delivery.cap_release(
                self._recent_sends(ctx, now),
                self.settings.frequency_cap,
                self.settings.frequency_period,
                now,
            )
            when = max(opening, released)
            if (
                released > opening
            ):  # (so released > now) the cap ends: the window's next opening after it
                when = delivery.next_opening(
                    ctx.journey.sending_window, released, ctx.contact.time_zone
                )
            reason = "frequency cap" if released > now else "sending window"
            timing = self._timing(ctx, step_id, when) if attempt_key == "1" else None
            if timing is not None and timing.at > when:
                when, reason = (
                    timing.at,
                    f"send time: {timing.hour:02d}:00 {ctx.contact.time_zone or 'UTC'}",
                )
            if when > now:
                message.status, message.not_before = MessageStatus.DEFERRED, when
                message.error = reason
                counts.deferred += 1
                return Outcome(goto=step_id, wait_until=when)
        if self.rate_limiter is not None:
            later = self.rate_limiter.acquire(to, now)
            if later is not None:
                message.status, message.not_before, message.error = (
                    MessageStatus.DEFERRED,
                    later,
                    "domain rate limit",
                )
                counts.deferred += 1
                return Outcome(goto=step_id, wait_until=later)

        def render() -> Any:
            context = {
                **ctx.values(),
                **(extra or {}),
                "links": {name: ctx.render(url) for name, url in self.links.items()},
            }
            return self.renderer.render(
                message=message.id, message_id=message.message_id, to=to, to_name=to_name, template=template, locale=locale,
                subject=ctx.render(subject), preheader=ctx.render(preheader) if preheader else None, context=context,
                survey=survey, invite=invite, now=now,
            )  # fmt: skip

        ctx.batch.queue(Outgoing(message, render, marketing, ctx.contact.id))
        return PAUSE

    def _timing(self, ctx: StepContext, step_id: str, base: datetime) -> sendtime.Timing | None:
        """For a ``send_time: best_hour`` step, when its message should go, given that it may
        go at ``base`` (see :mod:`campaigns.insight.sendtime`). Decided once per enrollment and step
        and kept, with why, in the enrollment's context; a re-run of the step (once the wait
        is over) finds the decision there and does not wait again."""
        step = ctx.journey.step(step_id)
        if step.send_time != sendtime.BEST_HOUR:
            return None  # the common case costs one attribute check
        decided: dict[str, Any] = dict(ctx.enrollment.context.get("send_time", {}))
        if step_id in decided:
            return None
        segment = ctx.enrollment.segment or ""
        timing = self.send_times.choose(
            ctx.session, journey_id=ctx.enrollment.journey_id, step_id=step_id, segment=segment, goal=step.goal or tuning.default_goal(step.type.value),
            base=base, window=ctx.journey.sending_window, time_zone=ctx.contact.time_zone, now=ctx.now,
        )  # fmt: skip
        decided[step_id] = timing.record(segment, ctx.contact.time_zone)
        ctx.enrollment.context = {**ctx.enrollment.context, "send_time": decided}
        return timing

    def deliver(
        self, session: Session, outgoing: Outgoing, now: datetime, counts: AdvanceResult
    ) -> Outcome:
        """Hand a prepared ("sending") message to the transport and record what happened;
        the caller commits. The outcome is what the step does next."""
        from campaigns.channels.email import PermanentFailure, TemporaryFailure

        message = outgoing.message
        started = time.monotonic()
        try:
            self.transport.send(outgoing.rendered)
        except PermanentFailure as exc:
            message.status = MessageStatus.BOUNCED
            message.error = str(exc)[:2000]
            if exc.bad_address:  # a 5xx about the content or the sender says nothing of the address
                self._suppress(
                    session,
                    outgoing.rendered.to,
                    SuppressionReason.HARD_BOUNCE,
                    f"bounce {exc.code or ''} {exc.enhanced or ''}".strip(),
                )
            counts.failed += 1
            return NEXT
        except TemporaryFailure as exc:
            wait = delivery.backoff(message.tries)
            backoff_message(session, message, str(exc), now, wait)
            if wait is None:
                counts.failed += 1
                return NEXT
            counts.deferred += 1
            return Outcome(goto=message.step_id, wait_until=now + wait)
        finally:
            self.send_seconds.append(time.monotonic() - started)
            self.sends_this_run += 1
        message.status = MessageStatus.SENT
        message.sent_at = now
        message.error = None
        counts.sent += 1
        return NEXT

    def deliver_webhook(self, ctx: StepContext, step: Step, config: WebhookStep) -> Outcome:
        now = ctx.now
        message = self._message(
            ctx, step.id, "1", channel=Channel.WEBHOOK, to_address=config.url[:320]
        )
        if message.status in (MessageStatus.SENT, MessageStatus.FAILED):
            return NEXT
        if (
            message.status == MessageStatus.DEFERRED
            and message.not_before
            and message.not_before > now
        ):
            return Outcome(goto=step.id, wait_until=message.not_before)
        if not ctx.batch.may_send():
            return PAUSE  # the batch stops here (time budget or lease): the next run posts it
        body = webhook_payload(ctx, step, config)
        message.status, message.tries = MessageStatus.SENDING, message.tries + 1
        ctx.session.commit()  # fenced by the lease, as every commit of the batch
        status = post_json(
            ctx.render(config.url),
            body,
            sign_webhook(self.settings.webhook_secret, body, int(time.time())),
        )
        if 200 <= status < 300:
            message.status, message.sent_at, message.error = MessageStatus.SENT, now, None
        elif status and 400 <= status < 500 and status not in (408, 429):
            message.status, message.error = MessageStatus.FAILED, f"HTTP {status}"
        else:
            wait = delivery.backoff(message.tries)
            backoff_message(
                ctx.session, message, f"HTTP {status}" if status else "unreachable", now, wait
            )
            ctx.session.commit()
            return NEXT if wait is None else Outcome(goto=step.id, wait_until=now + wait)
        ctx.session.commit()
        return NEXT

    # ------------------------------------------------------------------ controls

    def _declined(
        self, ctx: StepContext, address: str, category: str, marketing: bool
    ) -> str | None:
        """Why this email must not go (suppressed address, unsubscribed, the contact's
        preferences), or None. Preferences and unsubscribing bind marketing email only."""
        if self._suppressed(ctx, address):
            return "address suppressed"
        contact = ctx.contact
        if not marketing:
            return None
        if not contact.subscribed:
            return "unsubscribed"
        if category in (contact.opt_out or []):
            return f"opted out of {category}"
        if contact.paused_until is not None and contact.paused_until > ctx.now:
            return f"paused until {contact.paused_until.date().isoformat()}"
        return None

    def _suppressed(self, ctx: StepContext, address: str) -> bool:
        return bool(ctx.batch.suppressed(address))

    def _suppress(
        self, session: Session, address: str, reason: SuppressionReason, source: str
    ) -> None:
        if not is_suppressed(session, address):
            session.add(
                Suppression(
                    email=address.lower(), reason=reason, source=source, created_at=self.clock.now()
                )
            )

    def _recent_sends(self, ctx: StepContext, now: datetime) -> list[datetime]:
        if self.settings.frequency_cap <= 0:
            return []
        return list(ctx.batch.recent_sends(ctx.contact.id))

    def recent_sends_query(self, contact_ids: Sequence[int], now: datetime) -> Any:
        """(contact id, sent at) of the marketing email sent to these contacts within the
        frequency cap's period."""
        return select(Message.contact_id, Message.sent_at).where(
            Message.contact_id.in_(contact_ids),
            Message.channel == Channel.EMAIL,
            Message.status == MessageStatus.SENT,
            Message.category.is_distinct_from("transactional"),
            Message.sent_at > now - self.settings.frequency_period,
        )

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
        """Store an event and wake the enrollments that wait for one (see :mod:`campaigns.tracking.events`)."""
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


@dataclass
class Outgoing:
    """One email on its way: its row, how to render it, and (once prepared) the MIME."""

    message: Message
    render: Callable[[], Any]
    marketing: bool
    contact_id: int
    rendered: Any = None

    def prepare(self) -> None:
        """Render, and mark the row "sending" with its Message-ID (the caller commits)."""
        rendered = self.render()
        message = self.message
        message.message_id = rendered.message_id
        message.subject = rendered.subject
        message.links = list(rendered.links)
        message.status = MessageStatus.SENDING
        message.tries += 1
        self.rendered = rendered

    def unprepare(self) -> None:
        """Never handed to the transport (the batch stopped first): pending again, keeping
        its Message-ID for the next run."""
        self.message.status = MessageStatus.PENDING
        self.message.tries -= 1


class SendBatch:
    """Enrollments advanced together in one session, under one lease, with their emails sent
    in rounds.

    Loading takes a few queries for the whole batch (enrollments, contacts, accounts, their
    messages, suppressions, recent sends). Each enrollment runs until it waits, ends, or
    queues an email; then the round's emails are rendered and marked "sending" in one
    commit, handed to the transport one after another over its connection, and their
    results stored (at least every :data:`RESULTS_COMMIT_SECONDS`, and at the end).
    Enrollments that queued an email run again from that step, which now sees its message's
    result, until none queues another.

    Every commit of the session is fenced by the lease (:meth:`Lease.fence`). Before each
    send the batch checks that its lease is still good and that the send can end before the
    job's ``deadline``; if not, it stops: what was not handed to the transport goes back to
    pending, and the enrollments are released for the next job.
    """

    def __init__(
        self,
        engine: Engine,
        session: Session,
        now: datetime,
        lease: Lease,
        deadline: float | None = None,
    ) -> None:
        self.engine, self.session, self.now = engine, session, now
        self.lease, self.deadline = lease, deadline
        self.counts = AdvanceResult()
        self.outbox: list[Outgoing] = []
        self.unrecorded: list[int] = []
        """Messages the transport accepted whose "sent" is not committed yet."""
        self.stopped: str | None = None
        self._messages: dict[tuple[int, str, str], Message] = {}
        self._known: set[str] = set()
        self._suppressed: set[str] = set()
        self._recent: dict[int, list[datetime]] = {}

    def run(self, ids: Sequence[int]) -> None:
        session, now, engine = self.session, self.now, self.engine
        enrollments = session.scalars(select(Enrollment).where(Enrollment.id.in_(ids))).all()
        due = [
            e
            for e in enrollments
            if e.state in leases.RUNNABLE and e.next_run_at is not None and e.next_run_at <= now
        ]
        contacts = (
            {
                c.id: c
                for c in session.scalars(
                    select(Contact).where(Contact.id.in_({e.contact_id for e in due}))
                )
            }
            if due
            else {}
        )
        account_ids = {c.account_id for c in contacts.values() if c.account_id}
        accounts = (
            {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(account_ids)))}
            if account_ids
            else {}
        )
        self._load(due, contacts)
        todo = []
        for enrollment in due:
            contact = contacts[enrollment.contact_id]
            account = accounts.get(contact.account_id) if contact.account_id else None
            todo.append(
                StepContext(
                    engine,
                    session,
                    enrollment,
                    contact,
                    account,
                    engine.journey(session, enrollment.journey_version_id),
                    now,
                    batch=self,
                )
            )
        self.counts.advanced += len(todo)
        for _ in range(MAX_STEPS_PER_RUN):
            todo = [ctx for ctx in todo if engine.run_steps(ctx)]
            self.flush()
            if not todo or self.stopped:
                break
        self.counts.stopped = self.stopped is not None
        self.lease.release(ids)
        self.commit()

    def _load(self, due: Sequence[Enrollment], contacts: dict[int, Contact]) -> None:
        if not due:
            return
        session = self.session
        for message in session.scalars(
            select(Message).where(Message.enrollment_id.in_([e.id for e in due]))
        ):
            if message.enrollment_id is not None:
                self._messages[(message.enrollment_id, message.step_id, message.attempt_key)] = (
                    message
                )
        self._known = {c.email.lower() for c in contacts.values()}
        self._suppressed = set(
            session.scalars(select(Suppression.email).where(Suppression.email.in_(self._known)))
        )
        if self.engine.settings.frequency_cap > 0:
            for contact_id, sent_at in session.execute(
                self.engine.recent_sends_query(list(contacts), self.now)
            ):
                if sent_at is not None:
                    self._recent.setdefault(contact_id, []).append(sent_at)

    # -- what the engine asks of the batch while steps run

    def message(self, values: dict[str, Any]) -> Message:
        key = (values["enrollment_id"], values["step_id"], values["attempt_key"])
        message = self._messages.get(key)
        if message is None:
            message = Message(**values)
            self.session.add(message)  # inserted with the round's flush, many rows at once
            self._messages[key] = message
        return message

    def variant(self, enrollment_id: int, step_id: str) -> str | None:
        message = self._messages.get((enrollment_id, step_id, "1"))
        return message.variant if message is not None else None

    def suppressed(self, address: str) -> bool:
        address = address.lower()
        if address not in self._known:
            self._known.add(address)
            if is_suppressed(self.session, address):
                self._suppressed.add(address)
        return address in self._suppressed

    def recent_sends(self, contact_id: int) -> list[datetime]:
        return self._recent.get(contact_id, [])

    def queue(self, outgoing: Outgoing) -> None:
        self.outbox.append(outgoing)
        if outgoing.marketing:  # counts against the cap for the rest of the batch
            self._recent.setdefault(outgoing.contact_id, []).append(self.now)

    def may_send(self) -> bool:
        """Whether the next send may start: the lease still holds, and the send is expected
        to end before the deadline (twice the slowest of the recent sends). Once False, the
        batch stops."""
        if self.stopped is None:
            if not self.lease.valid():
                self.stopped = "lease"
            elif (
                self.deadline is not None
                and self.engine.sends_this_run
                and time.monotonic() + 2 * max(self.engine.send_seconds, default=0.0)
                >= self.deadline
            ):
                self.stopped = (
                    "time budget"  # (a run's first send always goes: every job gets something done)
                )
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
        # Written before the transport is called: a crash from here on leaves these
        # messages "sending" with their Message-IDs, and a re-run resends them under them.
        self.commit()
        committed = time.monotonic()
        with session.no_autoflush:  # no write transaction stays open while the relay is slow
            for index, outgoing in enumerate(outbox):
                if not self.may_send():
                    for rest in outbox[index:]:
                        rest.unprepare()
                    break
                self.engine.deliver(session, outgoing, self.now, self.counts)
                if outgoing.message.status == MessageStatus.SENT:
                    self.unrecorded.append(outgoing.message.id)
                elif outgoing.message.status == MessageStatus.BOUNCED:
                    self._known.discard(
                        str(outgoing.rendered.to).lower()
                    )  # look again: it may be suppressed now
                if time.monotonic() - committed >= RESULTS_COMMIT_SECONDS:
                    self.commit()
                    committed = time.monotonic()
        # Recorded now, before the next round runs: a step that raises there makes the batch
        # run again one enrollment at a time, and must find these sends done.
        self.commit()

    def commit(self) -> None:
        """Commit (fenced by the lease): what the transport accepted is recorded."""
        self.session.commit()
        self.unrecorded.clear()


def is_suppressed(session: Session, address: str) -> bool:
    return (
        session.scalar(select(Suppression.id).where(Suppression.email == address.lower()).limit(1))
        is not None
    )
