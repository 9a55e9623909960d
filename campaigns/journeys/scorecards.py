"""Scorecards: how an account's health score is made, read from ``journeys/scorecards.yaml``.

A scorecard (as in Gainsight or ChurnZero) is a list of **measures**, each reading one number
per account (a field, product usage over a window, NPS or CSAT answers, human email
engagement, open or overdue tasks, a count over the account's contacts), mapping it to 0-100
(``linear`` between two values, or ``bands``) and weighing it. The account's score is the
weighted mean of the measures that have data: a measure without data is left out and the
weights of the others re-normalised. The score's band (red, yellow, green) is read off the
lower bounds in ``bands``. Each touch tier may have its own scorecard; one may be the
``default`` for the tiers that have none.

This module is pure: the file in, plain data out (with every problem at its ``line:col`` and
a hint, read as the journeys and segments are, aliases refused). The engine's
:mod:`campaigns.engine.health` spells each measure in SQL and computes every account's score
in a few set-based statements; :meth:`Measure.points` and :meth:`Scorecard.combine` are the
same arithmetic in Python, which the tests hold the SQL to.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import nodes

from campaigns.exceptions import Problem, ScorecardError
from campaigns.journeys.durations import DurationError, parse_duration
from campaigns.journeys.expressions import Scope
from campaigns.journeys.fields import ACCOUNT_FIELDS, DAY_COUNTS, HEALTH_BANDS, NUMBER
from campaigns.journeys.hints import suggest
from campaigns.journeys.reading import Context, check_keys, read_condition, read_text
from campaigns.journeys.segments import Lowering, SegmentSet
from campaigns.journeys.yamlsource import Map, Pos, Seq, YamlProblem, describe, load, read

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
METRIC_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")

SOURCES = ("field", "contacts", "usage", "survey", "email", "tasks")
"""The keys that say what a measure reads; a measure has exactly one."""

USAGE_AGGREGATES = ("avg", "sum", "max", "min", "last", "days", "change")
SURVEY_AGGREGATES = {"nps": ("nps", "avg", "min"), "csat": ("avg", "min")}
CONTACT_AGGREGATES = ("avg", "sum", "max", "min")
EMAIL_RATES = ("open_rate", "click_rate", "opens", "clicks")
TASK_COUNTS = ("open", "overdue")
CONTACT_COUNTS = ("count", "share")

FIELD_MEASURES = tuple(
    name
    for name, kind in ACCOUNT_FIELDS.items()
    if kind == NUMBER and not name.startswith("health_")
)
"""The account fields a measure may read (numbers; not the health fields it writes)."""

DEFAULT_BANDS = {"red": 0.0, "yellow": 40.0, "green": 70.0}
MAX_WINDOW_DAYS = 3 * 366

_TOP_KEYS = ("bands", "scorecards")
_CARD_KEYS = ("label", "tiers", "default", "bands", "measures")
_MEASURE_KEYS = (*SOURCES, "label", "window", "aggregate", "when", "score", "weight", "missing")
_WINDOWED = ("usage", "survey", "email")


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Linear:
    """``score: {linear: [low, high]}``: ``low`` scores 0, ``high`` 100, in between on a line,
    clamped outside. ``low`` may be the larger (fewer overdue tasks is better)."""

    low: float
    high: float

    def points(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return min(100.0, max(0.0, share * 100.0))


@dataclass(frozen=True)
class Band:
    below: float | None  # None: the last band, every value from the one before up
    score: float


@dataclass(frozen=True)
class Bands:
    """``score: {bands: [{below: 0, score: 0}, {below: 30, score: 50}, {score: 100}]}``: the
    first band whose ``below`` the value is under gives its score; the last has no ``below``."""

    bands: tuple[Band, ...]

    def points(self, value: float) -> float:
        for band in self.bands:
            if band.below is None or value < band.below:
                return band.score
        return self.bands[-1].score


Scoring = Linear | Bands


@dataclass(frozen=True)
class HealthBands:
    """Lower bounds of the bands of the overall score: red from 0, yellow, green."""

    red: float = DEFAULT_BANDS["red"]
    yellow: float = DEFAULT_BANDS["yellow"]
    green: float = DEFAULT_BANDS["green"]

    def band(self, score: float | None) -> str | None:
        if score is None:
            return None
        if score >= self.green:
            return "green"
        if score >= self.yellow:
            return "yellow"
        return "red"


@dataclass(frozen=True)
class Measure:
    """One measure of a scorecard.

    ``source`` is one of :data:`SOURCES` and ``what`` what it reads there: an account field
    (``days_to_renewal``, ``attributes.seats``), ``count``/``share``/``attributes.x`` of
    contacts, a usage metric, ``nps``/``csat``, an email rate, ``open``/``overdue``.
    ``window_days``: how many days up to the scored day it reads (usage, surveys, email).
    ``missing``: the value taken when there is no data (None: the measure is left out).
    ``when``: the contact rule of a ``contacts`` measure, parsed."""

    name: str
    source: str
    what: str
    scoring: Scoring
    weight: float
    aggregate: str | None = None
    window_days: int | None = None
    when: str | None = None
    when_expr: nodes.Expr | None = field(default=None, compare=False, repr=False)
    missing: float | None = None
    label: str | Mapping[str, str] | None = None

    def label_for(self, locale: str = "en") -> str:
        return _label(self.label, locale, self.name)

    def points(self, value: float | None) -> float | None:
        """The measure's score (0-100) for ``value``; None when there is no value."""
        if value is None:
            value = self.missing
        if value is None:
            return None
        return self.scoring.points(value)

    @property
    def key(self) -> tuple[object, ...]:
        """What the measure reads, without how it scores: measures with one key share a
        column of the statement that reads them."""
        return (self.source, self.what, self.aggregate, self.window_days, self.when)


