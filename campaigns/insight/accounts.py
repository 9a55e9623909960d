"""The account page a CSM opens before a call, "My accounts", and the health overview: one
module of plain data that the dashboard, the API (``GET /api/v1/accounts/...``) and
``campaigns account`` all show.

:func:`account_page` gathers, for one account, its facts (ARR in its own currency, tier,
owner, renewal date and the days to it), its health score and band with the daily history
from ``health_scores`` and what moved it most over 30 days, its contacts with their role,
title, persona and engagement, its journeys (its contacts' and the account journeys'), its
tasks, its NPS answers and one timeline of every touch (:func:`~campaigns.insight.timeline.
account_timeline`). Every query is indexed and bounded (:data:`CONTACTS`, :data:`HISTORY_DAYS`,
...), so the page costs the same at 250,000 accounts as at 60 (bench/account_page.py).

A day's ``measures`` JSON is written by the health scorer: ``{"<measure>": {"value": v,
"score": s, "weight": w, "contribution": c, "label": {"en": ..., "ja": ...}}}``. It is read
defensively: a missing or odd field is left out, never an error.

Nothing here formats for a reader: amounts stay :class:`~decimal.Decimal` with their currency,
times stay aware datetimes; the edges format them in the reader's language.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from campaigns.insight.nps import nps_steps
from campaigns.insight.timeline import Entry, account_timeline
from campaigns.journeys.scorecards import ScorecardSet
from campaigns.store.enums import (
    Classification,
    EnrollmentState,
    EventKind,
    HealthBand,
    MessageStatus,
    TaskPriority,
    TaskStatus,
)
from campaigns.store.models import (
    Account,
    Contact,
    Enrollment,
    Event,
    HealthScore,
    Journey,
    Message,
    Task,
)

CONTACTS = 100
"""Contacts shown on an account's page (its total is shown beside them)."""

HISTORY_DAYS = 90
"""Days of health history on the page and in its chart."""

CHANGE_DAYS = 30
""""What changed": the measures' contributions now against this many days ago."""

CHANGES = 3
"""Measures named under "what changed"."""

JOURNEYS = 100
TASKS = 50
ANSWERS = 50
TIMELINE = 100

BAND_THRESHOLDS: tuple[tuple[str, float], ...] = (
    (HealthBand.YELLOW, 40.0),
    (HealthBand.GREEN, 70.0),
)
"""Where the bands start on the score chart (red below the first), when the scores do not
say: each band's lowest score seen in the history is used where there is one."""

BANDS = tuple(b.value for b in HealthBand)
"""red, yellow, green: worst first."""

RUNNING = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)

_ENGAGED = (EventKind.OPEN, EventKind.CLICK, EventKind.ANSWER, EventKind.RSVP, EventKind.COMMENT)


# ---------------------------------------------------------------------------- the page's parts


@dataclass(frozen=True)
class Measure:
    """One measure of one day's score: its value, its 0-100 score, its weight, and how many
    points it gave the score (``contribution``)."""

    name: str
    label: str
    value: float | None
    score: float | None
    weight: float | None
    contribution: float | None


@dataclass(frozen=True)
class HealthDay:
    day: date
    score: float | None
    band: str | None
    scorecard: str
    measures: tuple[Measure, ...]

    def contribution(self, name: str) -> float | None:
        return next((m.contribution for m in self.measures if m.name == name), None)


@dataclass(frozen=True)
class Change:
    """A measure whose contribution moved: from ``before`` (about 30 days ago) to ``now``."""

    name: str
    label: str
    before: float | None
    now: float | None

    @property
    def delta(self) -> float:
        return (self.now or 0.0) - (self.before or 0.0)


@dataclass(frozen=True)
class ContactRow:
    id: int
    email: str
    name: str | None
    role: str | None
    title: str | None
    persona: str | None
    locale: str
    time_zone: str
    subscribed: bool
    sent: int
    opened: int  # human opens (messages opened at least once by a person)
    clicked: int
    last_touch: datetime | None


@dataclass(frozen=True)
class JourneyRow:
    key: str
    name: str
    state: str
    step: str | None
    entered_at: datetime
    finished_at: datetime | None
    contact: str | None  # None: an account journey

    @property
    def running(self) -> bool:
        return self.state in RUNNING


