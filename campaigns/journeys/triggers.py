"""Trigger points: the rules in ``journeys/triggers.yaml`` that bring a person in.

A trigger opens a task for an account's owner when something happens to the account: its
health drops a band, a contact answers a survey as a detractor, a product usage metric
falls, or the product posts a named event; a ``when:`` rule over account fields narrows
it (``tier in ['high_touch', 'low_touch']``). Each has a title (en/ja), a kind, a priority
and a due time (the SLA: ``4 hours``, ``1 day``, ``2 business days``; by default the
priority's). The file also says where an overdue task escalates (``escalation:``) and who
gets the tasks of accounts with no owner (``fallback_owner:``).

This module only reads and checks the file, with every problem at its ``path:line:col``
and a hint, the way journeys and segments are read; the engine
(:mod:`campaigns.engine.triggers`) evaluates the rules set-based on each tick. Plain data
in, plain data out: no database here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import nodes

from campaigns.exceptions import JourneyError, Problem
from campaigns.journeys import expressions
from campaigns.journeys.durations import DURATION_HINT, DurationError, parse_duration
from campaigns.journeys.expressions import Scope
from campaigns.journeys.hints import suggest
from campaigns.journeys.model import Text
from campaigns.journeys.reading import (
    Context,
    check_keys,
    read_choice,
    read_condition,
    read_duration,
    read_str,
    read_text,
)
from campaigns.journeys.segments import Lowering, SegmentSet
from campaigns.journeys.vocabulary import EVENT_RE, TASK_KINDS
from campaigns.journeys.yamlsource import Map, Pos, YamlProblem, describe, load, read

TRIGGERS_FILE = "triggers.yaml"
"""The trigger points' file, beside ``segments.yaml`` in the journeys folder."""

PRIORITIES = ("urgent", "high", "normal", "low")
"""Task priorities, most pressing first (:class:`campaigns.store.enums.TaskPriority`)."""

HEALTH_EVENTS = ("dropped", "changed", "red", "yellow", "green")
"""``on: {health: ...}``: the band got worse, changed at all, or entered red/yellow/green."""

SCALES = {"nps": (0, 10, 6), "csat": (1, 5, 2)}
"""Survey scales: lowest score, highest, and the default ``at_most`` of a detractor."""

MAX_USAGE_DAYS = 90

_TOP_KEYS = ("triggers", "escalation", "fallback_owner", "locale")
_TRIGGER_KEYS = (
    "on",
    "when",
    "title",
    "notes",
    "kind",
    "priority",
    "due",
    "assignee",
    "cooldown",
)
_ON_KEYS = {
    "health": ("health",),
    "answer": ("answer", "at_most"),
    "usage": ("usage", "drop", "days", "at_least"),
    "event": ("event",),
}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_ADDRESS_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_BUSINESS = re.compile(r"^\s*(\d{1,3})\s*(business\s+days?|working\s+days?|営業日)\s*$", re.I)
_PERCENT = re.compile(r"^\s*(\d{1,2}(?:\.\d+)?)\s*%\s*$")


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class HealthOn:
    """A health event the health scores record (``health_dropped``, ``health_red``...)."""

    band: str  # one of HEALTH_EVENTS

    @property
    def event_name(self) -> str:
        return f"health_{self.band}" if self.band != "changed" else "health_band_changed"


@dataclass(frozen=True)
class AnswerOn:
    """A survey answer of at most ``at_most`` on a step of this scale (a detractor)."""

    scale: str  # nps | csat
    at_most: int

    @property
    def scores(self) -> tuple[str, ...]:
        """The answer values (as stored: text) that fire."""
        low = SCALES[self.scale][0]
        return tuple(str(n) for n in range(low, self.at_most + 1))


@dataclass(frozen=True)
class UsageOn:
    """``metric`` summed over the last ``days`` days fell by ``drop`` percent or more from
    the ``days`` before, which summed to at least ``at_least``."""

    metric: str
    drop: float  # percent, above 0 and below 100
    days: int
    at_least: float = 1.0


@dataclass(frozen=True)
class EventOn:
    """A product event posted by name (``usage_dropped``, ``cancellation_requested``...)."""

    name: str


On = HealthOn | AnswerOn | UsageOn | EventOn