@dataclass(frozen=True)
class Scorecard:
    name: str
    measures: tuple[Measure, ...]
    tiers: tuple[str, ...] = ()
    default: bool = False
    bands: HealthBands = HealthBands()
    label: str | Mapping[str, str] | None = None

    def label_for(self, locale: str = "en") -> str:
        return _label(self.label, locale, self.name)

    def combine(self, points: Mapping[str, float | None]) -> float | None:
        """The overall score from each measure's score (None: no data, left out and the other
        weights re-normalised), rounded to one decimal; None when no weighted measure has
        data."""
        weight = sum(m.weight for m in self.measures if points.get(m.name) is not None)
        if weight <= 0:
            return None
        total = sum(m.weight * p for m in self.measures if (p := points.get(m.name)) is not None)
        return round(total / weight, 1)


@dataclass(frozen=True)
class ScorecardSet:
    """The scorecards of one file; :meth:`for_tier` says which one scores an account."""

    scorecards: tuple[Scorecard, ...]
    path: str = "scorecards.yaml"

    def get(self, name: str) -> Scorecard:
        for card in self.scorecards:
            if card.name == name:
                return card
        raise KeyError(name)

    @property
    def default(self) -> Scorecard | None:
        return next((c for c in self.scorecards if c.default), None)

    def for_tier(self, tier: str | None) -> Scorecard | None:
        for card in self.scorecards:
            if tier is not None and tier in card.tiers:
                return card
        return self.default


def _label(label: str | Mapping[str, str] | None, locale: str, name: str) -> str:
    if isinstance(label, Mapping):
        return label.get(locale) or label.get("en") or name
    return label or name


# ---------------------------------------------------------------------------- loading


