"""Trigger points, evaluated set-based on every tick: who needs a person now.

Each trigger of ``journeys/triggers.yaml`` (:mod:`campaigns.journeys.triggers`) is one
``SELECT`` over its source, narrowed in the same statement by its ``when:`` rule (the
segment rules' SQL, :class:`~campaigns.engine.audience.RuleCompiler`) and by the accounts
that already have a task of it (open, or opened within its cooldown):

- health, custom event and answer triggers read the events recorded after the trigger's
  mark (``trigger_marks``: the last event id it has read), up to the newest event it may
  trust (on PostgreSQL, one recorded :data:`LAG` ago: a transaction that took an id earlier
  may still be committing; SQLite has one writer at a time, so its ids commit in order).
  A trigger with no mark yet starts :data:`LOOKBACK` back, not at the start of history;
- a detractor is a human answer to a survey step of the trigger's scale (NPS 0-6 by
  default, CSAT 1-2) whose value is a score at or below ``at_most``;
- a usage trigger compares, per account, the metric's sum over the last N whole days (today
  is not over) with the N days before, once per day (its mark's date).

What fires becomes one task per trigger and account (``open_key`` ``trigger:<key>:<account>``,
unique while it is open: a second firing, or a second worker's pass, opens no twin), its
title rendered in the owner's language, due by the trigger's SLA, for the account's owner
(or the file's ``fallback_owner``). The pass is idempotent: run twice, it opens nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import Select, and_, case, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.content import filters
from campaigns.content.locale import Reader, local_date
from campaigns.currency import DEFAULT as DEFAULT_CURRENCIES
from campaigns.currency import Currencies
from campaigns.engine.audience import RuleCompiler
from campaigns.engine.context import condition_values
from campaigns.journeys.model import text_for
from campaigns.journeys.segments import SegmentSet
from campaigns.journeys.triggers import (
    AnswerOn,
    EventOn,
    HealthOn,
    Trigger,
    TriggerSet,
    UsageOn,
)
from campaigns.store.enums import Classification, EventKind, OutboundType, TaskStatus
from campaigns.store.models import (
    Account,
    Contact,
    Event,
    JourneyVersion,
    Task,
    TriggerMark,
    UsageMetric,
    User,
)
from campaigns.store.outbox import emit_task

log = logging.getLogger("campaigns.triggers")

LAG = timedelta(seconds=60)
"""On PostgreSQL, events are trusted once recorded this long ago (see the module's text)."""

LOOKBACK = timedelta(days=1)
"""How far back a trigger with no mark yet starts reading events."""

MAX_FIRINGS = 5_000
"""Tasks one trigger opens in one pass at most; the rest fire on the next pass."""

_TEXT_ENV = filters.install(SandboxedEnvironment(autoescape=False))


@dataclass(frozen=True)
class Firing:
    """One account a trigger fired for, with what fired it (for the title and the task)."""

    account_id: int
    contact_id: int | None = None
    event_id: int | None = None
    facts: Mapping[str, object] | None = None


def fire(
    session: Session,
    triggers: TriggerSet,
    segments: SegmentSet,
    now: datetime,
    *,
    time_zone: str = "UTC",
    currencies: Currencies = DEFAULT_CURRENCIES,
) -> dict[str, int]:
    """Evaluate every trigger and open the tasks that fire (the caller commits): the number
    of tasks opened, by trigger key."""
    opened: dict[str, int] = {}
    if not triggers.triggers:
        return opened
    newest = _trusted_newest(session, now)
    survey_steps: dict[str, list[tuple[int, str]]] | None = None
    for trigger in triggers.triggers:
        on = trigger.on
        mark = session.get(TriggerMark, trigger.key)
        if isinstance(on, UsageOn):
            if mark is not None and local_date(mark.updated_at, "UTC") >= now.date():
                continue  # once a day
            firings = _usage(session, trigger, on, segments, now)
            _set_mark(session, trigger.key, 0, now)
        else:
            start = mark.event_id if mark is not None else _id_before(session, now - LOOKBACK)
            if newest <= start:
                continue
            if isinstance(on, AnswerOn):
                if survey_steps is None:
                    survey_steps = _survey_steps(session)
                steps = survey_steps.get(on.scale, [])
                firings = _answers(session, trigger, on, steps, segments, now, start, newest)
            else:
                firings = _events(session, trigger, on, segments, now, start, newest)
            _set_mark(session, trigger.key, newest, now)
        count = _open(session, trigger, triggers, firings, now, time_zone, currencies)
        if count:
            opened[trigger.key] = count
    return opened


# ---------------------------------------------------------------------------- marks


def _trusted_newest(session: Session, now: datetime) -> int:
    """The newest event id a pass may read up to (see :data:`LAG`)."""
    query = select(func.max(Event.id))
    if session.get_bind().dialect.name == "postgresql":
        query = query.where(Event.recorded_at <= now - LAG)
    return int(session.scalar(query) or 0)


def _id_before(session: Session, moment: datetime) -> int:
    return int(session.scalar(select(func.max(Event.id)).where(Event.recorded_at < moment)) or 0)


def _set_mark(session: Session, key: str, event_id: int, now: datetime) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(TriggerMark).values(key=key, event_id=event_id, updated_at=now)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["key"],
            set_={"event_id": statement.excluded.event_id, "updated_at": now},
        )
    )