@dataclass(frozen=True)
class TaskRow:
    id: int
    title: str
    kind: str
    priority: str
    status: str
    owner_email: str | None
    due_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    outcome: str | None
    escalated_at: datetime | None
    escalated_to: str | None
    trigger: str | None
    contact_id: int | None

    def overdue(self, now: datetime) -> bool:
        return self.status == TaskStatus.OPEN and self.due_at is not None and self.due_at < now


@dataclass(frozen=True)
class Answer:
    at: datetime
    contact_id: int | None
    contact: str | None
    journey: str | None
    step: str | None
    value: str | None
    nps: str | None  # promoter, passive, detractor: for an NPS step's answer


@dataclass(frozen=True)
class Facts:
    id: int
    external_id: str
    name: str
    tier: str | None
    plan: str | None
    industry: str | None
    company_size: int | None
    contract_status: str
    owner_email: str | None
    arr: Decimal | None
    ltv: Decimal | None
    currency: str
    renewal_date: date | None
    days_to_renewal: int | None
    health_score: int | None
    health_band: str | None
    health_change_7d: float | None
    health_change_30d: float | None
    health_scored_on: date | None


@dataclass
class AccountPage:
    """Everything the account page shows."""

    facts: Facts
    today: date
    history: list[HealthDay]
    changes: list[Change]
    thresholds: tuple[tuple[str, float], ...]
    contacts: list[ContactRow]
    contacts_total: int
    journeys: list[JourneyRow]
    open_tasks: list[TaskRow]
    done_tasks: list[TaskRow]
    answers: list[Answer]
    timeline: list[Entry]
    measures: list[tuple[str, str]] = field(default_factory=list)  # (name, label), by weight

    @property
    def running(self) -> list[JourneyRow]:
        return [j for j in self.journeys if j.running]

    @property
    def done(self) -> list[JourneyRow]:
        return [j for j in self.journeys if not j.running]

    def to_json(self) -> dict[str, Any]:
        """The page as the API gives it: amounts as decimal strings, times in ISO 8601."""
        facts = asdict(self.facts)
        for key in ("arr", "ltv"):
            facts[key] = None if facts[key] is None else format(facts[key], "f")
        return {
            **iso_row(facts),
            "health": {
                "score": self.facts.health_score,
                "band": self.facts.health_band,
                "change_7d": self.facts.health_change_7d,
                "change_30d": self.facts.health_change_30d,
                "scored_on": _iso_value(self.facts.health_scored_on),
                "thresholds": dict(self.thresholds),
                "history": [
                    {
                        "day": h.day.isoformat(),
                        "score": h.score,
                        "band": h.band,
                        "scorecard": h.scorecard,
                        "measures": {m.name: iso_row(asdict(m)) for m in h.measures},
                    }
                    for h in self.history
                ],
                "changes": [
                    {"measure": c.name, "label": c.label, "before": c.before, "now": c.now}
                    for c in self.changes
                ],
            },
            "contacts": [iso_row(asdict(c)) for c in self.contacts],
            "contacts_total": self.contacts_total,
            "journeys": {
                "running": [iso_row(asdict(j)) for j in self.running],
                "done": [iso_row(asdict(j)) for j in self.done],
            },
            "tasks": {
                "open": [iso_row(asdict(t)) for t in self.open_tasks],
                "done": [iso_row(asdict(t)) for t in self.done_tasks],
            },
            "answers": [iso_row(asdict(a)) for a in self.answers],
            "timeline": [e.to_json() for e in self.timeline],
        }


def _iso_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def iso_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso_value(v) for k, v in row.items()}


# ---------------------------------------------------------------------------- the account page


def find_account(
    session: Session, *, external_id: str | None = None, id: int | None = None
) -> Account | None:
    """The account by its ``external_id`` or its ``id``."""
    if id is not None:
        return session.get(Account, id)
    return session.scalar(select(Account).where(Account.external_id == external_id))


Personas = Callable[[Sequence[Contact]], Mapping[int, str | None]]
"""Works out the personas of the contacts a page shows (the caller knows the segments)."""


