"""Response-rate reports from the pre-aggregated ``stats`` (:mod:`campaigns.insight.stats`).

A report is a few ``SUM ... GROUP BY`` over small rows, whatever the number of raw events.
Rates count human signals only and come with their n and a 95% Wilson interval
(:mod:`campaigns.insight.rates`); machine and unknown counts are shown beside them. The CLI
(``campaigns report``), the JSON API and the dashboard all build on :func:`journey_report`,
so they show the same numbers.

The goal rate of the treated (``goal`` of ``enrolled``) is compared with the journey's holdout
(``holdout_goal`` of ``holdout``) and with the global control group (``control_goal`` of
``control``): both held-out groups are enrolled, sent nothing, and watched for the goal over
the same window as the treated (:mod:`campaigns.engine.holdout`). :func:`global_lift` pools
every journey that has a goal: the lift of all journeys together over the global control.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from campaigns.insight.flow import reason_of
from campaigns.insight.flow import totals as live_totals
from campaigns.insight.rates import Lift, Rate, lift
from campaigns.store.enums import Channel, Classification, EventKind, MessageStatus
from campaigns.store.models import Event, Journey, JourneyVersion, Message, Stat

BREAKDOWNS = ("step", "segment", "tier", "channel", "variant", "day", "persona")
"""What a report's rows may be grouped by (``step`` is the funnel). ``persona`` counts the
journey's customer emails by the persona each went to (``messages.persona``)."""

NO_PERSONA = "(none)"
"""The row of the emails to contacts whom no persona's rule matched."""

RATES: tuple[tuple[str, str, str], ...] = (
    ("open_rate", "opened", "sent"),
    ("click_rate", "clicked", "sent"),
    ("click_to_open", "clicked", "opened"),
    ("answer_rate", "answered", "sent"),
    ("rsvp_yes_rate", "rsvp_yes", "sent"),
    ("unsubscribe_rate", "unsubscribed", "sent"),
    ("bounce_rate", "bounced", "attempted"),
    ("task_done_rate", "task_done", "task_created"),
    ("in_app_click_rate", "in_app_clicked", "in_app_created"),
)
"""(rate, numerator metric, denominator metric); ``attempted`` is sent + bounced."""

COLUMNS = (
    "sent",
    "bounced",
    "opened",
    "clicked",
    "answered",
    "rsvp_yes",
    "rsvp_no",
    "unsubscribed",
    "task_created",
    "task_done",
    "opened_machine",
    "clicked_machine",
)


@dataclass
class Row:
    """The counts of one group (a step, a segment...) and its rates."""

    key: str
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, metric: str) -> int:
        if metric == "attempted":
            return (
                self.counts.get("sent", 0)
                + self.counts.get("bounced", 0)
                - self.counts.get("bounced_after_send", 0)
            )
        return self.counts.get(metric, 0)

    def rate(self, name: str) -> Rate:
        numerator, denominator = next((n, d) for rate, n, d in RATES if rate == name)
        hits, n = self.count(numerator), self.count(denominator)
        return Rate(min(hits, n), n)

    def as_dict(self) -> dict[str, Any]:
        rates = {name: rate_dict(self.rate(name)) for name, _, _ in RATES if self.rate(name).n}
        counts = {m: n for m, n in sorted(self.counts.items()) if "@" not in m}
        result: dict[str, Any] = {"key": self.key, "counts": counts, "rates": rates}
        hours = {m: n for m, n in sorted(self.counts.items()) if "@" in m}
        if hours:  # send-time steps: sent@10, clicked@10... by the recipient-local hour of sending
            result["by_hour"] = hours
        return result


def rate_dict(rate: Rate) -> dict[str, Any]:
    """A rate as JSON: value, n and the 95% Wilson interval, rounded to 4 places."""
    low, high = rate.interval or (0.0, 0.0)
    return {
        "value": round(rate.value or 0.0, 4),
        "hits": rate.hits,
        "n": rate.n,
        "low": round(low, 4),
        "high": round(high, 4),
    }


def lift_dict(result: Lift) -> dict[str, Any]:
    """A lift as JSON: the difference in points (0.02 is two) with its 95% interval, and the
    relative lift; rounded to 4 places."""
    low, high = result.interval or (0.0, 0.0)
    relative = round(result.relative, 4) if result.relative is not None else None
    return {
        "difference": round(result.difference or 0.0, 4),
        "low": round(low, 4),
        "high": round(high, 4),
        "relative": relative,
    }