@dataclass(frozen=True)
class Sla:
    """A due time: a plain duration, or a number of business days (Monday to Friday)."""

    delta: timedelta | None = None
    business_days: int = 0

    def due(self, now: datetime, time_zone: str = "UTC") -> datetime:
        """When a task opened at ``now`` is due. Business days are counted on the calendar
        of ``time_zone``: each adds a day and skips Saturdays and Sundays, keeping the time
        of day (opened on a weekend, the count starts on Monday at the same time)."""
        if self.delta is not None:
            return now + self.delta
        zone = _zone(time_zone)
        local = now.astimezone(zone)
        while local.weekday() >= 5:
            local += timedelta(days=1)
        left = self.business_days
        while left:
            local += timedelta(days=1)
            if local.weekday() < 5:
                left -= 1
        wall = local.replace(tzinfo=None)  # the same wall time, across a DST change
        return wall.replace(tzinfo=zone).astimezone(now.tzinfo)

    def describe(self) -> str:
        if self.delta is not None:
            from campaigns.journeys.durations import format_duration

            return format_duration(self.delta)
        n = self.business_days
        return f"{n} business day{'s' if n != 1 else ''}"


DEFAULT_SLA: Mapping[str, Sla] = {
    "urgent": Sla(timedelta(hours=4)),
    "high": Sla(business_days=1),
    "normal": Sla(business_days=3),
    "low": Sla(business_days=5),
}
"""The due time of a trigger without ``due:``, by its priority."""


@dataclass(frozen=True)
class Trigger:
    key: str
    on: On
    title: Text
    kind: str = "call"
    priority: str = "normal"
    due: Sla = field(default_factory=lambda: DEFAULT_SLA["normal"])
    notes: Text | None = None
    when: str | None = None
    when_expr: nodes.Expr | None = None
    assignee: str | None = None  # None: the account's owner
    cooldown: timedelta | None = None  # after a task of it opened, none again for this long
    line: int = 1

    @property
    def open_key(self) -> str:
        """The prefix of its tasks' ``open_key``: ``trigger:<key>:<account id>``."""
        return f"trigger:{self.key}:"

    @property
    def quiet(self) -> timedelta:
        """How long after one of its tasks opened the trigger opens none for the account
        (besides while that task is open): ``cooldown``, else a usage trigger's window."""
        if self.cooldown is not None:
            return self.cooldown
        if isinstance(self.on, UsageOn):
            return timedelta(days=self.on.days)
        return timedelta(0)


@dataclass(frozen=True)
class Escalation:
    """Where an overdue task goes: the owner's ``users.escalate_to``, else the address of
    their team (``users.team``), else ``default``; none of them: it does not escalate."""

    default: str | None = None
    teams: Mapping[str, str] = field(default_factory=dict)

    def address(self, escalate_to: str | None, team: str | None) -> str | None:
        if escalate_to:
            return escalate_to
        if team and team in self.teams:
            return self.teams[team]
        return self.default


@dataclass(frozen=True)
class TriggerSet:
    triggers: tuple[Trigger, ...] = ()
    escalation: Escalation = field(default_factory=Escalation)
    fallback_owner: str | None = None
    locale: str = "en"  # the language of titles for owners without a user's locale
    path: str = TRIGGERS_FILE

    def get(self, key: str) -> Trigger:
        for trigger in self.triggers:
            if trigger.key == key:
                return trigger
        raise KeyError(key)


# ---------------------------------------------------------------------------- reading


