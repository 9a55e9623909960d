"""Where a journey's enrollments are now, step by step: the live counts of its flowchart,
the list of who is at a step, and the messages held back with why.

Every count is one set-based ``GROUP BY`` over the journey's rows (enrollments by current
step and state, messages by step and status), never a loop over people, so a journey of a
million enrollments costs a few index scans. The counts are live: read from the rows
themselves, not from the pre-aggregated stats that reports use (those lag by one flush).

- **waiting** at a step: treated enrollments (not held out) whose current step it is, active
  (due to run it) or waiting (in a ``wait_until``);
- **sent**: the step's messages the channel accepted;
- **held**: the step's messages deferred now, by reason (:data:`HOLD_REASONS`), read from
  the reason the delivery policy stores on each (:mod:`campaigns.engine.controls`);
- **converted**: enrollments that reached the journey's goal after passing the step. For a
  step that sends (email, survey, invite, task, webhook), those with a finished message of
  it; for one that sends nothing (a wait, a branch), those whose goal came at a step after
  it on the flow, or after the last step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import Session

from campaigns.journeys.model import BranchStep, ExitStep, StepType, WaitUntilDateStep
from campaigns.journeys.model import Journey as Definition
from campaigns.store.enums import EnrollmentState, MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, Journey, JourneyVersion, Message

NOW = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)
"""The states of an enrollment that is still somewhere in the journey."""

SENDS = frozenset({StepType.EMAIL, StepType.SURVEY, StepType.INVITE, StepType.TASK})
"""Step types whose passage is written as a message row (webhook steps too, see below)."""

HOLD_REASONS: tuple[tuple[str, str], ...] = (
    ("sending window", "sending window"),
    ("frequency cap", "frequency cap"),
    ("send time", "send time:%"),
    ("rate limit", "domain rate limit"),
)
"""(reason shown, pattern of the stored reason) of a deferred message, in the order shown;
the delivery policy writes the reason into ``messages.error`` (:class:`campaigns.engine.
controls.Hold`). A deferred message with any other text is a temporary failure waiting to
be retried: :data:`RETRY`."""

RETRY = "retry after a failure"

FINISHED = (
    MessageStatus.SENT,
    MessageStatus.BOUNCED,
    MessageStatus.SUPPRESSED,
    MessageStatus.FAILED,
)
"""A message in one of these states means its step was run and passed."""


@dataclass
class StepCounts:
    """One step's (or a journey's) live counts; ``held`` by reason in :attr:`reasons`."""

    waiting: int = 0
    sent: int = 0
    converted: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def held(self) -> int:
        return sum(self.reasons.values())

    def held_by_reason(self) -> list[tuple[str, int]]:
        """(reason, count) of what is held, in :data:`HOLD_REASONS`' order, the rest last."""
        order = [name for name, _ in HOLD_REASONS] + [RETRY]
        return sorted(
            ((r, n) for r, n in self.reasons.items() if n),
            key=lambda item: (order.index(item[0]) if item[0] in order else len(order), item[0]),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "sent": self.sent,
            "held": self.held,
            "held_by_reason": dict(self.held_by_reason()),
            "converted": self.converted,
        }


@dataclass
class Flow:
    """A journey's live counts: per step (by id, in the journey's order) and in all."""

    steps: dict[str, StepCounts]
    totals: StepCounts
    enrolled: int = 0  # treated enrollments ever (the held-out ones are apart)
    held_out: int = 0
    finished: dict[str, int] = field(default_factory=dict)  # by final state

    def as_dict(self) -> dict[str, Any]:
        return {
            "enrolled": self.enrolled,
            "held_out": self.held_out,
            "finished": dict(sorted(self.finished.items())),
            "totals": self.totals.as_dict(),
            "steps": [{"step": step, **c.as_dict()} for step, c in self.steps.items()],
        }


def reason_of() -> ColumnElement[str]:
    """The stored reason of a deferred message as one of :data:`HOLD_REASONS` (SQL)."""
    return case(
        *((Message.error.like(pattern), literal(name)) for name, pattern in HOLD_REASONS),
        else_=literal(RETRY),
    )


def _after(journey: Definition) -> dict[str, set[str]]:
    """Each step's strict descendants on the flow (what the flowchart's arrows reach)."""
    steps = journey.steps
    index = {s.id: i for i, s in enumerate(steps)}
    nexts: dict[str, list[str]] = {}
    for i, step in enumerate(steps):
        after = [steps[i + 1].id] if i + 1 < len(steps) else []
        config = step.config
        if isinstance(config, ExitStep):
            nexts[step.id] = []
        elif isinstance(config, BranchStep):
            nexts[step.id] = [a.goto for a in config.arms] + (
                [config.otherwise] if config.otherwise else after
            )
        elif isinstance(config, WaitUntilDateStep) and config.if_past == "skip":
            nexts[step.id] = after + ([steps[i + 2].id] if i + 2 < len(steps) else [])
        else:
            nexts[step.id] = after
    reach: dict[str, set[str]] = {}
    for step in reversed(steps):  # gotos only go forward: descendants are known already
        found: set[str] = set()
        for n in nexts[step.id]:
            if n in index:
                found |= {n} | reach.get(n, set())
        reach[step.id] = found
    return reach