def _held(totals: Row, group: str) -> Rate | None:
    """The goal rate of a held-out group (``holdout`` or ``control``), None if it is empty."""
    n = totals.count(group)
    return Rate(min(totals.count(f"{group}_goal"), n), n) if n else None


@dataclass
class JourneyReport:
    journey: str
    name: str
    since: date | None
    until: date | None
    by: str
    totals: Row
    rows: list[Row]
    goal: Rate
    holdout_goal: Rate | None
    goal_lift: Lift | None
    unit: str = "contact"  # what one enrollment is: "contact", or "account" (enrol: account)
    recipients: int = 0  # the distinct contacts its customer email reached (sent)
    control_goal: Rate | None = None  # the global control group's, in this journey
    control_lift: Lift | None = None
    has_goal: bool = True  # whether the current version names a goal
    held: dict[str, dict[str, int]] = field(default_factory=dict)
    """Messages held back now (deferred), per step and reason (:func:`held_now`): live, not
    limited to the report's days."""

    def held_total(self) -> dict[str, int]:
        """The messages held now by reason, over every step."""
        total: dict[str, int] = {}
        for reasons in self.held.values():
            for reason, n in reasons.items():
                total[reason] = total.get(reason, 0) + n
        return total

    @property
    def entrants(self) -> str:
        """What ``enrolled`` and the goal count: ``accounts`` or ``contacts``."""
        return f"{self.unit}s"

    def as_dict(self) -> dict[str, Any]:
        goal: dict[str, Any] = {"defined": self.has_goal, "rate": rate_dict(self.goal)}
        if self.holdout_goal is not None:
            goal["holdout"] = rate_dict(self.holdout_goal)
        if self.goal_lift is not None and self.goal_lift.difference is not None:
            goal["lift"] = lift_dict(self.goal_lift)
        if self.control_goal is not None:
            goal["control"] = rate_dict(self.control_goal)
        if self.control_lift is not None and self.control_lift.difference is not None:
            goal["control_lift"] = lift_dict(self.control_lift)
        return {
            "journey": self.journey,
            "name": self.name,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "by": self.by,
            "unit": self.unit,
            "counts": {
                "entered": self.totals.count("enrolled") + self.totals.count("holdout"),
                "entered_unit": self.entrants,
                "recipients": self.recipients,
            },
            "totals": self.totals.as_dict(),
            "rows": [row.as_dict() for row in self.rows],
            "goal": goal,
            "held": {
                "total": sum(self.held_total().values()),
                "by_reason": self.held_total(),
                "steps": [
                    {"step": step, "held": sum(reasons.values()), "by_reason": reasons}
                    for step, reasons in self.held.items()
                ],
            },
        }


def journeys(session: Session) -> list[tuple[int, str, str]]:
    """(id, key, name) of every journey, by key."""
    return [(j.id, j.key, j.name) for j in session.scalars(select(Journey).order_by(Journey.key))]


def journey_report(
    session: Session,
    journey: str | int,
    *,
    by: str = "step",
    since: date | None = None,
    until: date | None = None,
) -> JourneyReport:
    """The report of one journey (its key or id), grouped ``by`` one of :data:`BREAKDOWNS`."""
    if by not in BREAKDOWNS:
        raise ValueError(f"cannot group by {by!r}; one of {', '.join(BREAKDOWNS)}")
    row = session.scalar(
        select(Journey).where(Journey.id == journey)
        if isinstance(journey, int)
        else select(Journey).where(Journey.key == journey)
    )
    if row is None:
        raise LookupError(f"no journey {journey!r}")
    column = (
        Stat.day if by in ("day", "persona") else getattr(Stat, "step_id" if by == "step" else by)
    )
    where = [Stat.journey_id == row.id]
    if since is not None:
        where.append(Stat.day >= since)
    if until is not None:
        where.append(Stat.day <= until)
    groups: dict[str, Row] = {}
    totals = Row("total")
    for value, metric, count in session.execute(
        select(column, Stat.metric, func.sum(Stat.count))
        .where(*where)
        .group_by(column, Stat.metric)
    ):
        key = value.isoformat() if isinstance(value, date) else (value or "")
        count = int(count or 0)
        totals.counts[metric] = totals.counts.get(metric, 0) + count
        if by == "step" and not key:
            continue  # journey-level metrics (enrolled, goal) have no step
        groups.setdefault(key, Row(key)).counts[metric] = count
    held = held_now(session, row.id)
    if held:  # (a count that is zero is left out, as the stats' are)
        totals.counts["held"] = sum(n for reasons in held.values() for n in reasons.values())
    if by == "step":
        for step_id, reasons in held.items():
            groups.setdefault(step_id, Row(step_id)).counts["held"] = sum(reasons.values())
    rows = (
        by_persona(session, row.id, since, until)
        if by == "persona"
        else _ordered(session, row, groups, by)
    )
    goal = Rate(min(totals.count("goal"), totals.count("enrolled")), totals.count("enrolled"))
    holdout, control = _held(totals, "holdout"), _held(totals, "control")
    return JourneyReport(
        row.key,
        row.name,
        since,
        until,
        by,
        totals,
        rows,
        goal,
        holdout,
        lift(goal, holdout) if holdout and goal.n else None,
        unit=_unit(session, row),
        recipients=_recipients(session, row.id, since, until),
        control_goal=control,
        control_lift=lift(goal, control) if control and goal.n else None,
        has_goal=_has_goal(session, row),
        held={step: held[step] for step in [r.key for r in rows if r.key in held] + sorted(held)},
    )