def account_page(
    session: Session,
    account: Account,
    now: datetime,
    *,
    locale: str = "en",
    personas: Personas | None = None,
    labels: Mapping[str, Any] | None = None,
    bands: Mapping[str, Mapping[str, float]] | None = None,
) -> AccountPage:
    """The page of ``account`` on ``now``'s day (UTC). ``personas`` gives the contacts shown
    their persona (contact id -> persona, by the segments' persona rules:
    :func:`campaigns.engine.personas.personas_for`); a contact it leaves out shows the persona
    their latest mail was chosen for. ``labels`` (measure name -> label, from the
    scorecards) names the measures of the health chart, and ``bands`` (scorecard -> band ->
    lower bound) marks where its bands start."""
    today = now.date()
    history = health_history(session, account.id, today, locale=locale, labels=labels)
    contacts, total = _contacts(session, account.id, personas)
    names = {c.id: c.name or c.email for c in contacts}
    return AccountPage(
        facts=_facts(account, today),
        today=today,
        history=history,
        changes=what_changed(history),
        thresholds=thresholds(history, bands),
        contacts=contacts,
        contacts_total=total,
        journeys=_journeys(session, account.id, names),
        open_tasks=_tasks(session, account.id, done=False),
        done_tasks=_tasks(session, account.id, done=True),
        answers=_answers(session, names),
        timeline=account_timeline(session, account.id, names, limit=TIMELINE),
        measures=_measure_names(history),
    )