def load_scorecards(path: Path, segments: SegmentSet | None = None) -> ScorecardSet:
    """Read and check a scorecards file; raise :class:`ScorecardError` with every problem.
    ``segments``: the tiers its ``tiers:`` may name, and the rules ``when:`` is lowered by
    (None: not checked)."""
    try:
        text = read(path)
    except YamlProblem as exc:
        raise ScorecardError(
            [Problem(str(path), exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    except FileNotFoundError:
        raise ScorecardError(
            [Problem(str(path), 1, 1, "scorecards file not found", "see docs/health.md")]
        ) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ScorecardError(
            [Problem(str(path), 1, 1, f"cannot read the file: {exc}", "save it as UTF-8")]
        ) from None
    return parse_scorecards(text, str(path), segments)


def parse_scorecards(
    text: str, path: str = "scorecards.yaml", segments: SegmentSet | None = None
) -> ScorecardSet:
    ctx = Context(path, text, segments, None, [])
    try:
        doc = load(text)
    except YamlProblem as exc:
        raise ScorecardError(
            [Problem(path, exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    if not isinstance(doc, Map):
        raise ScorecardError(
            [Problem(path, 1, 1, "the scorecards file must be a mapping with 'scorecards:'")]
        )
    check_keys(ctx, doc, _TOP_KEYS, ("scorecards",), "the scorecards file")
    bands = _read_bands(ctx, doc, HealthBands()) if "bands" in doc else HealthBands()
    cards: list[Scorecard] = []
    block = doc.get("scorecards")
    if "scorecards" in doc and (not isinstance(block, Map) or not block):
        ctx.report(
            doc.at("scorecards"),
            "'scorecards' must be a mapping of names to scorecards",
            "e.g. scorecards: {tech_touch: {tiers: [tech_touch], measures: {...}}}",
        )
    elif isinstance(block, Map):
        for name, entry in block.items():
            card = _read_card(ctx, name, entry, block.key_at(name), bands)
            if card is not None:
                cards.append(card)
        _check_tiers(ctx, block, cards)
    if ctx.problems:
        raise ScorecardError(sorted(ctx.problems, key=lambda p: (p.line, p.col)))
    return ScorecardSet(tuple(cards), path)


def _read_bands(ctx: Context, m: Map, fallback: HealthBands) -> HealthBands:
    value = m["bands"]
    pos = m.at("bands")
    hint = "e.g. bands: {red: 0, yellow: 40, green: 70} (the lower bound of each band)"
    if not isinstance(value, Map):
        ctx.report(
            pos, f"'bands' must be a mapping of band to lower bound, not {describe(value)}", hint
        )
        return fallback
    bounds: dict[str, float] = {
        "red": fallback.red,
        "yellow": fallback.yellow,
        "green": fallback.green,
    }
    good = True
    for key in value:
        if key not in HEALTH_BANDS:
            ctx.report(
                value.key_at(key),
                f"unknown band '{key}'",
                suggest(key, HEALTH_BANDS) or "the bands are red, yellow and green",
            )
            good = False
            continue
        number = _number(value[key])
        if number is None or not 0 <= number <= 100:
            ctx.report(
                value.at(key),
                f"the {key} band's lower bound must be a number from 0 to"
                f" 100, not {describe(value[key])}",
                hint,
            )
            good = False
            continue
        bounds[key] = number
    if not good:
        return fallback
    if bounds["red"] != 0:
        ctx.report(
            value.at("red"),
            "the red band starts at 0",
            "every score from 0 up is red until yellow begins: write red: 0",
        )
        return fallback
    if not bounds["red"] < bounds["yellow"] < bounds["green"]:
        where = value.at("green") if "green" in value else value.at("yellow")
        ctx.report(
            where,
            f"the bands overlap: red from {_fmt(bounds['red'])}, yellow from"
            f" {_fmt(bounds['yellow'])}, green from {_fmt(bounds['green'])}",
            "each band starts above the one before: red 0 < yellow < green",
        )
        return fallback
    return HealthBands(bounds["red"], bounds["yellow"], bounds["green"])


def _read_card(
    ctx: Context, name: str, entry: object, pos: Pos, bands: HealthBands
) -> Scorecard | None:
    if not NAME_RE.match(name):
        ctx.report(
            pos,
            f"bad scorecard name '{name}'",
            "use lowercase letters, digits and _, starting with a letter",
        )
    if not isinstance(entry, Map):
        ctx.report(pos, f"scorecard '{name}' must be a mapping with 'measures:'")
        return None
    check_keys(ctx, entry, _CARD_KEYS, ("measures",), f"scorecard '{name}'")
    label = read_text(ctx, entry, "label")
    tiers = _read_tiers(ctx, entry)
    default = False
    if "default" in entry:
        if not isinstance(entry["default"], bool):
            ctx.report(
                entry.at("default"),
                "'default' is true or false",
                "default: true scores the accounts of tiers no scorecard names",
            )
        else:
            default = entry["default"]
    if not tiers and not default and "tiers" not in entry:
        ctx.report(
            entry.pos,
            f"scorecard '{name}' names no tiers",
            "add tiers: [tech_touch], or default: true",
        )
    own_bands = _read_bands(ctx, entry, bands) if "bands" in entry else bands
    measures: list[Measure] = []
    block = entry.get("measures")
    if "measures" in entry and (not isinstance(block, Map) or not block):
        ctx.report(
            entry.at("measures"),
            "'measures' must be a mapping of names to measures",
            "e.g. measures: {active_users: {usage: active_users, ...}}",
        )
    elif isinstance(block, Map):
        for mname, mentry in block.items():
            measure = _read_measure(ctx, mname, mentry, block.key_at(mname), name)
            if measure is not None:
                measures.append(measure)
        if measures and len(measures) == len(block) and all(m.weight == 0 for m in measures):
            ctx.report(
                entry.at("measures"),
                f"every weight of scorecard '{name}' is 0",
                "give at least one measure a weight above 0",
            )
    return Scorecard(name, tuple(measures), tiers, default, own_bands, label)


def _read_tiers(ctx: Context, entry: Map) -> tuple[str, ...]:
    if "tiers" not in entry:
        return ()
    value = entry["tiers"]
    if isinstance(value, str):
        value_list: list[object] = [value]
        positions = [entry.at("tiers")]
    elif isinstance(value, Seq):
        value_list, positions = list(value), list(value.item_pos)
    else:
        ctx.report(
            entry.at("tiers"),
            f"'tiers' must be a list of tier names, not {describe(value)}",
            "e.g. tiers: [tech_touch]",
        )
        return ()
    known = [t.name for t in ctx.segments.tiers] if ctx.segments is not None else None
    tiers: list[str] = []
    for item, pos in zip(value_list, positions, strict=True):
        if not isinstance(item, str):
            ctx.report(pos, f"a tier is a name, not {describe(item)}")
        elif known is not None and item not in known:
            ctx.report(
                pos,
                f"unknown tier '{item}'",
                suggest(item, known) or f"the tiers of segments.yaml: {', '.join(known)}",
            )
        elif item in tiers:
            ctx.report(pos, f"tier '{item}' is listed twice")
        else:
            tiers.append(item)
    return tuple(tiers)


def _check_tiers(ctx: Context, block: Map, cards: Sequence[Scorecard]) -> None:
    """A tier has at most one scorecard, and there is at most one default."""
    owner: dict[str, str] = {}
    default: str | None = None
    for card in cards:
        entry = block[card.name]
        for tier in card.tiers:
            if tier in owner:
                ctx.report(
                    _item_pos(entry, tier),
                    f"tier '{tier}' already has scorecard '{owner[tier]}'",
                    "name each tier in one scorecard",
                )
            else:
                owner[tier] = card.name
        if card.default:
            if default is not None:
                ctx.report(
                    entry.at("default"),
                    f"scorecard '{default}' is the default already",
                    "keep default: true on one scorecard",
                )
            default = card.name


def _item_pos(entry: Map, tier: str) -> Pos:
    value = entry.get("tiers")
    if isinstance(value, Seq) and tier in value:
        return value.at(value.index(tier))
    return entry.at("tiers")


def _read_measure(ctx: Context, name: str, entry: object, pos: Pos, card: str) -> Measure | None:
    where = f"measure '{name}'"
    if not NAME_RE.match(name):
        ctx.report(
            pos,
            f"bad measure name '{name}'",
            "use lowercase letters, digits and _, starting with a letter",
        )
    if not isinstance(entry, Map):
        ctx.report(
            pos,
            f"{where} must be a mapping, e.g. {{usage: logins, window: 30 days,"
            " aggregate: sum, score: {linear: [0, 20]}, weight: 10}",
        )
        return None
    check_keys(ctx, entry, _MEASURE_KEYS, ("score", "weight"), where)
    sources = [key for key in SOURCES if key in entry]
    if not sources:
        ctx.report(
            entry.pos,
            f"{where} reads nothing",
            f"give it one of: {', '.join(SOURCES)} (see docs/health.md)",
        )
        return None
    if len(sources) > 1:
        ctx.report(
            entry.key_at(sources[1]),
            f"{where} reads both '{sources[0]}' and '{sources[1]}'",
            "one measure reads one thing: split it in two",
        )
        return None
    source = sources[0]
    read = _read_source(ctx, entry, source, where)
    window = _read_window(ctx, entry, source, where)
    scoring = _read_scoring(ctx, entry, where)
    weight = _read_weight(ctx, entry, where)
    missing = None
    if "missing" in entry:
        missing = _number(entry["missing"])
        if missing is None:
            ctx.report(
                entry.at("missing"),
                f"'missing' must be a number, not {describe(entry['missing'])}",
                "the value taken when there is no data, e.g. missing: 0",
            )
    label = read_text(ctx, entry, "label")
    if read is None or scoring is None or weight is None:
        return None
    what, aggregate, when, when_expr = read
    if source in _WINDOWED and window is None:
        return None
    return Measure(
        name, source, what, scoring, weight, aggregate, window, when, when_expr, missing, label
    )


_Read = tuple[str, str | None, str | None, nodes.Expr | None]


def _read_source(ctx: Context, m: Map, source: str, where: str) -> _Read | None:
    value = m[source]
    pos = m.at(source)
    allowed_extra: tuple[str, ...] = ()
    result: _Read | None = None
    if source == "field":
        allowed_extra = ()
        result = _read_field(ctx, value, pos)
    elif source == "usage":
        allowed_extra = ("window", "aggregate")
        if not isinstance(value, str) or not METRIC_RE.match(value):
            ctx.report(
                pos,
                f"bad usage metric {value!r}",
                "name a metric the product posts, e.g. usage: active_users",
            )
        else:
            aggregate = _choice(ctx, m, "aggregate", USAGE_AGGREGATES, None)
            if "aggregate" not in m:
                ctx.report(
                    m.key_at(source),
                    f"{where} needs 'aggregate'",
                    f"one of: {', '.join(USAGE_AGGREGATES)}",
                )
            elif aggregate is not None:
                result = (value, aggregate, None, None)
    elif source == "survey":
        allowed_extra = ("window", "aggregate")
        scale = _one_of(ctx, value, pos, "survey", tuple(SURVEY_AGGREGATES))
        if scale is not None:
            options = SURVEY_AGGREGATES[scale]
            aggregate = _choice(ctx, m, "aggregate", options, options[0])
            if aggregate is not None:
                result = (scale, aggregate, None, None)
    elif source == "email":
        allowed_extra = ("window",)
        rate = _one_of(ctx, value, pos, "email", EMAIL_RATES)
        if rate is not None:
            result = (rate, None, None, None)
    elif source == "tasks":
        count = _one_of(ctx, value, pos, "tasks", TASK_COUNTS)
        if count is not None:
            result = (count, None, None, None)
    else:  # contacts
        allowed_extra = ("when", "aggregate")
        result = _read_contacts(ctx, m, value, pos)
    for key in ("window", "aggregate", "when"):
        if key in m and key not in allowed_extra:
            ctx.report(m.key_at(key), f"'{key}' does not go with '{source}'", _EXTRA_HINTS[key])
    return result


_EXTRA_HINTS = {
    "window": "a window goes with usage, survey and email",
    "aggregate": "an aggregate goes with usage, survey and contacts fields",
    "when": "a contact rule goes with contacts",
}


def _read_field(ctx: Context, value: object, pos: Pos) -> _Read | None:
    if isinstance(value, str) and value.startswith("attributes."):
        attr = value.removeprefix("attributes.")
        if NAME_RE.match(attr):
            return (value, None, None, None)
        ctx.report(pos, f"bad attribute '{attr}'", "write attributes.<name>, e.g. attributes.seats")
        return None
    if not isinstance(value, str):
        ctx.report(
            pos,
            f"'field' names an account field, not {describe(value)}",
            "e.g. field: days_to_renewal",
        )
        return None
    if value in ACCOUNT_FIELDS and value not in FIELD_MEASURES:
        ctx.report(
            pos,
            f"'{value}' is not a number a measure can read",
            f"number fields: {', '.join(FIELD_MEASURES)}, or attributes.<name>",
        )
        return None
    if value not in FIELD_MEASURES:
        ctx.report(
            pos,
            f"unknown field '{value}'",
            suggest(value, [*FIELD_MEASURES, "attributes."])
            or f"number fields: {', '.join(FIELD_MEASURES)}, or attributes.<name>",
        )
        return None
    return (value, None, None, None)


def _read_contacts(ctx: Context, m: Map, value: object, pos: Pos) -> _Read | None:
    when: str | None = None
    expr: nodes.Expr | None = None
    if "when" in m:
        when = read_condition(ctx, m["when"], m.at("when"), Scope(engagement=False), "when")
        if when is not None:
            expr = _lower(ctx, when, m.at("when"))
            if expr is None:
                when = None
    if isinstance(value, str) and value in CONTACT_COUNTS:
        if "aggregate" in m:
            ctx.report(
                m.key_at("aggregate"),
                f"contacts: {value} takes no aggregate",
                "count is how many contacts the rule holds for; share is their percent",
            )
        return (value, None, when, expr) if when is not None or "when" not in m else None
    attr = value.removeprefix("contact.") if isinstance(value, str) else None
    if (
        attr is not None
        and attr.startswith("attributes.")
        and NAME_RE.match(attr.removeprefix("attributes."))
    ):
        aggregate = _choice(ctx, m, "aggregate", CONTACT_AGGREGATES, "avg")
        if aggregate is None or (when is None and "when" in m):
            return None
        return (attr, aggregate, when, expr)
    ctx.report(
        pos,
        f"unknown contacts measure {value!r}",
        (suggest(str(value), CONTACT_COUNTS) if isinstance(value, str) else None)
        or "contacts: count, share, or a number attribute (contact.attributes.<name>)",
    )
    return None


def _lower(ctx: Context, source: str, pos: Pos) -> nodes.Expr | None:
    """The parsed rule, if it has a set-based form (it runs as SQL over the contacts)."""
    from campaigns.journeys.expressions import parse

    expr = parse(source)
    if ctx.segments is not None:
        try:
            Lowering(ctx.segments).lower(expr)
        except ValueError as exc:
            ctx.report(
                pos,
                f"the rule cannot be turned into SQL: {exc}",
                "compare fields with values, e.g. contact.role == 'admin'",
            )
            return None
    return expr


def _read_window(ctx: Context, m: Map, source: str, where: str) -> int | None:
    if source not in _WINDOWED:
        return None
    if "window" not in m:
        ctx.report(m.key_at(source), f"{where} needs a 'window'", "e.g. window: 30 days")
        return None
    value = m["window"]
    try:
        delta = parse_duration(value)
    except DurationError as exc:
        ctx.report(m.at("window"), f"bad window: {exc}", exc.hint)
        return None
    if delta.seconds or delta.microseconds:
        ctx.report(
            m.at("window"),
            f"a window is whole days, not {value!r}",
            "e.g. window: 30 days or window: 4 weeks",
        )
        return None
    if delta.days > MAX_WINDOW_DAYS:  # pragma: no cover - parse_duration stops at 3 years
        ctx.report(m.at("window"), "a window is at most 3 years")
        return None
    return delta.days


def _read_scoring(ctx: Context, m: Map, where: str) -> Scoring | None:
    if "score" not in m:
        return None
    value, pos = m["score"], m.at("score")
    hint = "score: {linear: [0, 20]} or score: {bands: [{below: 10, score: 0}, {score: 100}]}"
    if not isinstance(value, Map) or len(value) != 1:
        ctx.report(pos, f"the score of {where} must be one of linear: or bands:", hint)
        return None
    kind = next(iter(value))
    if kind == "linear":
        return _read_linear(ctx, value["linear"], value.at("linear"))
    if kind == "bands":
        return _read_score_bands(ctx, value["bands"], value.at("bands"))
    ctx.report(
        value.key_at(kind), f"unknown scoring '{kind}'", suggest(kind, ("linear", "bands")) or hint
    )
    return None


def _read_linear(ctx: Context, value: object, pos: Pos) -> Linear | None:
    hint = "linear: [value scoring 0, value scoring 100], e.g. linear: [0, 20]"
    if not isinstance(value, Seq) or len(value) != 2:
        ctx.report(pos, "linear takes two numbers", hint)
        return None
    low, high = _number(value[0]), _number(value[1])
    for item, number, at in zip(value, (low, high), value.item_pos, strict=True):
        if number is None:
            ctx.report(at, f"linear takes numbers, not {describe(item)}", hint)
    if low is None or high is None:
        return None
    if low == high:
        ctx.report(
            pos, f"linear from {_fmt(low)} to {_fmt(high)} is no range", "give two different values"
        )
        return None
    return Linear(low, high)


def _read_score_bands(ctx: Context, value: object, pos: Pos) -> Bands | None:
    hint = "bands: [{below: 0, score: 0}, {below: 30, score: 50}, {score: 100}]"
    if not isinstance(value, Seq) or not value:
        ctx.report(pos, "bands is a list of {below: N, score: S}, ending with {score: S}", hint)
        return None
    bands: list[Band] = []
    good = True
    last_below: float | None = None
    for index, (item, at) in enumerate(zip(value, value.item_pos, strict=True)):
        is_last = index == len(value) - 1
        if not isinstance(item, Map):
            ctx.report(
                at, f"a band is a mapping {{below: N, score: S}}, not {describe(item)}", hint
            )
            good = False
            continue
        for key in item:
            if key not in ("below", "score"):
                ctx.report(
                    item.key_at(key),
                    f"unknown key '{key}' in a band",
                    suggest(key, ("below", "score")) or "a band has below: and score:",
                )
                good = False
        score = _number(item.get("score"))
        if score is None or not 0 <= score <= 100:
            ctx.report(
                item.at("score") if "score" in item else at,
                "a band's score is a number from 0 to 100",
                hint,
            )
            good = False
        below: float | None = None
        if "below" in item:
            below = _number(item["below"])
            if below is None:
                ctx.report(
                    item.at("below"),
                    f"'below' must be a number, not {describe(item['below'])}",
                    hint,
                )
                good = False
            elif last_below is not None and below <= last_below:
                ctx.report(
                    item.at("below"),
                    f"bands overlap: below {_fmt(below)} comes after below {_fmt(last_below)}",
                    "list the bands from the lowest values up, each 'below' larger",
                )
                good = False
            else:
                last_below = below
        elif not is_last:
            ctx.report(
                at,
                "only the last band has no 'below'",
                "give this band a 'below', or move it to the end",
            )
            good = False
        if is_last and "below" in item:
            ctx.report(
                at,
                f"values of {_fmt(below) if below is not None else 'N'} and more get no score",
                "end with a band without 'below', e.g. {score: 100}",
            )
            good = False
        bands.append(Band(below, score if score is not None else 0.0))
    return Bands(tuple(bands)) if good else None


def _read_weight(ctx: Context, m: Map, where: str) -> float | None:
    if "weight" not in m:
        return None
    value = m["weight"]
    number = _number(value)
    if number is None:
        ctx.report(
            m.at("weight"),
            f"the weight of {where} must be a number, not {describe(value)}",
            "e.g. weight: 30 (weights need not add up to 100)",
        )
        return None
    if number < 0:
        ctx.report(
            m.at("weight"),
            f"the weight of {where} is negative",
            "weights are 0 or more; 0 shows the measure without counting it",
        )
        return None
    return number


def _choice(
    ctx: Context, m: Map, key: str, options: tuple[str, ...], default: str | None
) -> str | None:
    if key not in m:
        return default
    return _one_of(ctx, m[key], m.at(key), key, options)


def _one_of(
    ctx: Context, value: object, pos: Pos, key: str, options: tuple[str, ...]
) -> str | None:
    if isinstance(value, str) and value in options:
        return value
    shown = value if isinstance(value, str) else describe(value)
    hint = suggest(value, options) if isinstance(value, str) else None
    synonym = _SYNONYMS.get(value) if isinstance(value, str) else None
    if hint is None and synonym in options:
        hint = f"did you mean '{synonym}'?"
    ctx.report(pos, f"unknown {key} '{shown}'", hint or f"one of: {', '.join(options)}")
    return None


_SYNONYMS = {
    "mean": "avg",
    "average": "avg",
    "total": "sum",
    "latest": "last",
    "maximum": "max",
    "minimum": "min",
    "clicks_rate": "click_rate",
    "opens_rate": "open_rate",
}


def _number(value: object) -> float | None:
    """A YAML number as a float (not true/false, not infinite); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


DAYS_FIELDS = tuple(DAY_COUNTS)
"""The field measures counted in days from the scored day."""