def held_now(session: Session, journey_id: int) -> dict[str, dict[str, int]]:
    """The journey's messages deferred now, per step and reason (sending window, frequency
    cap, send time, rate limit, retry after a failure; :data:`campaigns.insight.flow.
    HOLD_REASONS`): one ``GROUP BY``."""
    deferred = (
        select(Message.step_id.label("step_id"), reason_of().label("reason"))
        .where(Message.journey_id == journey_id, Message.status == MessageStatus.DEFERRED)
        .subquery("deferred")
    )
    result: dict[str, dict[str, int]] = {}
    for step_id, reason, n in session.execute(
        select(deferred.c.step_id, deferred.c.reason, func.count()).group_by(
            deferred.c.step_id, deferred.c.reason
        )
    ):
        result.setdefault(step_id, {})[reason] = int(n)
    return result


def _unit(session: Session, journey: Journey | None) -> str:
    """Whether the journey's current version enrols contacts or accounts."""
    if journey is None or journey.current_version_id is None:
        return "contact"
    version = session.get(JourneyVersion, journey.current_version_id)
    unit = (version.definition or {}).get("unit") if version else None
    return unit if unit in ("contact", "account") else "contact"


def _has_goal(session: Session, journey: Journey) -> bool:
    """Whether the journey's current version names a goal (a goal of nothing reads 0%)."""
    if journey.current_version_id is None:
        return False
    version = session.get(JourneyVersion, journey.current_version_id)
    return bool(version is not None and (version.definition or {}).get("goal"))


def _recipients(session: Session, journey_id: int, since: date | None, until: date | None) -> int:
    """The distinct contacts the journey's customer email reached in the days asked."""
    where = [
        Message.journey_id == journey_id,
        Message.status == MessageStatus.SENT,
        Message.channel == Channel.EMAIL,
        Message.contact_id.is_not(None),
    ]
    if since is not None:
        where.append(Message.sent_at >= datetime.combine(since, time(0), UTC))
    if until is not None:
        where.append(Message.sent_at < datetime.combine(until + timedelta(days=1), time(0), UTC))
    found = session.scalar(select(func.count(func.distinct(Message.contact_id))).where(*where))
    return int(found or 0)


def by_persona(
    session: Session, journey_id: int, since: date | None = None, until: date | None = None
) -> list[Row]:
    """The journey's customer emails by the persona they went to: sent, bounced, and the
    unique human opens, clicks and answers (``opened_at``... of each message), with the
    messages a machine opened or clicked beside them. One ``GROUP BY`` over the journey's
    messages, the machine hits joined from one over its events; days by ``sent_at`` (UTC)."""
    machine = (
        select(
            Event.message_id.label("message_id"),
            func.max(case((Event.kind == EventKind.OPEN, 1), else_=0)).label("opened"),
            func.max(case((Event.kind == EventKind.CLICK, 1), else_=0)).label("clicked"),
        )
        .where(
            Event.journey_id == journey_id,
            Event.classification == Classification.MACHINE,
            Event.kind.in_([EventKind.OPEN, EventKind.CLICK]),
        )
        .group_by(Event.message_id)
        .subquery("machine")
    )
    sent = Message.status == MessageStatus.SENT
    where = [
        Message.journey_id == journey_id,
        Message.channel == Channel.EMAIL,
        Message.status.in_([MessageStatus.SENT, MessageStatus.BOUNCED]),
    ]
    if since is not None:
        where.append(Message.sent_at >= datetime.combine(since, time(0), UTC))
    if until is not None:
        where.append(Message.sent_at < datetime.combine(until + timedelta(days=1), time(0), UTC))
    persona = func.coalesce(Message.persona, NO_PERSONA).label("persona")
    query = (
        select(
            persona,
            func.count(case((sent, 1))),
            func.count(case((Message.status == MessageStatus.BOUNCED, 1))),
            func.count(Message.opened_at),
            func.count(Message.clicked_at),
            func.count(Message.answered_at),
            func.coalesce(func.sum(machine.c.opened), 0),
            func.coalesce(func.sum(machine.c.clicked), 0),
        )
        .outerjoin(machine, machine.c.message_id == Message.id)
        .where(*where)
        .group_by(persona)
        .order_by(persona)
    )
    names = ("sent", "bounced", "opened", "clicked", "answered")
    rows = []
    for key, *counts in session.execute(query):
        row = Row(str(key), dict(zip(names, (int(n) for n in counts[:5]), strict=True)))
        row.counts["opened_machine"], row.counts["clicked_machine"] = map(int, counts[5:])
        rows.append(row)
    return rows