def load_triggers(path: Path, segments: SegmentSet | None = None) -> TriggerSet:
    """Read and check a triggers file (none there: no triggers); raise :class:`JourneyError`
    with every problem. ``segments``: the tiers and fields ``when:`` rules may name."""
    if not path.exists():
        return TriggerSet(path=str(path))
    try:
        text = read(path)
    except YamlProblem as exc:
        raise JourneyError(
            [Problem(str(path), exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise JourneyError(
            [Problem(str(path), 1, 1, f"cannot read the file: {exc}", "save it as UTF-8")]
        ) from None
    return parse_triggers(text, str(path), segments)


def parse_triggers(
    text: str, path: str = TRIGGERS_FILE, segments: SegmentSet | None = None
) -> TriggerSet:
    """Check the text of a triggers file; raise :class:`JourneyError` with every problem."""
    problems: list[Problem] = []
    try:
        doc = load(text)
    except YamlProblem as exc:
        raise JourneyError(
            [Problem(path, exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    if doc is None:
        return TriggerSet(path=path)
    if not isinstance(doc, Map):
        raise JourneyError(
            [Problem(path, 1, 1, "the triggers file must be a mapping with 'triggers:'")]
        )
    ctx = Context(path, text, segments, None, problems)
    check_keys(ctx, doc, _TOP_KEYS, (), "the triggers file")
    fallback = _address(ctx, doc, "fallback_owner")
    locale = read_str(ctx, doc, "locale") or "en"
    escalation = _escalation(ctx, doc)
    triggers: list[Trigger] = []
    block = doc.get("triggers")
    if "triggers" in doc and not isinstance(block, Map):
        ctx.report(
            doc.at("triggers"),
            f"'triggers' must be a mapping of names to trigger points, not {describe(block)}",
            "e.g. triggers: {detractor: {on: {answer: nps}, title: ...}}",
        )
    elif isinstance(block, Map):
        for key, entry in block.items():
            trigger = _trigger(ctx, block, key, entry)
            if trigger is not None:
                triggers.append(trigger)
    if problems:
        raise JourneyError(sorted(problems, key=lambda p: (p.line, p.col)))
    return TriggerSet(tuple(triggers), escalation, fallback, locale, path)


def _address(ctx: Context, m: Map, key: str) -> str | None:
    value = read_str(ctx, m, key)
    if value is None:
        return None
    if not _ADDRESS_RE.match(value.strip()):
        ctx.report(m.at(key), f"bad address '{value}' in '{key}'", "write name@example.com")
        return None
    return value.strip().lower()


def _escalation(ctx: Context, doc: Map) -> Escalation:
    if "escalation" not in doc:
        return Escalation()
    block = doc["escalation"]
    if not isinstance(block, Map):
        ctx.report(
            doc.at("escalation"),
            f"'escalation' must be a mapping, not {describe(block)}",
            "e.g. escalation: {default: cs-lead@example.com, teams: {enterprise: ...}}",
        )
        return Escalation()
    check_keys(ctx, block, ("default", "teams"), (), "'escalation'")
    default = _address(ctx, block, "default")
    teams: dict[str, str] = {}
    if "teams" in block:
        names = block["teams"]
        if not isinstance(names, Map):
            ctx.report(
                block.at("teams"),
                f"'teams' must map team names to addresses, not {describe(names)}",
                "e.g. teams: {enterprise: enterprise-lead@example.com}",
            )
        else:
            for team in names:
                address = _address(ctx, names, team)
                if address is not None:
                    teams[team] = address
    return Escalation(default, teams)


def _trigger(ctx: Context, block: Map, key: str, entry: object) -> Trigger | None:
    pos = block.key_at(key)
    if not _NAME_RE.match(key):
        ctx.report(
            pos,
            f"bad trigger name '{key}'",
            "use lowercase letters, digits and _, starting with a letter (48 at most)",
        )
        return None
    if not isinstance(entry, Map):
        ctx.report(pos, f"trigger '{key}' must be a mapping with 'on:' and 'title:'")
        return None
    where = f"trigger '{key}'"
    check_keys(ctx, entry, _TRIGGER_KEYS, ("on",), where)
    on = _on(ctx, entry) if "on" in entry else None
    title = read_text(ctx, entry, "title", required=True)
    notes = read_text(ctx, entry, "notes")
    kind = read_choice(ctx, entry, "kind", TASK_KINDS) if "kind" in entry else "call"
    priority = read_choice(ctx, entry, "priority", PRIORITIES) if "priority" in entry else "normal"
    due = _sla(ctx, entry) if "due" in entry else DEFAULT_SLA[priority or "normal"]
    cooldown = read_duration(ctx, entry, "cooldown")
    assignee = _address(ctx, entry, "assignee")
    when, when_expr = _when(ctx, entry)
    if on is None or title is None or kind is None or priority is None or due is None:
        return None
    if ("when" in entry and when is None) or ("assignee" in entry and assignee is None):
        return None
    if "cooldown" in entry and cooldown is None:
        return None
    return Trigger(
        key=key,
        on=on,
        title=title,
        kind=kind,
        priority=priority,
        due=due,
        notes=notes,
        when=when,
        when_expr=when_expr,
        assignee=assignee,
        cooldown=cooldown,
        line=pos.line,
    )


def _on(ctx: Context, entry: Map) -> On | None:
    value = entry["on"]
    hint = (
        "e.g. on: {health: dropped}, {answer: nps}, {usage: active_users, drop: 30%, days: 7}"
        " or {event: usage_dropped}"
    )
    if not isinstance(value, Map) or not value:
        ctx.report(entry.at("on"), f"'on' must be a mapping, not {describe(value)}", hint)
        return None
    kinds = [k for k in value if k in _ON_KEYS]
    if len(kinds) != 1:
        first = next(iter(value))
        if kinds:
            ctx.report(value.key_at(kinds[1]), "'on' takes one of health, answer, usage, event")
        else:
            ctx.report(
                value.key_at(first),
                f"unknown key '{first}' in 'on'",
                suggest(first, _ON_KEYS) or hint,
            )
        return None
    kind = kinds[0]
    check_keys(ctx, value, _ON_KEYS[kind], (), f"'on: {{{kind}: ...}}'")
    if kind == "health":
        band = read_choice(ctx, value, "health", HEALTH_EVENTS)
        return HealthOn(band) if band else None
    if kind == "event":
        name = read_str(
            ctx, value, "event", pattern=EVENT_RE, hint="event names are words like usage_dropped"
        )
        return EventOn(name) if name else None
    if kind == "answer":
        return _answer(ctx, value)
    return _usage(ctx, value)


def _whole(ctx: Context, m: Map, key: str, low: int, high: int) -> int | None:
    value = m[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        ctx.report(m.at(key), f"'{key}' must be a whole number from {low} to {high}")
        return None
    return value


def _answer(ctx: Context, value: Map) -> AnswerOn | None:
    scale = read_choice(ctx, value, "answer", tuple(SCALES))
    if scale is None:
        return None
    low, high, default = SCALES[scale]
    at_most = _whole(ctx, value, "at_most", low, high - 1) if "at_most" in value else default
    return AnswerOn(scale, at_most) if at_most is not None else None


def _usage(ctx: Context, value: Map) -> UsageOn | None:
    metric = read_str(
        ctx,
        value,
        "usage",
        pattern=re.compile(r"^[a-z][a-z0-9_]{0,63}$"),
        hint="name a metric the product posts, e.g. active_users",
    )
    drop: float | None = None
    if "drop" not in value:
        ctx.report(value.pos, "'on: {usage: ...}' needs 'drop'", "e.g. drop: 30%")
    else:
        raw = value["drop"]
        match = _PERCENT.match(raw) if isinstance(raw, str) else None
        if match is None or not 0 < float(match.group(1)) < 100:
            ctx.report(
                value.at("drop"),
                f"'drop' must be a percentage above 0 and below 100, not {describe(raw)}",
                "e.g. drop: 30%",
            )
        else:
            drop = float(match.group(1))
    days = _whole(ctx, value, "days", 1, MAX_USAGE_DAYS) if "days" in value else 7
    at_least: float | None = 1.0
    if "at_least" in value:
        raw = value["at_least"]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
            ctx.report(value.at("at_least"), "'at_least' must be a number above 0")
            at_least = None
        else:
            at_least = float(raw)
    if metric is None or drop is None or days is None or at_least is None:
        return None
    return UsageOn(metric, drop, days, at_least)


def parse_sla(value: object) -> Sla:
    """``4 hours``, ``1 day``, ``2 business days`` (``2営業日``); raise :class:`DurationError`."""
    if isinstance(value, str):
        match = _BUSINESS.match(unicodedata.normalize("NFKC", value))
        if match:
            n = int(match.group(1))
            if not 1 <= n <= 260:
                raise DurationError(f"'{value}': from 1 to 260 business days")
            return Sla(business_days=n)
    try:
        return Sla(parse_duration(value))
    except DurationError as exc:
        raise DurationError(str(exc), f"{DURATION_HINT}, or '2 business days'") from None


def _sla(ctx: Context, entry: Map) -> Sla | None:
    try:
        return parse_sla(entry["due"])
    except DurationError as exc:
        ctx.report(entry.at("due"), f"bad due: {exc}", exc.hint)
        return None


def _when(ctx: Context, entry: Map) -> tuple[str | None, nodes.Expr | None]:
    """The ``when:`` rule over account fields: checked, and checked to have an SQL form."""
    if "when" not in entry:
        return None, None
    tiers = tuple(t.name for t in ctx.segments.tiers) if ctx.segments is not None else None
    scope = Scope(engagement=False, account_journey=True, tiers=tiers)
    pos: Pos = entry.at("when")
    source = read_condition(ctx, entry["when"], pos, scope, "when")
    if source is None:
        return None, None
    expr = expressions.parse(source)
    if ctx.segments is not None:
        try:
            Lowering(ctx.segments).lower(expr)
        except ValueError as exc:
            ctx.report(
                pos,
                f"'when' cannot be turned into SQL: {exc}",
                "compare account fields with values, e.g. tier == 'high_touch'",
            )
            return None, None
    return source, expr


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