# ---------------------------------------------------------------------------- sources


def _narrowed(
    query: Select[Any, Any],
    account_id: Any,
    trigger: Trigger,
    segments: SegmentSet,
    now: datetime,
) -> Select[Any, Any]:
    """``query`` joined to the account, kept to the accounts the ``when:`` rule holds for
    and that have no task of this trigger open (or opened within its quiet time)."""
    query = query.join(Account, Account.id == account_id)
    if trigger.when_expr is not None:
        query = query.where(RuleCompiler(segments, now.date()).compile(trigger.when_expr))
    taken = [Task.status == TaskStatus.OPEN]
    if trigger.quiet:
        taken.append(Task.created_at > now - trigger.quiet)
    return query.where(
        ~exists().where(Task.account_id == Account.id, Task.trigger == trigger.key, or_(*taken))
    )


def _events(
    session: Session,
    trigger: Trigger,
    on: HealthOn | EventOn,
    segments: SegmentSet,
    now: datetime,
    start: int,
    end: int,
) -> list[Firing]:
    """The accounts with a custom event of the trigger's name in (start, end]: the latest."""
    name = on.event_name if isinstance(on, HealthOn) else on.name
    latest = func.max(Event.id).label("event_id")
    query = select(Event.account_id, latest).where(
        Event.kind == EventKind.CUSTOM,
        Event.name == name,
        Event.id > start,
        Event.id <= end,
        Event.account_id.is_not(None),
    )
    query = _narrowed(query, Event.account_id, trigger, segments, now)
    rows = session.execute(query.group_by(Event.account_id).limit(MAX_FIRINGS)).all()
    data = _event_data(session, [row.event_id for row in rows])
    return [
        Firing(row.account_id, event_id=row.event_id, facts=data.get(row.event_id, {}))
        for row in rows
    ]


def _event_data(session: Session, ids: Sequence[int]) -> dict[int, dict[str, object]]:
    found: dict[int, dict[str, object]] = {}
    for start in range(0, len(ids), 1_000):
        chunk = ids[start : start + 1_000]
        for event_id, value, contact_id, data in session.execute(
            select(Event.id, Event.value, Event.contact_id, Event.data).where(Event.id.in_(chunk))
        ):
            found[event_id] = {**(data or {}), "value": value, "contact_id": contact_id}
    return found


def _survey_steps(session: Session) -> dict[str, list[tuple[int, str]]]:
    """Every survey step of every stored journey version, by scale: (journey id, step id)."""
    steps: dict[str, set[tuple[int, str]]] = {}
    for journey_id, definition in session.execute(
        select(JourneyVersion.journey_id, JourneyVersion.definition)
    ):
        for step in (definition or {}).get("steps", []):
            survey = (step.get("blocks") or {}).get("survey") if isinstance(step, dict) else None
            if isinstance(survey, dict) and survey.get("scale") and step.get("id"):
                steps.setdefault(str(survey["scale"]), set()).add((journey_id, str(step["id"])))
    return {scale: sorted(pairs) for scale, pairs in steps.items()}


def _answers(
    session: Session,
    trigger: Trigger,
    on: AnswerOn,
    steps: Sequence[tuple[int, str]],
    segments: SegmentSet,
    now: datetime,
    start: int,
    end: int,
) -> list[Firing]:
    """The accounts whose contacts gave a human answer of at most ``at_most`` to a survey
    step of the scale, in (start, end]: the latest such answer of each account."""
    if not steps:
        return []
    account_id = func.coalesce(Event.account_id, Contact.account_id)
    on_step = or_(*(and_(Event.journey_id == j, Event.step_id == s) for j, s in steps))
    latest = func.max(Event.id).label("event_id")
    query = (
        select(account_id.label("account_id"), latest)
        .select_from(Event)
        .outerjoin(Contact, Contact.id == Event.contact_id)
        .where(
            Event.kind == EventKind.ANSWER,
            Event.id > start,
            Event.id <= end,
            Event.classification == Classification.HUMAN,
            Event.value.in_(on.scores),
            on_step,
        )
    )
    query = _narrowed(query, account_id, trigger, segments, now)
    rows = session.execute(query.group_by(account_id).limit(MAX_FIRINGS)).all()
    data = _event_data(session, [row.event_id for row in rows])
    firings = []
    for row in rows:
        facts = data.get(row.event_id, {})
        contact = facts.get("contact_id")
        score = facts.get("value")
        firings.append(
            Firing(
                row.account_id,
                contact_id=contact if isinstance(contact, int) else None,
                event_id=row.event_id,
                facts={"score": int(score) if isinstance(score, str) else score},
            )
        )
    return firings