def global_lift(session: Session) -> Lift | None:
    """The goal rate of the treated in every journey with a goal, pooled, against the global
    control group's in the same journeys; None while the group has nobody. Members are held
    out by a hash of their id alone, so both groups meet the same mix of journeys."""
    held = select(Stat.journey_id).where(Stat.metric == "control", Stat.count > 0).distinct()
    versions = session.execute(
        select(Journey.id, JourneyVersion.definition)
        .join(JourneyVersion, JourneyVersion.id == Journey.current_version_id)
        .where(Journey.id.in_(held))
    )
    goals = [journey_id for journey_id, definition in versions if (definition or {}).get("goal")]
    if not goals:
        return None
    totals = Row("global")
    for metric, count in session.execute(
        select(Stat.metric, func.sum(Stat.count))
        .where(
            Stat.journey_id.in_(goals),
            Stat.metric.in_(["enrolled", "goal", "control", "control_goal"]),
        )
        .group_by(Stat.metric)
    ):
        totals.counts[metric] = int(count or 0)
    control = _held(totals, "control")
    treated = Rate(min(totals.count("goal"), totals.count("enrolled")), totals.count("enrolled"))
    if control is None or not treated.n:
        return None
    return lift(treated, control)


def global_control(session: Session) -> dict[str, Any] | None:
    """:func:`global_lift` as JSON (``treated``, ``control``, ``lift``), or None."""
    result = global_lift(session)
    if result is None:
        return None
    return {
        "treated": rate_dict(result.treated),
        "control": rate_dict(result.control),
        "lift": lift_dict(result),
    }


def _ordered(session: Session, journey: Journey, groups: dict[str, Row], by: str) -> list[Row]:
    """Steps in the journey's order (the funnel); anything else by key."""
    if by != "step" or journey.current_version_id is None:
        return [groups[k] for k in sorted(groups)]
    from campaigns.exceptions import JourneyError
    from campaigns.journeys.parse import parse_journey

    version = session.get(JourneyVersion, journey.current_version_id)
    try:
        order = (
            {
                step.id: i
                for i, step in enumerate(
                    parse_journey(version.source_text, version.source_path).steps
                )
            }
            if version
            else {}
        )
    except JourneyError:  # a version stored by an older release that no longer parses: by name
        order = {}
    return sorted(groups.values(), key=lambda r: (order.get(r.key, len(order)), r.key))


def overview(session: Session) -> list[dict[str, Any]]:
    """Every journey with its headline counts and rates (the dashboard's list, ``report``
    without a journey)."""
    totals: dict[int, Row] = defaultdict(lambda: Row("total"))
    for journey_id, metric, count in session.execute(
        select(Stat.journey_id, Stat.metric, func.sum(Stat.count)).group_by(
            Stat.journey_id, Stat.metric
        )
    ):
        totals[journey_id].counts[metric] = int(count or 0)
    live = live_totals(session)
    result = []
    for journey_id, key, name in journeys(session):
        row = totals.get(journey_id, Row("total"))
        now = live.get(journey_id)
        if now is not None and now.in_progress:  # live: in progress now (zero is left out)
            row.counts["in_progress"] = now.in_progress
        if now is not None and now.held:  # and the messages held now
            row.counts["held"] = now.held
        unit = _unit(session, session.get(Journey, journey_id))
        result.append({"journey": key, "name": name, "unit": unit, **row.as_dict(), "key": key})
    return result