def sends(journey: Definition, step_id: str) -> bool:
    """Whether passing the step leaves a message row (see :data:`SENDS`)."""
    step = journey.step(step_id)
    return step.type in SENDS or step.type == StepType.WEBHOOK or bool(step.best_of)


def flow(session: Session, journey_id: int, journey: Definition) -> Flow:
    """The live counts of a journey (its row's id, its current definition) per step."""
    order = [step.id for step in journey.steps]
    steps = {step_id: StepCounts() for step_id in order}
    totals = StepCounts()
    result = Flow(steps, totals)

    def at(step_id: str | None) -> StepCounts:
        if step_id is None:
            return StepCounts()  # (a row of a step no longer in the definition goes uncounted)
        return steps.get(step_id) or StepCounts()

    goal_at: dict[str | None, int] = {}
    for state, step_id, held_out, n in session.execute(  # from ix_enrollments_flow alone
        select(Enrollment.state, Enrollment.current_step, Enrollment.holdout, func.count())
        .where(Enrollment.journey_id == journey_id)
        .group_by(Enrollment.state, Enrollment.current_step, Enrollment.holdout)
    ):
        n = int(n)
        if held_out:
            result.held_out += n
            continue
        result.enrolled += n
        if state in NOW and step_id is not None:
            at(step_id).waiting += n
            totals.waiting += n
        elif state not in NOW:
            result.finished[state] = result.finished.get(state, 0) + n
        if state == EnrollmentState.GOAL:
            goal_at[step_id] = goal_at.get(step_id, 0) + n
    for step_id, n in session.execute(  # from ix_messages_flow alone
        select(Message.step_id, func.count())
        .where(Message.journey_id == journey_id, Message.status == MessageStatus.SENT)
        .group_by(Message.step_id)
    ):
        at(step_id).sent += int(n)
        totals.sent += int(n)
    deferred = (
        select(Message.step_id.label("step_id"), reason_of().label("reason"))
        .where(Message.journey_id == journey_id, Message.status == MessageStatus.DEFERRED)
        .subquery("deferred")
    )
    for step_id, reason, n in session.execute(
        select(deferred.c.step_id, deferred.c.reason, func.count()).group_by(
            deferred.c.step_id, deferred.c.reason
        )
    ):
        for counts in (at(step_id), totals):
            counts.reasons[reason] = counts.reasons.get(reason, 0) + int(n)
    passed: dict[str, int] = {
        step_id: int(n)
        for step_id, n in session.execute(
            # from the goal's enrollments (ix_enrollments_flow) to their messages
            select(Message.step_id, func.count(func.distinct(Message.enrollment_id)))
            .select_from(Enrollment)
            .join(Message, Message.enrollment_id == Enrollment.id)
            .where(
                Enrollment.journey_id == journey_id,
                Enrollment.state == EnrollmentState.GOAL,
                Enrollment.holdout.is_(False),
                Message.status.in_(FINISHED),
            )
            .group_by(Message.step_id)
        )
    }
    reach = _after(journey)
    for step_id in order:
        if sends(journey, step_id):
            steps[step_id].converted = passed.get(step_id, 0)
        else:
            later = reach[step_id]
            steps[step_id].converted = sum(
                n for where, n in goal_at.items() if where is None or where in later
            )
    totals.converted = sum(goal_at.values())
    return result


@dataclass(frozen=True)
class Totals:
    """A journey's headline counts for the journeys list."""

    enrolled: int = 0
    in_progress: int = 0
    held: int = 0
    sent: int = 0


def totals(session: Session) -> dict[int, Totals]:
    """Every journey's treated enrollments (ever, and still in progress) and its messages
    sent and held now, by journey id: two ``GROUP BY journey_id``."""
    people: dict[int, tuple[int, int]] = {}
    for journey_id, n, now in session.execute(
        select(
            Enrollment.journey_id,
            func.count(),
            func.count(case((Enrollment.state.in_(NOW), 1))),
        )
        .where(Enrollment.holdout.is_(False))
        .group_by(Enrollment.journey_id)
    ):
        people[int(journey_id)] = (int(n), int(now))
    mail: dict[int, tuple[int, int]] = {}
    for mail_journey, sent, held in session.execute(
        select(
            Message.journey_id,
            func.count(case((Message.status == MessageStatus.SENT, 1))),
            func.count(case((Message.status == MessageStatus.DEFERRED, 1))),
        )
        .where(
            Message.journey_id.is_not(None),
            Message.status.in_([MessageStatus.SENT, MessageStatus.DEFERRED]),
        )
        .group_by(Message.journey_id)
    ):
        mail[int(mail_journey or 0)] = (int(sent), int(held))
    return {
        j: Totals(*people.get(j, (0, 0)), *reversed(mail.get(j, (0, 0))))
        for j in set(people) | set(mail)
    }