def _facts(account: Account, today: date) -> Facts:
    days = (account.renewal_date - today).days if account.renewal_date else None
    return Facts(
        id=account.id,
        external_id=account.external_id,
        name=account.name,
        tier=account.tier,
        plan=account.plan,
        industry=account.industry,
        company_size=account.company_size,
        contract_status=account.contract_status,
        owner_email=account.owner_email,
        arr=account.arr,
        ltv=account.ltv,
        currency=account.currency,
        renewal_date=account.renewal_date,
        days_to_renewal=days,
        health_score=account.health_score,
        health_band=account.health_band,
        health_change_7d=account.health_change_7d,
        health_change_30d=account.health_change_30d,
        health_scored_on=account.health_scored_on,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _label(name: str, label: Any, locale: str) -> str:
    if isinstance(label, str) and label.strip():
        return label
    if isinstance(label, Mapping):
        for key in (locale, locale.split("-")[0], "en"):
            if isinstance(label.get(key), str) and label[key].strip():
                return str(label[key])
        first = next((v for v in label.values() if isinstance(v, str) and v.strip()), None)
        if first:
            return first
    return name.replace("_", " ")


def read_measures(
    raw: Any, locale: str = "en", labels: Mapping[str, Any] | None = None
) -> tuple[Measure, ...]:
    """A day's ``measures`` JSON as :class:`Measure` rows, skipping what is not readable;
    a measure's label is its own, else the scorecard's (``labels``: name -> label)."""
    if not isinstance(raw, Mapping):
        return ()
    out = []
    for name, item in raw.items():
        if not isinstance(name, str) or not isinstance(item, Mapping):
            continue
        out.append(
            Measure(
                name,
                _label(name, item.get("label") or (labels or {}).get(name), locale),
                _number(item.get("value")),
                _number(item.get("score")),
                _number(item.get("weight")),
                _number(item.get("contribution")),
            )
        )
    return tuple(out)


def health_history(
    session: Session,
    account_id: int,
    today: date,
    *,
    days: int = HISTORY_DAYS,
    locale: str = "en",
    labels: Mapping[str, Any] | None = None,
) -> list[HealthDay]:
    """The account's daily health over the last ``days`` days, oldest first."""
    rows = session.execute(
        select(
            HealthScore.day,
            HealthScore.score,
            HealthScore.band,
            HealthScore.scorecard,
            HealthScore.measures,
        )
        .where(
            HealthScore.account_id == account_id,
            HealthScore.day > today - timedelta(days=days),
            HealthScore.day <= today,
        )
        .order_by(HealthScore.day)
    ).all()
    return [
        HealthDay(day, _number(score), band, scorecard, read_measures(measures, locale, labels))
        for day, score, band, scorecard, measures in rows
    ]


def what_changed(
    history: list[HealthDay], *, days: int = CHANGE_DAYS, top: int = CHANGES
) -> list[Change]:
    """The measures whose contribution moved most between the latest day and the day
    ``days`` before it (or the oldest day after that, when that day is missing)."""
    if len(history) < 2:
        return []
    latest = history[-1]
    since = latest.day - timedelta(days=days)
    before = next((h for h in history if h.day >= since), history[0])
    if before is latest:
        return []
    labels = {m.name: m.label for h in (before, latest) for m in h.measures}
    changes = [
        Change(name, labels[name], before.contribution(name), latest.contribution(name))
        for name in labels
    ]
    moved = [c for c in changes if abs(c.delta) >= 0.05]
    moved.sort(key=lambda c: (-abs(c.delta), c.name))
    return moved[:top]


def scorecard_view(cards: ScorecardSet | None) -> dict[str, Any]:
    """What the account page takes from the scorecards (:func:`account_page`'s ``labels``
    and ``bands``): each measure's label, and where each scorecard's bands start."""
    if cards is None:
        return {}
    return {
        "labels": {m.name: m.label for c in cards.scorecards for m in c.measures if m.label},
        "bands": {
            c.name: {"yellow": c.bands.yellow, "green": c.bands.green} for c in cards.scorecards
        },
    }


def thresholds(
    history: list[HealthDay], bands: Mapping[str, Mapping[str, float]] | None = None
) -> tuple[tuple[str, float], ...]:
    """Where yellow and green start: the latest day's scorecard's (``bands``: scorecard ->
    band -> lower bound, from the scorecards file), else the lowest score seen in each band
    (when the history's bands are consistent with it), else :data:`BAND_THRESHOLDS`."""
    latest = history[-1].scorecard if history else None
    if bands and latest is not None and latest in bands:
        card = bands[latest]
        if all(str(b) in card for b, _ in BAND_THRESHOLDS):
            return tuple((str(b), float(card[str(b)])) for b, _ in BAND_THRESHOLDS)
    found = []
    for band, default in BAND_THRESHOLDS:
        scores = [h.score for h in history if h.band == band and h.score is not None]
        found.append((str(band), min(scores) if scores else default))
    if found[0][1] >= found[1][1]:
        return tuple((str(b), v) for b, v in BAND_THRESHOLDS)
    return tuple(found)


def _measure_names(history: list[HealthDay]) -> list[tuple[str, str]]:
    """Every measure of the history (name, label), the heaviest first in the latest day."""
    seen: dict[str, tuple[str, float]] = {}
    for h in history:
        for m in h.measures:
            seen[m.name] = (m.label, m.weight or 0.0)
    return [(n, lw[0]) for n, lw in sorted(seen.items(), key=lambda kv: (-kv[1][1], kv[0]))]


def _contacts(
    session: Session, account_id: int, personas: Personas | None
) -> tuple[list[ContactRow], int]:
    people = session.scalars(
        select(Contact).where(Contact.account_id == account_id).order_by(Contact.id).limit(CONTACTS)
    ).all()
    total = len(people)
    if total == CONTACTS:  # only then may there be more
        total = session.scalar(select(func.count()).where(Contact.account_id == account_id)) or 0
    if not people:
        return [], total
    ids = [p.id for p in people]
    mail = {
        contact_id: (sent, opened, clicked, last)
        for contact_id, sent, opened, clicked, last in session.execute(
            select(
                Message.contact_id,
                func.count(Message.sent_at),
                func.count(Message.opened_at),
                func.count(Message.clicked_at),
                func.max(Message.sent_at),
            )
            .where(
                Message.contact_id.in_(ids),
                Message.attempt_key != "owner",
                Message.status.in_([MessageStatus.SENT, MessageStatus.BOUNCED]),
            )
            .group_by(Message.contact_id)
        )
    }
    touched: dict[int, datetime] = {
        contact_id: at
        for contact_id, at in session.execute(
            select(Event.contact_id, func.max(Event.occurred_at))
            .where(
                Event.contact_id.in_(ids),
                Event.kind.in_(_ENGAGED),
                Event.classification != Classification.MACHINE,
            )
            .group_by(Event.contact_id)
        )
        if contact_id is not None and at is not None
    }
    live = personas(people) if personas is not None and people else {}
    chosen: dict[int, str] = {}
    for contact_id, persona in session.execute(
        select(Message.contact_id, Message.persona)
        .where(Message.contact_id.in_(ids), Message.persona.is_not(None))
        .order_by(Message.created_at.desc())
        .limit(CONTACTS * 5)
    ):
        if contact_id is not None and persona:
            chosen.setdefault(contact_id, persona)
    rows = []
    for p in people:
        sent, opened, clicked, last_mail = mail.get(p.id, (0, 0, 0, None))
        last = max((t for t in (last_mail, touched.get(p.id)) if t is not None), default=None)
        persona = live.get(p.id) or chosen.get(p.id)
        rows.append(
            ContactRow(
                p.id,
                p.email,
                p.name,
                p.role,
                p.title,
                persona,
                p.locale,
                p.time_zone,
                p.subscribed,
                sent,
                opened,
                clicked,
                last,
            )
        )
    return rows, total


def _journeys(session: Session, account_id: int, names: Mapping[int, str]) -> list[JourneyRow]:
    whose: ColumnElement[bool] = Enrollment.contact_id.is_(None) & (
        Enrollment.account_id == account_id
    )
    if names:
        whose = whose | Enrollment.contact_id.in_(sorted(names))
    rows = session.execute(
        select(
            Journey.key,
            Journey.name,
            Enrollment.state,
            Enrollment.current_step,
            Enrollment.entered_at,
            Enrollment.finished_at,
            Enrollment.contact_id,
        )
        .join(Journey, Journey.id == Enrollment.journey_id)
        .where(whose)
        .order_by(Enrollment.entered_at.desc(), Enrollment.id.desc())
        .limit(JOURNEYS)
    )
    return [
        JourneyRow(
            key, name, state, step, entered, finished, names.get(contact) if contact else None
        )
        for key, name, state, step, entered, finished, contact in rows
    ]


_PRIORITY_ORDER = case(
    {p.value: i for i, p in enumerate(TaskPriority)}, value=Task.priority, else_=len(TaskPriority)
)


def _tasks(session: Session, account_id: int, *, done: bool) -> list[TaskRow]:
    query = select(Task).where(Task.account_id == account_id)
    if done:
        query = query.where(Task.status != TaskStatus.OPEN).order_by(
            Task.completed_at.desc(), Task.id.desc()
        )
    else:
        query = query.where(Task.status == TaskStatus.OPEN).order_by(
            _PRIORITY_ORDER, Task.due_at, Task.id
        )
    return [
        TaskRow(
            t.id,
            t.title,
            t.kind,
            t.priority,
            t.status,
            t.owner_email,
            t.due_at,
            t.created_at,
            t.completed_at,
            t.outcome,
            t.escalated_at,
            t.escalated_to,
            t.trigger,
            t.contact_id,
        )
        for t in session.scalars(query.limit(TASKS))
    ]


def nps_group(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def _answers(session: Session, names: Mapping[int, str]) -> list[Answer]:
    if not names:
        return []
    rows = session.execute(
        select(
            Event.occurred_at,
            Event.contact_id,
            Event.journey_id,
            Journey.key,
            Event.step_id,
            Event.value,
        )
        .outerjoin(Journey, Journey.id == Event.journey_id)
        .where(
            Event.contact_id.in_(sorted(names)),
            Event.kind == EventKind.ANSWER,
            Event.classification != Classification.MACHINE,
        )
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(ANSWERS)
    ).all()
    steps = nps_steps(session) if rows else {}
    out = []
    for at, contact_id, journey_id, key, step, value in rows:
        group = None
        if step in steps.get(journey_id or 0, set()) and value is not None and value.isdigit():
            group = nps_group(int(value)) if 0 <= int(value) <= 10 else None
        out.append(Answer(at, contact_id, names.get(contact_id or 0), key, step, value, group))
    return out
