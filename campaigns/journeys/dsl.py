"""The journey DSL: parse a YAML journey file and check its syntax and meaning.

:func:`parse_journey` returns a typed :class:`~campaigns.journeys.model.Journey` or raises
:class:`~campaigns.exceptions.JourneyError` carrying *every* problem, each with its
``path:line:col`` and, where one helps, a hint ("did you mean 'webinar_invite'?").
It never raises anything else, whatever the input. The reference is docs/dsl.md.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from campaigns.exceptions import JourneyError, Problem
from campaigns.journeys import expressions
from campaigns.journeys.hints import locate
from campaigns.journeys.durations import DurationError, parse_duration, parse_offset
from campaigns.journeys.model import (
    Arm,
    BranchStep,
    EmailStep,
    Entry,
    ExitRule,
    ExitStep,
    Goal,
    InAppStep,
    InviteStep,
    Journey,
    ReEntry,
    SendingWindow,
    Step,
    StepConfig,
    StepType,
    SurveyStep,
    TaskStep,
    Trigger,
    UpdateStep,
    Variant,
    WaitStep,
    WaitUntilStep,
    WebhookStep,
)
from campaigns.journeys.segments import SegmentSet
from campaigns.journeys.yamlsource import Map, Pos, Seq, YamlProblem, describe, load, read

ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EVENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
ID_HINT = "use lowercase letters, digits and _, starting with a letter"

TOP_KEYS = (
    "journey", "name", "description", "segments", "audience", "entry", "re_entry",
    "exit_when", "goal", "sending_window", "holdout", "locale", "steps",
)  # fmt: skip
STEP_COMMON = ("id", "channel", "goal", "category", "send_time")
STEP_TYPES = tuple(t.value for t in StepType)
CHANNELS = ("email", "task", "in_app")
STEP_GOALS = ("opened", "clicked", "answered", "rsvp_yes")
SEND_TIMES = ("now", "best_hour")
CATEGORIES = ("newsletter", "product", "renewal", "survey", "event", "onboarding", "transactional")
TASK_KINDS = ("call", "meeting", "email", "review")
WAIT_SIGNALS = ("answered", "opened", "clicked", "task_done", "event")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DATE_FIELDS = ("renewal_date", "contract_start")
SETTABLE = ("health_score", "contact.locale")

# What kind of step a signal or function needs: see expressions.ENGAGEMENT.
_KIND_OF = {"email": "email", "survey": "answer", "invite": "answer", "task": "task"}
_TEMPLATE_ENV = SandboxedEnvironment(autoescape=True)


@dataclass
class _Ctx:
    path: str
    text: str
    segments: SegmentSet | None
    templates: Collection[str] | None
    problems: list[Problem]

    def report(self, pos: Pos, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.path, pos.line, pos.col, message, hint))

    def quote_offset(self, pos: Pos) -> int:
        lines = self.text.splitlines()
        if 0 < pos.line <= len(lines):
            line = lines[pos.line - 1]
            if pos.col - 1 < len(line) and line[pos.col - 1] in "'\"":
                return 1
        return 0


def parse_journey(
    text: str,
    path: str = "<journey>",
    *,
    segments: SegmentSet | None = None,
    templates: Collection[str] | None = None,
) -> Journey:
    """Check ``text`` and build the journey; raise :class:`JourneyError` listing every problem.

    ``segments`` and ``templates`` (names known to exist) enable the cross-checks; pass None
    to skip them.
    """
    ctx = _Ctx(path, text, segments, templates, [])
    journey: Journey | None = None
    try:
        doc = load(text)
    except YamlProblem as exc:
        ctx.report(exc.pos, exc.message, exc.hint)
    else:
        try:
            journey = _journey(doc, ctx)
        except RecursionError:
            ctx.report(Pos(1, 1), "the file is nested too deeply")
    if ctx.problems or journey is None:
        problems = sorted(set(ctx.problems), key=lambda p: (p.line, p.col, p.message))
        raise JourneyError(problems or [Problem(path, 1, 1, "not a journey")])
    return journey


def load_journey(path: Path, **kwargs: Any) -> Journey:
    """Read and check the journey file at ``path`` (see :func:`parse_journey`)."""
    return parse_journey(read_source(path), str(path), **kwargs)


def read_source(path: Path) -> str:
    """The text of the journey file at ``path`` (at most
    :data:`~campaigns.defaults.MAX_SOURCE_BYTES`), or :class:`JourneyError` saying why not."""
    try:
        return read(path)
    except YamlProblem as exc:
        raise JourneyError(
            [Problem(str(path), exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    except FileNotFoundError:
        raise JourneyError([Problem(str(path), 1, 1, "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise JourneyError(
            [
                Problem(
                    str(path), 1, 1, f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8"
                )
            ]
        ) from None
    except OSError as exc:
        raise JourneyError(
            [Problem(str(path), 1, 1, f"cannot read the file: {exc.strerror}")]
        ) from None


def validate_files(
    paths: Iterable[Path],
    *,
    segments: SegmentSet | None = None,
    templates: Collection[str] | None = None,
) -> tuple[list[tuple[Journey, Path]], list[Problem]]:
    """Check many journey files; also that no two files share a journey id."""
    journeys: list[tuple[Journey, Path]] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            journey = load_journey(path, segments=segments, templates=templates)
        except JourneyError as exc:
            problems.extend(exc.problems)
            continue
        if journey.key in seen:
            problems.append(
                Problem(
                    str(path),
                    1,
                    1,
                    f"journey id '{journey.key}' is also used by {seen[journey.key]}",
                    "give each journey its own id",
                )
            )
            continue
        seen[journey.key] = str(path)
        journeys.append((journey, path))
    return journeys, problems


# ---------------------------------------------------------------------------- helpers


def _keys(ctx: _Ctx, m: Map, allowed: Iterable[str], required: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    for key in m:
        if key not in allowed:
            hint = expressions.suggest(key, allowed) or f"allowed here: {', '.join(allowed)}"
            ctx.report(m.key_at(key), f"unknown key '{key}' in {where}", hint)
    for key in required:
        if key not in m:
            ctx.report(m.pos, f"{where} needs '{key}'")


def _str(
    ctx: _Ctx,
    m: Map,
    key: str,
    *,
    required: bool = False,
    pattern: re.Pattern[str] | None = None,
    hint: str | None = None,
) -> str | None:
    if key not in m or m[key] is None:
        if required and key in m:
            ctx.report(m.at(key), f"'{key}' is empty")
        return None
    value = m[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        ctx.report(m.at(key), f"'{key}' must be text, not {describe(value)}")
        return None
    value = str(value)
    if pattern is not None and not pattern.match(value):
        ctx.report(m.at(key), f"bad {key} '{value}'", hint)
        return None
    return value


def _choice(ctx: _Ctx, m: Map, key: str, options: tuple[str, ...]) -> str | None:
    value = _str(ctx, m, key)
    if value is not None and value not in options:
        ctx.report(
            m.at(key),
            f"unknown {key} '{value}'",
            expressions.suggest(value, options) or f"one of: {', '.join(options)}",
        )
        return None
    return value


def _duration(ctx: _Ctx, m: Map, key: str) -> timedelta | None:
    if key not in m:
        return None
    try:
        return parse_duration(m[key])
    except DurationError as exc:
        ctx.report(m.at(key), f"bad {key}: {exc}", exc.hint)
        return None


def _template_text(ctx: _Ctx, value: Any, pos: Pos, key: str) -> bool:
    """Check that a text value compiles as a Jinja template; report at its place if not."""
    try:
        _TEMPLATE_ENV.parse(value)
    except TemplateSyntaxError as exc:
        ctx.report(
            Pos(pos.line + (exc.lineno or 1) - 1, pos.col),
            f"bad template in '{key}': {exc.message}",
            "check the {{ }} and {% %} pairs",
        )
        return False
    return True


def _text(ctx: _Ctx, m: Map, key: str, *, required: bool = False) -> str | dict[str, str] | None:
    """A text that may be one string or a per-locale mapping; each must be a valid template."""
    if key not in m:
        if required:
            ctx.report(
                m.pos, f"missing '{key}'", f'add {key}: "..." or {key}: {{en: "...", ja: "..."}}'
            )
        return None
    value = m[key]
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if not text.strip():
            ctx.report(m.at(key), f"'{key}' is empty")
            return None
        _template_text(ctx, text, m.at(key), key)
        return text
    if isinstance(value, Map):
        result: dict[str, str] = {}
        if not value:
            ctx.report(m.at(key), f"'{key}' has no text", 'e.g. {en: "...", ja: "..."}')
        for locale, item in value.items():
            if not LOCALE_RE.match(locale):
                ctx.report(
                    value.key_at(locale),
                    f"'{locale}' is not a locale",
                    "use a language code such as en or ja",
                )
                continue
            if (
                not isinstance(item, str | int | float)
                or isinstance(item, bool)
                or not str(item).strip()
            ):
                ctx.report(value.at(locale), f"the {locale} text of '{key}' must be non-empty text")
                continue
            if _template_text(ctx, str(item), value.at(locale), key):
                result[locale] = str(item)
        return result or None
    ctx.report(
        m.at(key), f"'{key}' must be text or a mapping of locale to text, not {describe(value)}"
    )
    return None


def _template(ctx: _Ctx, m: Map, key: str = "template", *, required: bool = True) -> str | None:
    name = _str(ctx, m, key)
    if name is None:
        if required and key not in m:
            ctx.report(
                m.pos,
                f"missing '{key}'",
                "name a template in templates/<locale>/, e.g. template: renewal_reminder",
            )
        return None
    if ctx.templates is not None and name not in ctx.templates:
        ctx.report(
            m.at(key),
            f"unknown template '{name}'",
            expressions.suggest(name, ctx.templates)
            or "templates live in templates/<locale>/<name>.mjml",
        )
    return name


def _condition(ctx: _Ctx, source: Any, pos: Pos, scope: expressions.Scope, key: str) -> str | None:
    if source is True:
        return "true"
    if not isinstance(source, str) or not source.strip():
        ctx.report(pos, f"'{key}' must be a condition, e.g. answer('ask_nps') <= 6")
        return None
    offset = ctx.quote_offset(pos)
    try:
        expr = expressions.parse(source)
    except TemplateSyntaxError as exc:
        ctx.report(
            Pos(pos.line + (exc.lineno or 1) - 1, pos.col + offset),
            f"cannot read the condition: {exc.message}",
            "see docs/dsl.md#conditions",
        )
        return None
    found = expressions.check(expr, scope)
    for problem in found:
        line, col = locate(source, problem.needle)
        ctx.report(
            Pos(pos.line + line, pos.col + offset + col if line == 0 else col + 1),
            problem.message,
            problem.hint,
        )
    return None if found else source


def _url(ctx: _Ctx, m: Map, key: str, *, required: bool = False) -> str | None:
    value = _str(ctx, m, key)
    if value is None:
        if required and key not in m:
            ctx.report(m.pos, f"missing '{key}'")
        return None
    if "{{" in value:
        return value if _template_text(ctx, value, m.at(key), key) else None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        ctx.report(m.at(key), f"bad URL '{value}'", "write a full address starting with https://")
        return None
    return value


def _event_name(ctx: _Ctx, m: Map, key: str) -> str | None:
    return _str(
        ctx, m, key, pattern=EVENT_RE, hint="event names are words like usage_dropped or renewed"
    )


# ---------------------------------------------------------------------------- journey


def _journey(doc: Any, ctx: _Ctx) -> Journey | None:
    if not isinstance(doc, Map):
        ctx.report(
            getattr(doc, "pos", Pos(1, 1)),
            "a journey file is a mapping: journey, name, segments, entry, steps...",
            "see docs/dsl.md",
        )
        return None
    _keys(ctx, doc, TOP_KEYS, (), "the journey")
    for required in ("journey", "name", "segments", "entry", "steps"):
        if required not in doc:
            ctx.report(
                Pos(1, 1), f"the journey needs '{required}'", "see docs/dsl.md#top-level-keys"
            )
    key = _str(ctx, doc, "journey", pattern=ID_RE, hint=ID_HINT)
    name = _str(ctx, doc, "name")
    description = _str(ctx, doc, "description")
    segments = _segment_list(ctx, doc)
    locale = (
        _str(ctx, doc, "locale", pattern=LOCALE_RE, hint="a language code such as en or ja") or "en"
    )
    entry = _entry(ctx, doc["entry"], doc.at("entry")) if "entry" in doc else None
    re_entry = _re_entry(ctx, doc)
    top_scope = expressions.Scope(engagement=True, steps={}, tiers=_tiers(ctx))
    # The audience is compiled to SQL with the segment rules at enrolment: fields only.
    audience_scope = expressions.Scope(engagement=False, tiers=top_scope.tiers)
    audience = (
        _condition(ctx, doc["audience"], doc.at("audience"), audience_scope, "audience")
        if "audience" in doc
        else None
    )
    exit_when = _exit_rules(ctx, doc, top_scope)
    goal = _goal(ctx, doc)
    window = (
        _window(ctx, doc["sending_window"], doc.at("sending_window"))
        if "sending_window" in doc
        else None
    )
    holdout = _holdout(ctx, doc)
    steps = _steps(ctx, doc, top_scope) if "steps" in doc else ()
    if ctx.problems or None in (key, name, entry) or not steps:
        return None
    assert key is not None and name is not None and entry is not None
    return Journey(
        key=key, name=name, segments=tuple(segments), entry=entry, steps=steps, description=description,
        audience=audience, re_entry=re_entry, exit_when=exit_when, goal=goal, sending_window=window,
        holdout=holdout, locale=locale,
    )  # fmt: skip


def _tiers(ctx: _Ctx) -> tuple[str, ...] | None:
    return tuple(t.name for t in ctx.segments.tiers) if ctx.segments else None


def _no_steps(scope: expressions.Scope) -> expressions.Scope:
    return expressions.Scope(engagement=True, steps={}, tiers=scope.tiers)


def _segment_list(ctx: _Ctx, doc: Map) -> list[str]:
    if "segments" not in doc:
        return []
    value = doc["segments"]
    if isinstance(value, str):
        value, positions = [value], [doc.at("segments")]
    elif isinstance(value, Seq):
        positions = value.item_pos
    else:
        ctx.report(
            doc.at("segments"),
            "'segments' must be a list of segment names",
            "e.g. segments: [low_touch]",
        )
        return []
    if not value:
        ctx.report(
            doc.at("segments"),
            "'segments' is empty",
            "name at least one segment or tier from segments.yaml",
        )
    names: list[str] = []
    for item, pos in zip(value, positions, strict=True):
        if not isinstance(item, str):
            ctx.report(pos, f"a segment name must be text, not {describe(item)}")
            continue
        if ctx.segments is not None and item not in ctx.segments:
            ctx.report(
                pos,
                f"unknown segment '{item}'",
                expressions.suggest(item, ctx.segments.names)
                or f"defined: {', '.join(ctx.segments.names)}",
            )
        names.append(item)
    return names


def _entry(ctx: _Ctx, value: Any, pos: Pos) -> Entry | None:
    if not isinstance(value, Map):
        ctx.report(pos, "'entry' must be a mapping", "e.g. entry: {trigger: segment}")
        return None
    trigger = _choice(ctx, value, "trigger", tuple(t.value for t in Trigger))
    if "trigger" not in value:
        ctx.report(value.pos, "'entry' needs a 'trigger'", "trigger: segment, event or date")
        return None
    if trigger == Trigger.SEGMENT:
        _keys(ctx, value, ("trigger",), (), "a segment entry")
        return Entry(Trigger.SEGMENT)
    if trigger == Trigger.EVENT:
        _keys(ctx, value, ("trigger", "event"), ("event",), "an event entry")
        event = _event_name(ctx, value, "event")
        return Entry(Trigger.EVENT, event=event) if event else None
    if trigger == Trigger.DATE:
        _keys(ctx, value, ("trigger", "field", "offset"), ("field", "offset"), "a date entry")
        field = _str(ctx, value, "field")
        if (
            field is not None
            and field not in DATE_FIELDS
            and not re.match(r"^attributes\.[A-Za-z_][\w]*$", field)
        ):
            ctx.report(
                value.at("field"),
                f"'{field}' is not a date field",
                expressions.suggest(field, DATE_FIELDS)
                or f"use {' or '.join(DATE_FIELDS)} or attributes.<name>",
            )
            field = None
        offset = None
        if "offset" in value:
            try:
                offset = parse_offset(value["offset"])
            except DurationError as exc:
                ctx.report(value.at("offset"), f"bad offset: {exc}", exc.hint)
        return (
            Entry(Trigger.DATE, field=field, offset=offset)
            if field and offset is not None
            else None
        )
    return None


def _re_entry(ctx: _Ctx, doc: Map) -> ReEntry:
    if "re_entry" not in doc:
        return ReEntry()
    value = doc["re_entry"]
    if value in ("never", "always"):
        return ReEntry(value)
    if isinstance(value, str) and value.startswith("after "):
        try:
            return ReEntry("after", parse_duration(value[6:]))
        except DurationError as exc:
            ctx.report(doc.at("re_entry"), f"bad re_entry: {exc}", exc.hint)
            return ReEntry()
    if isinstance(value, Map) and set(value) == {"after"}:
        after = _duration(ctx, value, "after")
        return ReEntry("after", after) if after else ReEntry()
    hint = expressions.suggest(value, ("never", "always")) if isinstance(value, str) else None
    ctx.report(
        doc.at("re_entry"),
        f"bad re_entry {value!r}",
        hint or "use never, always, or 'after 90 days'",
    )
    return ReEntry()


def _exit_rules(ctx: _Ctx, doc: Map, scope: expressions.Scope) -> tuple[ExitRule, ...]:
    if "exit_when" not in doc:
        return ()
    value = doc["exit_when"]
    if not isinstance(value, Seq):
        ctx.report(
            doc.at("exit_when"), "'exit_when' must be a list", "e.g. exit_when: [{event: churned}]"
        )
        return ()
    rules: list[ExitRule] = []
    for item, pos in zip(value, value.item_pos, strict=True):
        if not isinstance(item, Map) or len(item) != 1:
            ctx.report(
                pos,
                "each exit rule has one key: event, condition or unsubscribed",
                "e.g. - event: churned",
            )
            continue
        _keys(ctx, item, ("event", "condition", "unsubscribed"), (), "an exit rule")
        if "event" in item:
            event = _event_name(ctx, item, "event")
            if event:
                rules.append(ExitRule(event=event))
        elif "condition" in item:
            cond = _condition(
                ctx, item["condition"], item.at("condition"), _no_steps(scope), "condition"
            )
            if cond:
                rules.append(ExitRule(condition=cond))
        elif "unsubscribed" in item:
            if item["unsubscribed"] is not True:
                ctx.report(item.at("unsubscribed"), "write 'unsubscribed: true'")
            rules.append(ExitRule(unsubscribed=True))
    return tuple(rules)


def _goal(ctx: _Ctx, doc: Map) -> Goal | None:
    if "goal" not in doc:
        return None
    value = doc["goal"]
    if not isinstance(value, Map):
        ctx.report(
            doc.at("goal"),
            "'goal' must be a mapping",
            "e.g. goal: {event: renewed, within: 120 days}",
        )
        return None
    _keys(ctx, value, ("event", "within"), ("event",), "the goal")
    event = _event_name(ctx, value, "event")
    within = _duration(ctx, value, "within")
    return Goal(event, within) if event else None


def _hhmm(text: str) -> time | None:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match.group(1)) > 24 or int(match.group(2)) > 59:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour == 24:
        return time(23, 59, 59) if minute == 0 else None
    return time(hour, minute)


def _window(ctx: _Ctx, value: Any, pos: Pos) -> SendingWindow | None:
    if not isinstance(value, Map):
        ctx.report(
            pos, "'sending_window' must be a mapping", 'e.g. {days: weekdays, hours: "09:00-18:00"}'
        )
        return None
    _keys(ctx, value, ("days", "hours", "time_zone"), (), "the sending window")
    days: tuple[int, ...] = tuple(range(7))
    raw_days = value.get("days", "everyday")
    if raw_days == "weekdays":
        days = tuple(range(5))
    elif raw_days == "everyday":
        pass
    elif isinstance(raw_days, Seq) and raw_days:
        picked: list[int] = []
        for item, item_pos in zip(raw_days, raw_days.item_pos, strict=True):
            name = str(item).lower()[:3] if isinstance(item, str) else ""
            if name not in DAY_NAMES:
                ctx.report(
                    item_pos,
                    f"unknown day {item!r}",
                    expressions.suggest(str(item).lower(), DAY_NAMES)
                    or f"days: {', '.join(DAY_NAMES)}",
                )
            else:
                picked.append(DAY_NAMES.index(name))
        days = tuple(sorted(set(picked)))
    else:
        ctx.report(
            value.at("days"),
            f"bad days {raw_days!r}",
            "use weekdays, everyday, or a list such as [mon, wed, fri]",
        )
    start, end = time(0, 0), time(23, 59, 59)
    if "hours" in value:
        raw = value["hours"]
        parts = raw.split("-") if isinstance(raw, str) else []
        times = [_hhmm(p) for p in parts] if len(parts) == 2 else []
        if len(times) != 2 or None in times:
            ctx.report(
                value.at("hours"),
                f"bad hours {raw!r}",
                'write "HH:MM-HH:MM", e.g. "09:00-18:00" (quoted)',
            )
        elif times[0] >= times[1]:  # type: ignore[operator]
            ctx.report(
                value.at("hours"),
                f"the window {raw!r} ends before it starts",
                'windows cannot cross midnight; use e.g. "09:00-18:00"',
            )
        else:
            start, end = times[0], times[1]  # type: ignore[assignment]
    zone = "contact"
    if "time_zone" in value:
        zone = str(value["time_zone"])
        if zone != "contact":
            try:
                zoneinfo.ZoneInfo(zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                known = {
                    "tokyo": "Asia/Tokyo",
                    "japan": "Asia/Tokyo",
                    "jst": "Asia/Tokyo",
                    "utc": "UTC",
                }
                hint = (
                    f"did you mean '{known[zone.lower()]}'?"
                    if zone.lower() in known
                    else "use 'contact' or an IANA name such as Asia/Tokyo"
                )
                ctx.report(value.at("time_zone"), f"unknown time zone '{zone}'", hint)
    return SendingWindow(days, start, end, zone)


def _holdout(ctx: _Ctx, doc: Map) -> float:
    if "holdout" not in doc:
        return 0.0
    raw = doc["holdout"]
    text = raw.strip().rstrip("%") if isinstance(raw, str) else raw
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = -1.0
    if isinstance(raw, bool) or not 0 <= value <= 50:
        ctx.report(
            doc.at("holdout"),
            f"bad holdout {raw!r}",
            "a percentage from 0 to 50, e.g. holdout: 10%",
        )
        return 0.0
    return value / 100


# ---------------------------------------------------------------------------- steps


@dataclass
class _RawStep:
    id: str
    pos: Pos
    m: Map
    types: list[str]


def _steps(ctx: _Ctx, doc: Map, top_scope: expressions.Scope) -> tuple[Step, ...]:
    value = doc["steps"]
    if not isinstance(value, Seq) or not value:
        ctx.report(
            doc.at("steps"),
            "'steps' must be a non-empty list",
            "e.g. steps: [{id: welcome, email: {...}}]",
        )
        return ()
    raw: list[_RawStep] = []
    ids: dict[str, Pos] = {}
    for index, (item, pos) in enumerate(zip(value, value.item_pos, strict=True)):
        if not isinstance(item, Map):
            ctx.report(
                pos,
                f"step {index + 1} must be a mapping with 'id' and a step type",
                f"step types: {', '.join(STEP_TYPES)}",
            )
            continue
        step_id = _str(ctx, item, "id", pattern=ID_RE, hint=ID_HINT)
        if "id" not in item:
            ctx.report(
                pos, f"step {index + 1} has no 'id'", "give every step an id, e.g. id: welcome"
            )
        if step_id is None:
            step_id = f"#{index + 1}"
        elif step_id in ids:
            ctx.report(
                item.at("id"),
                f"duplicate step id '{step_id}'",
                f"already used at line {ids[step_id].line}",
            )
            step_id = f"#{index + 1}"
        else:
            ids[step_id] = item.at("id")
        types = [k for k in item if k in STEP_TYPES]
        for key in item:
            if key not in STEP_TYPES and key not in STEP_COMMON:
                hint = (
                    expressions.suggest(key, (*STEP_TYPES, *STEP_COMMON))
                    or f"step types: {', '.join(STEP_TYPES)}"
                )
                ctx.report(item.key_at(key), f"unknown key '{key}' in step '{step_id}'", hint)
        if not types and not any(
            expressions.suggest(k, STEP_TYPES) for k in item if k not in STEP_COMMON
        ):
            ctx.report(
                pos, f"step '{step_id}' has no step type", f"add one of: {', '.join(STEP_TYPES)}"
            )
        raw.append(_RawStep(step_id, pos, item, types))
    order = [r.id for r in raw]
    kinds: dict[str, str] = {}
    steps: list[Step] = []
    for index, r in enumerate(raw):
        later = frozenset(order[index + 1 :])
        scope = expressions.Scope(
            engagement=True, steps=dict(kinds), later_steps=later, tiers=top_scope.tiers
        )
        step = _step(ctx, r, scope, order, index)
        kinds[r.id] = _step_kind(r.types)
        if step is not None:
            steps.append(step)
    if not ctx.problems:
        _check_reachable(ctx, raw, steps)
    return tuple(steps)


def _step_kind(types: list[str]) -> str:
    for t in types:
        if t in ("survey", "invite"):
            return "answer"
    for t in types:
        if t in _KIND_OF:
            return _KIND_OF[t]
    return types[0] if types else "unknown"


def _channels(ctx: _Ctx, r: _RawStep) -> tuple[str, ...]:
    value = r.m["channel"]
    pos = r.m.at("channel")
    names: list[str] = []
    if isinstance(value, str):
        match = re.fullmatch(r"\s*best_of\s*\[([^\]]*)\]\s*", value)
        if not match:
            ctx.report(pos, f"bad channel '{value}'", "write channel: best_of [email, task]")
            return ()
        names = [n.strip() for n in match.group(1).split(",") if n.strip()]
    elif isinstance(value, Map) and set(value) == {"best_of"} and isinstance(value["best_of"], Seq):
        names = [str(n) for n in value["best_of"]]
    else:
        ctx.report(pos, "bad channel", "write channel: best_of [email, task]")
        return ()
    if len(names) < 2 or len(set(names)) != len(names):
        ctx.report(
            pos, "best_of needs two or more different channels", "e.g. best_of [email, task]"
        )
    for name in names:
        if name not in CHANNELS:
            ctx.report(
                pos,
                f"unknown channel '{name}'",
                expressions.suggest(name, CHANNELS) or f"channels: {', '.join(CHANNELS)}",
            )
        elif name not in r.types:
            ctx.report(
                pos,
                f"best_of names '{name}' but step '{r.id}' has no '{name}:' block",
                f"add a '{name}:' block to the step",
            )
    for t in r.types:
        if t not in names:
            ctx.report(
                r.m.key_at(t),
                f"step '{r.id}' has a '{t}:' block that best_of does not name",
                f"add {t} to best_of, or remove the block",
            )
    return tuple(names)


_BUILDERS: dict[
    str, Callable[[_Ctx, Any, Pos, _RawStep, expressions.Scope, list[str], int], StepConfig | None]
] = {}


def _builder(
    name: str,
) -> Callable[[Callable[..., StepConfig | None]], Callable[..., StepConfig | None]]:
    def register(fn: Callable[..., StepConfig | None]) -> Callable[..., StepConfig | None]:
        _BUILDERS[name] = fn
        return fn

    return register


def _step(
    ctx: _Ctx, r: _RawStep, scope: expressions.Scope, order: list[str], index: int
) -> Step | None:
    best_of: tuple[str, ...] = ()
    if "channel" in r.m:
        best_of = _channels(ctx, r)
    elif len(r.types) > 1:
        ctx.report(
            r.m.key_at(r.types[1]),
            f"step '{r.id}' has more than one step type ({', '.join(r.types)})",
            "split it into steps, or use channel: best_of [...] to let the engine choose",
        )
    if not r.types:
        return None
    blocks: dict[str, StepConfig] = {}
    for t in r.types:
        config = _BUILDERS[t](ctx, r.m[t], r.m.at(t), r, scope, order, index)
        if config is not None:
            blocks[t] = config
    goal = _choice(ctx, r.m, "goal", STEP_GOALS)
    if goal == "answered" and not {"survey", "invite"} & set(r.types):
        ctx.report(r.m.at("goal"), "goal 'answered' needs a survey or invite step")
    if goal == "rsvp_yes" and "invite" not in r.types:
        ctx.report(r.m.at("goal"), "goal 'rsvp_yes' needs an invite step")
    if goal in ("opened", "clicked") and not {"email", "survey", "invite"} & set(r.types):
        ctx.report(r.m.at("goal"), f"goal '{goal}' needs a step that sends an email")
    category = _choice(ctx, r.m, "category", CATEGORIES)
    send_time = _send_time(ctx, r)
    if len(blocks) != len(r.types) or not set(best_of) <= set(blocks):
        return None
    step_type = StepType(best_of[0] if best_of else r.types[0])
    return Step(r.id, step_type, blocks, r.pos.line, best_of, goal, category, send_time)


def _send_time(ctx: _Ctx, r: _RawStep) -> str | None:
    """``send_time: best_hour`` (or ``now``, the default) on a step that sends an email."""
    if "send_time" not in r.m:
        return None
    if r.m["send_time"] is None:
        ctx.report(
            r.m.at("send_time"),
            "'send_time' is empty",
            "write send_time: best_hour, or leave it out to send as soon as the window allows",
        )
        return None
    chosen = _choice(ctx, r.m, "send_time", SEND_TIMES)
    if chosen == "best_hour" and not {"email", "survey", "invite"} & set(r.types):
        ctx.report(
            r.m.at("send_time"),
            "send_time 'best_hour' needs a step that sends an email",
            "it times email, survey and invite steps; remove it here",
        )
        return None
    return None if chosen == "now" else chosen


def _block(ctx: _Ctx, value: Any, pos: Pos, name: str, step_id: str) -> Map | None:
    if not isinstance(value, Map):
        ctx.report(
            pos,
            f"'{name}' in step '{step_id}' must be a mapping of options",
            "see docs/dsl.md#steps",
        )
        return None
    return value


def _step_ref(
    ctx: _Ctx, m: Map, key: str, r: _RawStep, scope: expressions.Scope, needed: str
) -> str | None:
    target = _str(ctx, m, key)
    if target is None:
        return None
    if target in scope.steps:
        actual = scope.steps[target]
        if needed != actual and not (needed == "email" and actual == "answer"):
            ctx.report(
                m.at(key),
                f"'{key}: {target}' needs {_KIND_TEXT[needed]}, but '{target}' is not one",
            )
            return None
        return target
    if target == r.id:
        ctx.report(m.at(key), f"step '{r.id}' waits for itself", "name an earlier step")
    elif target in scope.later_steps:
        ctx.report(
            m.at(key),
            f"'{target}' runs later than step '{r.id}'",
            "wait for a step that comes before",
        )
    else:
        ctx.report(
            m.at(key),
            f"no step '{target}'",
            expressions.suggest(target, [*scope.steps, *scope.later_steps]),
        )
    return None


_KIND_TEXT = {
    "email": "an email, survey or invite step",
    "answer": "a survey or invite step",
    "task": "a task step",
}


@_builder("email")
def _email(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> EmailStep | None:
    m = _block(ctx, value, pos, "email", r.id)
    if m is None:
        return None
    _keys(
        ctx,
        m,
        ("template", "subject", "preheader", "variants", "from_name", "reply_to"),
        (),
        f"the email of step '{r.id}'",
    )
    template = _template(ctx, m)
    subject = _text(ctx, m, "subject", required=True)
    preheader = _text(ctx, m, "preheader")
    variants = _variants(ctx, m, r)
    from_name = _str(ctx, m, "from_name")
    reply_to = _str(
        ctx,
        m,
        "reply_to",
        pattern=re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
        hint="an email address",
    )
    if template is None or subject is None:
        return None
    return EmailStep(template, subject, preheader, variants, from_name, reply_to)


def _variants(ctx: _Ctx, m: Map, r: _RawStep) -> tuple[Variant, ...]:
    if "variants" not in m:
        return ()
    value = m["variants"]
    if not isinstance(value, Seq) or len(value) < 2:
        ctx.report(
            m.at("variants"),
            "'variants' must be a list of two or more variants",
            "each with an id and a subject or template",
        )
        return ()
    out: list[Variant] = []
    seen: set[str] = set()
    for item, pos in zip(value, value.item_pos, strict=True):
        if not isinstance(item, Map):
            ctx.report(
                pos, "a variant must be a mapping with an id", "e.g. - {id: short, subject: ...}"
            )
            continue
        _keys(ctx, item, ("id", "template", "subject", "preheader"), ("id",), "a variant")
        vid = _str(ctx, item, "id", pattern=ID_RE, hint=ID_HINT)
        if vid in seen:
            ctx.report(item.at("id"), f"duplicate variant id '{vid}'")
            continue
        if len(item) == 1 and vid:
            ctx.report(
                item.pos,
                f"variant '{vid}' changes nothing",
                "give it a subject, template or preheader",
            )
        template = _template(ctx, item, required=False)
        subject = _text(ctx, item, "subject")
        preheader = _text(ctx, item, "preheader")
        if vid:
            seen.add(vid)
            out.append(Variant(vid, template, subject, preheader))
    return tuple(out)


@_builder("wait")
def _wait(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> WaitStep | None:
    holder = Map({"wait": value})
    holder.pos, holder.key_pos, holder.value_pos = pos, {"wait": pos}, {"wait": pos}
    duration = _duration(ctx, holder, "wait")
    return WaitStep(duration) if duration else None


@_builder("wait_until")
def _wait_until(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> WaitUntilStep | None:
    m = _block(ctx, value, pos, "wait_until", r.id)
    if m is None:
        return None
    _keys(ctx, m, (*WAIT_SIGNALS, "timeout"), ("timeout",), f"the wait_until of step '{r.id}'")
    signals = [k for k in m if k in WAIT_SIGNALS]
    if len(signals) != 1:
        ctx.report(
            m.pos,
            f"wait_until needs exactly one of: {', '.join(WAIT_SIGNALS)}",
            "e.g. answered: ask_nps",
        )
        return None
    signal = signals[0]
    timeout = _duration(ctx, m, "timeout")
    if signal == "event":
        target = _event_name(ctx, m, "event")
    else:
        needed = {"answered": "answer", "opened": "email", "clicked": "email", "task_done": "task"}[
            signal
        ]
        target = _step_ref(ctx, m, signal, r, scope, needed)
    if target is None or timeout is None:
        return None
    return WaitUntilStep(signal, target, timeout)


@_builder("branch")
def _branch(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> BranchStep | None:
    if not isinstance(value, Seq) or not value:
        ctx.report(
            pos,
            f"'branch' in step '{r.id}' must be a list of arms",
            "e.g. - {when: clicked('welcome'), goto: tips}",
        )
        return None
    arms: list[Arm] = []
    otherwise: str | None = None
    ok = True
    for n, (item, item_pos) in enumerate(zip(value, value.item_pos, strict=True)):
        if not isinstance(item, Map):
            ctx.report(
                item_pos,
                "a branch arm is a mapping: when + goto, or else",
                "e.g. - when: opened('welcome')",
            )
            ok = False
            continue
        if "else" in item:
            _keys(ctx, item, ("else",), (), "an else arm")
            if n != len(value) - 1:
                ctx.report(item.key_at("else"), "'else' must be the last arm", "move it to the end")
            otherwise = _goto(ctx, item, "else", r, order, index)
            ok = ok and otherwise is not None
            continue
        _keys(ctx, item, ("when", "goto"), ("when", "goto"), "a branch arm")
        cond = (
            _condition(ctx, item.get("when"), item.at("when"), scope, "when")
            if "when" in item
            else None
        )
        goto = _goto(ctx, item, "goto", r, order, index) if "goto" in item else None
        if cond is None or goto is None:
            ok = False
            continue
        arms.append(Arm(cond, goto))
    if ok and not arms and otherwise is None:
        ctx.report(
            pos,
            f"branch '{r.id}' has no arm",
            "add '- when: ...' with a goto, or '- else: <step>' to jump",
        )
        return None
    return BranchStep(tuple(arms), otherwise) if ok else None


def _goto(ctx: _Ctx, m: Map, key: str, r: _RawStep, order: list[str], index: int) -> str | None:
    target = _str(ctx, m, key)
    if target is None:
        return None
    if target not in order:
        ctx.report(m.at(key), f"no step '{target}' to go to", expressions.suggest(target, order))
        return None
    if order.index(target) <= index:
        ctx.report(
            m.at(key),
            f"'{key}: {target}' jumps back",
            "journeys run forward only: a goto names a later step; use re_entry to repeat",
        )
        return None
    return target


@_builder("survey")
def _survey(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> SurveyStep | None:
    m = _block(ctx, value, pos, "survey", r.id)
    if m is None:
        return None
    _keys(
        ctx,
        m,
        ("scale", "template", "subject", "question"),
        ("scale",),
        f"the survey of step '{r.id}'",
    )
    scale = _choice(ctx, m, "scale", ("nps", "csat"))
    template = _template(ctx, m)
    subject = _text(ctx, m, "subject", required=True)
    question = _text(ctx, m, "question")
    if None in (scale, template, subject):
        return None
    return SurveyStep(scale, template, subject, question)  # type: ignore[arg-type]


@_builder("invite")
def _invite(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> InviteStep | None:
    m = _block(ctx, value, pos, "invite", r.id)
    if m is None:
        return None
    _keys(
        ctx,
        m,
        ("event_name", "starts_at", "duration", "url", "template", "subject"),
        ("starts_at",),
        f"the invite of step '{r.id}'",
    )
    event_name = _text(ctx, m, "event_name", required=True)
    starts_at = None
    if "starts_at" in m:
        raw = m["starts_at"]
        if isinstance(raw, str):
            try:
                raw = datetime.fromisoformat(raw)
            except ValueError:
                raw = None
        if not isinstance(raw, datetime):
            ctx.report(
                m.at("starts_at"),
                f"bad starts_at {m['starts_at']!r}",
                "write an ISO date and time with its offset, e.g. 2027-01-20T16:00:00+09:00",
            )
        elif raw.tzinfo is None:
            ctx.report(
                m.at("starts_at"),
                "starts_at has no time zone offset",
                "add one, e.g. +09:00 for Japan or Z for UTC",
            )
        else:
            starts_at = raw
    duration = _duration(ctx, m, "duration")
    url = _url(ctx, m, "url")
    template = _template(ctx, m)
    subject = _text(ctx, m, "subject", required=True)
    if None in (event_name, starts_at, template, subject):
        return None
    return InviteStep(event_name, starts_at, template, subject, duration, url)  # type: ignore[arg-type]


@_builder("task")
def _task(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> TaskStep | None:
    m = _block(ctx, value, pos, "task", r.id)
    if m is None:
        return None
    _keys(ctx, m, ("kind", "title", "notes", "due", "assignee"), (), f"the task of step '{r.id}'")
    kind = _choice(ctx, m, "kind", TASK_KINDS) if "kind" in m else "call"
    title = _text(ctx, m, "title", required=True)
    notes = _text(ctx, m, "notes")
    due = _duration(ctx, m, "due") if "due" in m else timedelta(days=3)
    assignee = _str(ctx, m, "assignee") or "owner"
    if assignee != "owner" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", assignee):
        ctx.report(
            m.at("assignee"),
            f"bad assignee '{assignee}'",
            "use 'owner' (the account's CSM) or an email address",
        )
        return None
    if None in (kind, title, due):
        return None
    return TaskStep(title, kind, due, assignee, notes)  # type: ignore[arg-type]


@_builder("in_app")
def _in_app(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> InAppStep | None:
    m = _block(ctx, value, pos, "in_app", r.id)
    if m is None:
        return None
    _keys(ctx, m, ("title", "body", "url", "expires"), (), f"the in_app message of step '{r.id}'")
    title = _text(ctx, m, "title", required=True)
    body = _text(ctx, m, "body", required=True)
    url = _url(ctx, m, "url")
    expires = _duration(ctx, m, "expires")
    if title is None or body is None:
        return None
    return InAppStep(title, body, url, expires)


@_builder("webhook")
def _webhook(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> WebhookStep | None:
    m = _block(ctx, value, pos, "webhook", r.id)
    if m is None:
        return None
    _keys(ctx, m, ("url", "payload"), ("url",), f"the webhook of step '{r.id}'")
    url = _url(ctx, m, "url", required=True)
    payload = m.get("payload", {})
    if not isinstance(payload, Map):
        ctx.report(m.at("payload"), "'payload' must be a mapping (it is sent as a JSON object)")
        return None
    for key in payload:
        item = payload[key]
        if isinstance(item, str):
            _template_text(ctx, item, payload.at(key), key)
    return WebhookStep(url, _plain(payload)) if url else None


@_builder("update")
def _update(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> UpdateStep | None:
    m = _block(ctx, value, pos, "update", r.id)
    if m is None:
        return None
    _keys(ctx, m, ("set", "add_tags", "remove_tags"), (), f"the update of step '{r.id}'")
    if not m:
        ctx.report(pos, f"update '{r.id}' changes nothing", "add set:, add_tags: or remove_tags:")
    sets: dict[str, Any] = {}
    if "set" in m:
        block = m["set"]
        if not isinstance(block, Map):
            ctx.report(m.at("set"), "'set' must be a mapping of field to value")
        else:
            for key in block:
                if not (
                    key in SETTABLE
                    or re.fullmatch(r"(contact\.)?attributes\.[A-Za-z_]\w{0,63}", key)
                ):
                    ctx.report(
                        block.key_at(key),
                        f"'{key}' cannot be set",
                        expressions.suggest(key, SETTABLE)
                        or "settable: attributes.<name>, contact.attributes.<name>, health_score, contact.locale",
                    )
                    continue
                if isinstance(block[key], str):
                    _template_text(ctx, block[key], block.at(key), key)
                sets[key] = _plain(block[key])
    tags: dict[str, tuple[str, ...]] = {}
    for key in ("add_tags", "remove_tags"):
        raw = m.get(key, [])
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(
            isinstance(t, str) and re.fullmatch(r"[\w.:-]{1,64}", t) for t in raw
        ):
            ctx.report(m.at(key), f"'{key}' must be a list of tags (words without spaces)")
            raw = []
        tags[key] = tuple(raw)
    return UpdateStep(sets, tags["add_tags"], tags["remove_tags"])


@_builder("exit")
def _exit(
    ctx: _Ctx,
    value: Any,
    pos: Pos,
    r: _RawStep,
    scope: expressions.Scope,
    order: list[str],
    index: int,
) -> ExitStep | None:
    if value is None or value == {}:
        return ExitStep()
    if not isinstance(value, str) or not re.fullmatch(r"[\w -]{1,64}", value):
        ctx.report(pos, "exit takes a short reason", "e.g. exit: completed")
        return None
    return ExitStep(value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _check_reachable(ctx: _Ctx, raw: list[_RawStep], steps: list[Step]) -> None:
    """Every step must be reachable from the first, following order, gotos and exits."""
    if len(steps) != len(raw):
        return
    index = {s.id: i for i, s in enumerate(steps)}
    reached = {0}
    stack = [0]
    while stack:
        i = stack.pop()
        step = steps[i]
        nexts: list[int] = []
        config = step.config
        if isinstance(config, ExitStep):
            pass
        elif isinstance(config, BranchStep):
            nexts += [index[a.goto] for a in config.arms]
            if config.otherwise is not None:
                nexts.append(index[config.otherwise])
            elif i + 1 < len(steps):
                nexts.append(i + 1)
        elif i + 1 < len(steps):
            nexts.append(i + 1)
        for n in nexts:
            if n not in reached:
                reached.add(n)
                stack.append(n)
    for i, r in enumerate(raw):
        if i not in reached:
            before = raw[i - 1].id if i else None
            hint = (
                f"the step before it ('{before}') never continues to it and no goto names it"
                if before
                else None
            )
            ctx.report(r.pos, f"step '{r.id}' can never be reached", hint)