# ---------------------------------------------------------------------------- who is at a step


@dataclass(frozen=True)
class AtStep:
    """One enrollment at a step: whom (a contact, or an account), its state, since when it
    has been at the step (the step's latest message, else when it entered) and when it runs
    next."""

    enrollment_id: int
    step: str | None
    email: str | None
    name: str | None
    account: str | None
    state: str
    since: datetime
    next_run_at: datetime | None
    entered_at: datetime


def _at_step_query(journey_id: int, step_id: str | None, states: Sequence[str]) -> Any:
    latest = (
        select(func.max(Message.created_at))
        .where(Message.enrollment_id == Enrollment.id, Message.step_id == Enrollment.current_step)
        .correlate(Enrollment)
        .scalar_subquery()
    )
    query = (
        select(
            Enrollment.id,
            Enrollment.current_step,
            Contact.email,
            Contact.name,
            Account.name,
            Enrollment.state,
            func.coalesce(latest, Enrollment.entered_at),
            Enrollment.next_run_at,
            Enrollment.entered_at,
        )
        .outerjoin(Contact, Contact.id == Enrollment.contact_id)
        .outerjoin(
            Account,
            Account.id == func.coalesce(Enrollment.account_id, Contact.account_id),
        )
        .where(
            Enrollment.journey_id == journey_id,
            Enrollment.state.in_(list(states)),
            Enrollment.holdout.is_(False),
        )
        .order_by(Enrollment.id)
    )
    return query if step_id is None else query.where(Enrollment.current_step == step_id)


def count_at_step(session: Session, journey_id: int, step_id: str, states: Sequence[str]) -> int:
    found = session.scalar(
        select(func.count()).where(
            Enrollment.journey_id == journey_id,
            Enrollment.current_step == step_id,
            Enrollment.state.in_(list(states)),
            Enrollment.holdout.is_(False),
        )
    )
    return int(found or 0)


def at_step(
    session: Session,
    journey_id: int,
    step_id: str,
    states: Sequence[str] = NOW,
    *,
    offset: int = 0,
    limit: int = 50,
) -> list[AtStep]:
    """One page of the enrollments whose current step is ``step_id``, in ``states``, oldest
    enrollment first."""
    query = _at_step_query(journey_id, step_id, states).offset(offset).limit(limit)
    return [AtStep(*row) for row in session.execute(query)]


def each_at_step(
    session: Session, journey_id: int, step_id: str | None, states: Sequence[str]
) -> Iterator[AtStep]:
    """Every enrollment at ``step_id`` (every step when None) in ``states``, read in chunks
    (for an export of any size)."""
    query = _at_step_query(journey_id, step_id, states)
    for row in session.execute(query.execution_options(yield_per=1000)):
        yield AtStep(*row)


def current(session: Session, key: str) -> tuple[int, Definition] | None:
    """The journey of ``key``: its row's id and its current version parsed, or None when
    there is no such journey, no version, or a stored version that no longer parses."""
    from campaigns.exceptions import JourneyError
    from campaigns.journeys.parse import parse_journey

    found = session.execute(
        select(Journey.id, JourneyVersion.source_text, JourneyVersion.source_path)
        .join(JourneyVersion, JourneyVersion.id == Journey.current_version_id)
        .where(Journey.key == key)
    ).first()
    if found is None:
        return None
    try:
        return int(found[0]), parse_journey(found[1], found[2])
    except JourneyError:
        return None


CSV_HEADER = (
    "enrollment_id",
    "step",
    "email",
    "name",
    "account",
    "state",
    "since",
    "next_run_at",
    "entered_at",
)
"""The columns of an enrollments export (dashboard and ``campaigns enrollments --csv``)."""


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    cell = str(value)
    # A spreadsheet runs a cell that starts with = + - @ as a formula: keep it text.
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def csv_row(row: AtStep) -> list[str]:
    """One enrollment as the export's cells, in :data:`CSV_HEADER`'s order."""
    return [
        _cell(v)
        for v in (
            row.enrollment_id,
            row.step,
            row.email,
            row.name,
            row.account,
            row.state,
            row.since,
            row.next_run_at,
            row.entered_at,
        )
    ]