def _usage(
    session: Session, trigger: Trigger, on: UsageOn, segments: SegmentSet, now: datetime
) -> list[Firing]:
    """The accounts whose metric over the last ``days`` whole days fell by ``drop`` percent
    or more from the ``days`` before (which summed to at least ``at_least``): one
    ``GROUP BY`` over the two windows of ``usage_metrics``."""
    today = now.date()
    recent_from = today - timedelta(days=on.days)
    before_from = today - timedelta(days=2 * on.days)
    recent = func.coalesce(
        func.sum(case((UsageMetric.day >= recent_from, UsageMetric.value), else_=0.0)), 0.0
    )
    before = func.coalesce(
        func.sum(case((UsageMetric.day < recent_from, UsageMetric.value), else_=0.0)), 0.0
    )
    query = select(UsageMetric.account_id, recent.label("recent"), before.label("before")).where(
        UsageMetric.metric == on.metric,
        UsageMetric.day >= before_from,
        UsageMetric.day < today,
    )
    query = _narrowed(query, UsageMetric.account_id, trigger, segments, now)
    query = query.group_by(UsageMetric.account_id).having(
        before >= on.at_least, recent <= before * (1 - on.drop / 100)
    )
    return [
        Firing(
            row.account_id,
            facts={
                "metric": on.metric,
                "recent": float(row.recent),
                "before": float(row.before),
                "drop": round(100 * (1 - float(row.recent) / float(row.before)), 1),
                "days": on.days,
            },
        )
        for row in session.execute(query.limit(MAX_FIRINGS))
    ]


# ---------------------------------------------------------------------------- tasks


def _open(
    session: Session,
    trigger: Trigger,
    triggers: TriggerSet,
    firings: Sequence[Firing],
    now: datetime,
    time_zone: str,
    currencies: Currencies,
) -> int:
    """Open one task per firing (a twin's key taken meanwhile: skipped); how many opened."""
    if not firings:
        return 0
    accounts = {
        a.id: a
        for a in session.scalars(
            select(Account).where(Account.id.in_(f.account_id for f in firings))
        )
    }
    owners = {
        a.id: trigger.assignee or a.owner_email or triggers.fallback_owner
        for a in accounts.values()
    }
    locales = _owner_locales(session, (o for o in owners.values() if o))
    due = trigger.due.due(now, time_zone)
    opened = 0
    for firing in firings:
        account = accounts.get(firing.account_id)
        if account is None:
            continue
        owner = owners[account.id]
        locale = locales.get((owner or "").lower()) or triggers.locale
        values = {
            **condition_values(None, account, now, time_zone, currencies),
            "trigger": {"key": trigger.key, "priority": trigger.priority},
            "event": dict(firing.facts or {}),
        }
        reader = Reader(locale, time_zone)
        title = " ".join(_render(trigger.title, locale, triggers.locale, values, reader).split())
        notes = _render(trigger.notes, locale, triggers.locale, values, reader).strip() or None
        task = Task(
            account_id=account.id,
            contact_id=firing.contact_id,
            owner_email=owner.lower() if owner else None,
            kind=trigger.kind,
            priority=trigger.priority,
            trigger=trigger.key,
            title=title[:512] or trigger.key,
            notes=notes,
            due_at=due,
            created_at=now,
            open_key=f"{trigger.open_key}{account.id}",
        )
        try:
            with session.begin_nested():  # another pass may take the key meanwhile
                session.add(task)
        except IntegrityError:
            continue
        emit_task(session, OutboundType.TASK_CREATED, task, now)
        opened += 1
    if opened:
        log.info("trigger %s opened %d task(s)", trigger.key, opened)
    return opened


def _owner_locales(session: Session, owners: Iterable[str]) -> dict[str, str]:
    addresses = sorted({o.lower() for o in owners})
    if not addresses:
        return {}
    rows = session.execute(
        select(User.email, User.locale).where(User.email.in_(addresses), User.locale.is_not(None))
    )
    return {email: locale for email, locale in rows if locale}


def _render(
    text: object, locale: str, default: str, values: Mapping[str, object], reader: Reader
) -> str:
    """A trigger's title or notes in the owner's language (else the file's), rendered for
    the account, its dates and numbers in that language."""
    if text is None:
        return ""
    chosen = text_for(text, locale, default)  # type: ignore[arg-type]
    if not chosen:
        return ""
    language = (
        next((lang for lang, t in text.items() if t == chosen), None)
        if isinstance(text, Mapping)
        else None
    )
    used = reader if language is None else reader.reading(language)
    return _TEXT_ENV.from_string(chosen).render(**values, **{filters.READER: used})
