"""Segments and touch tiers: rules over account and contact fields, checked as plain data.

``journeys/segments.yaml`` lists the tiers (first match wins, so every account lands in at
most one), the segments journeys target, and the personas: who a contact is (admin, end
user, executive), rules over contact and account fields tried in order, the first that
holds naming the contact's persona. A tier or segment may say which personas it plans for
(``personas: [admin, end_user, executive]``); the steps of its journeys choose content for
those (``by_persona``), and every other contact gets the step's own content.

Each rule is a condition (see
:mod:`campaigns.journeys.expressions`); :class:`Lowering` turns it into a
:mod:`~campaigns.journeys.rules` rule, which the engine's :mod:`campaigns.engine.audience`
spells as one SQL ``WHERE`` clause, so counting or tiering a million contacts is a single
set-based statement. A rule that cannot be lowered is a problem of the file, found here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from jinja2 import TemplateSyntaxError, nodes

from campaigns.currency import DEFAULT as DEFAULT_CURRENCIES
from campaigns.currency import Currencies
from campaigns.exceptions import Problem, SegmentError
from campaigns.journeys.expressions import Condition, Scope, check, parse
from campaigns.journeys.fields import DAY_COUNTS, PERSONA, Ref, field_ref, referenced_fields
from campaigns.journeys.hints import ExprProblem, locate, suggest
from campaigns.journeys.rules import (
    FLIP,
    AllOf,
    Always,
    AnyOf,
    Column,
    Compare,
    Constant,
    DaysFromToday,
    IsNone,
    IsTrue,
    JsonType,
    Negation,
    Operand,
    PersonaOf,
    Rule,
    Table,
    TierOf,
    compare_constants,
)
from campaigns.journeys.yamlsource import Map, Pos, Seq, YamlProblem, load, read

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SECTION_KEYS = ("tiers", "segments")
_TOP_KEYS = (*_SECTION_KEYS, "roles", "personas")
DEFAULT_ROLES = ("admin", "user", "billing", "executive", "champion", "technical")
"""The contact roles an account journey may address when ``segments.yaml`` lists none."""
_ENTRY_KEYS = ("when", "label", "description", "personas")
_PERSONA_KEYS = ("when", "label", "description")

Report = Callable[[Pos, str, str | None], None]


@dataclass(frozen=True)
class Segment:
    """A named rule. ``is_tier``: one of the ordered, mutually exclusive touch tiers.
    ``personas``: the personas its journeys plan content for (None: every persona)."""

    name: str
    rule: str
    expr: nodes.Expr
    is_tier: bool
    label: str | Mapping[str, str] | None = None
    description: str | None = None
    personas: tuple[str, ...] | None = None

    def label_for(self, locale: str = "en") -> str:
        return _label(self.label, self.name, locale)


@dataclass(frozen=True)
class Persona:
    """Who a contact is: a named rule over contact (and account) fields. The personas of a
    file are tried in order; the first whose rule holds is the contact's persona."""

    name: str
    rule: str
    expr: nodes.Expr
    label: str | Mapping[str, str] | None = None
    description: str | None = None

    def label_for(self, locale: str = "en") -> str:
        return _label(self.label, self.name, locale)


def _label(label: str | Mapping[str, str] | None, name: str, locale: str) -> str:
    if isinstance(label, Mapping):
        return label.get(locale.split("-")[0]) or label.get("en") or name
    return label or name


@dataclass(frozen=True)
class SegmentSet:
    """The tiers (in order) and the segments of one segments file, with the currencies its
    rules compare ``arr`` and ``ltv`` in (the configured ones: see
    :meth:`campaigns.content.project.Project.segments`)."""

    tiers: tuple[Segment, ...]
    segments: tuple[Segment, ...]
    path: str = "segments.yaml"
    roles: tuple[str, ...] = DEFAULT_ROLES  # the contact roles (``contact.role``) in use
    currencies: Currencies = DEFAULT_CURRENCIES
    personas: tuple[Persona, ...] = ()  # in order: the first whose rule holds

    @property
    def persona_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.personas)

    def persona(self, name: str) -> Persona:
        for persona in self.personas:
            if persona.name == name:
                return persona
        raise KeyError(name)

    def persona_for(self, values: Mapping[str, object]) -> str | None:
        """The persona of the contact whose condition values (account fields, ``contact``,
        ``attributes``) are ``values``: the first whose rule holds, evaluated as journey
        conditions are; None when none holds."""
        for persona in self.personas:
            if _condition(persona.rule)(values):
                return persona.name
        return None

    def planned_personas(self, names: Sequence[str]) -> tuple[str, ...]:
        """The personas a journey targeting the segments ``names`` plans content for: those
        its segments list (in the file's order); every persona when one of them lists none,
        or when the journey names no segment of this file."""
        known = [self.get(n) for n in names if n in self]
        if not known or any(s.personas is None for s in known):
            return self.persona_names
        listed = {p for s in known for p in s.personas or ()}
        return tuple(p for p in self.persona_names if p in listed)

    @property
    def names(self) -> list[str]:
        return [s.name for s in (*self.tiers, *self.segments)]

    def get(self, name: str) -> Segment:
        for segment in (*self.tiers, *self.segments):
            if segment.name == name:
                return segment
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def reads_contacts(self, segment: Segment) -> bool:
        """Whether ``segment``'s rule reads a contact field, itself or through ``tier``."""
        refs = referenced_fields(segment.expr)
        if any(r.scope == "account" and r.name == "tier" for r in refs):
            for tier in self.tiers:
                refs.extend(referenced_fields(tier.expr))
        return any(r.scope.startswith("contact") for r in refs)


@lru_cache(maxsize=512)
def _condition(rule: str) -> Condition:
    """A persona rule, compiled once per process."""
    return Condition(rule)


# ---------------------------------------------------------------------------- loading


def load_segments(path: Path, *, currencies: Currencies = DEFAULT_CURRENCIES) -> SegmentSet:
    """Read and check a segments file; raise :class:`SegmentError` with every problem.
    ``currencies``: the base currency and rates its rules compare amounts in."""
    try:
        text = read(path)
    except YamlProblem as exc:
        raise SegmentError(
            [Problem(str(path), exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    except FileNotFoundError:
        raise SegmentError(
            [
                Problem(
                    str(path),
                    1,
                    1,
                    "segments file not found",
                    "create journeys/segments.yaml (see docs/dsl.md)",
                )
            ]
        ) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise SegmentError(
            [Problem(str(path), 1, 1, f"cannot read the file: {exc}", "save it as UTF-8")]
        ) from None
    return parse_segments(text, str(path), currencies=currencies)


@dataclass(frozen=True)
class _Entry:
    name: str
    entry: object
    pos: Pos
    is_tier: bool


def parse_segments(
    text: str, path: str = "segments.yaml", *, currencies: Currencies = DEFAULT_CURRENCIES
) -> SegmentSet:
    problems: list[Problem] = []

    def report(pos: Pos, message: str, hint: str | None = None) -> None:
        problems.append(Problem(path, pos.line, pos.col, message, hint))

    doc = _document(text, path)
    entries = _entries(doc, report)
    roles = _roles(doc, report)
    tier_names = tuple(e.name for e in entries if e.is_tier)
    personas, persona_positions = _personas(doc, tier_names, report, text)
    persona_names = _persona_names(doc)  # a persona with a broken rule is still a name
    tiers: list[Segment] = []
    segments: list[Segment] = []
    positions: dict[str, Pos] = {}
    seen: dict[str, Pos] = {}
    for item in entries:
        segment = _segment(item, seen, tier_names, persona_names, report, text)
        if segment is not None:
            assert isinstance(item.entry, Map)
            positions[segment.name] = item.entry.at("when")
            (tiers if segment.is_tier else segments).append(segment)
    segset = SegmentSet(tuple(tiers), tuple(segments), path, roles, currencies, personas)
    if not problems:
        _check_lowering(segset, positions, persona_positions, report)
    if problems:
        raise SegmentError(sorted(problems, key=lambda p: (p.line, p.col)))
    return segset


def _document(text: str, path: str) -> Map:
    try:
        doc = load(text)
    except YamlProblem as exc:
        raise SegmentError(
            [Problem(path, exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    if not isinstance(doc, Map):
        message = "the segments file must be a mapping with 'tiers:' and 'segments:'"
        raise SegmentError([Problem(path, 1, 1, message)])
    return doc


def _entries(doc: Map, report: Report) -> list[_Entry]:
    """The named entries of both sections, tiers first, each with its place."""
    for key in doc:
        if key not in _TOP_KEYS:
            report(
                doc.key_at(key),
                f"unknown key '{key}'",
                suggest(key, _TOP_KEYS) or "use 'tiers:', 'segments:', 'roles:' and 'personas:'",
            )
    entries: list[_Entry] = []
    for section in _SECTION_KEYS:
        block = doc.get(section)
        if block is None:
            continue
        if not isinstance(block, Map):
            report(doc.at(section), f"'{section}' must be a mapping of names to rules", None)
            continue
        for name, entry in block.items():
            entries.append(_Entry(name, entry, block.key_at(name), section == "tiers"))
    return entries


def _roles(doc: Map, report: Report) -> tuple[str, ...]:
    """``roles: [admin, billing, ...]``: the contact roles journeys may address by name."""
    if "roles" not in doc:
        return DEFAULT_ROLES
    value = doc["roles"]
    if not isinstance(value, Seq) or not value:
        report(doc.at("roles"), "'roles' must be a non-empty list of role names", None)
        return DEFAULT_ROLES
    roles: list[str] = []
    for item, pos in zip(value, value.item_pos, strict=True):
        if not isinstance(item, str) or not NAME_RE.match(item):
            report(pos, f"bad role {item!r}", "use lowercase letters, digits and _")
        elif item in roles:
            report(pos, f"role '{item}' is listed twice", None)
        else:
            roles.append(item)
    return tuple(roles)


def _personas(
    doc: Map, tier_names: tuple[str, ...], report: Report, text: str
) -> tuple[tuple[Persona, ...], dict[str, Pos]]:
    """``personas:``: a mapping of names to ``{label, when}``, in the order they are tried."""
    if "personas" not in doc:
        return (), {}
    block = doc["personas"]
    if not isinstance(block, Map) or not block:
        report(
            doc.at("personas"),
            "'personas' must be a mapping of persona names to rules",
            "e.g. personas: {admin: {when: \"contact.role == 'admin'\"}}",
        )
        return (), {}
    personas: list[Persona] = []
    positions: dict[str, Pos] = {}
    scope = Scope(engagement=False, tiers=tier_names, persona_rule=True, where="a persona rule")
    for name, entry in block.items():
        pos = block.key_at(name)
        if not NAME_RE.match(name):
            report(
                pos,
                f"bad persona name '{name}'",
                "use lowercase letters, digits and _, starting with a letter",
            )
            continue
        if not isinstance(entry, Map):
            report(pos, f"persona '{name}' must be a mapping with a 'when:' rule", None)
            continue
        for key in entry:
            if key not in _PERSONA_KEYS:
                report(
                    entry.key_at(key),
                    f"unknown key '{key}' in persona '{name}'",
                    suggest(key, _PERSONA_KEYS) or "a persona has 'label:' and 'when:'",
                )
        rule = entry.get("when")
        if rule is True:
            rule = "true"
        if not isinstance(rule, str):
            report(
                entry.at("when") if "when" in entry else pos,
                f"persona '{name}' needs a 'when:' rule",
                "e.g. when: contact.role == 'admin'",
            )
            continue
        expr = _parse_rule(rule, scope, entry.at("when"), report, text)
        label = entry.get("label")
        if label is not None and not isinstance(label, str | Map):
            report(entry.at("label"), "a label is text, or a mapping of locale to text", None)
            label = None
        if expr is not None:
            positions[name] = entry.at("when")
            personas.append(Persona(name, rule, expr, label, entry.get("description")))
    return tuple(personas), positions


def _persona_names(doc: Map) -> tuple[str, ...]:
    block = doc.get("personas")
    return tuple(n for n in block if NAME_RE.match(n)) if isinstance(block, Map) else ()


def _planned(
    entry: Map, name: str, persona_names: tuple[str, ...], report: Report
) -> tuple[str, ...] | None:
    """A segment's ``personas: [admin, end_user]``: the personas its journeys plan for."""
    if "personas" not in entry:
        return None
    value = entry["personas"]
    if not isinstance(value, Seq) or not value:
        report(
            entry.at("personas"),
            f"'personas' of '{name}' must be a non-empty list of persona names",
            "e.g. personas: [admin, end_user, executive]",
        )
        return None
    planned: list[str] = []
    for item, pos in zip(value, value.item_pos, strict=True):
        if not isinstance(item, str):
            report(pos, f"bad persona {item!r} in '{name}'", "name a persona of 'personas:'")
        elif item not in persona_names:
            report(
                pos,
                f"unknown persona '{item}' in '{name}'",
                suggest(item, persona_names)
                or (
                    f"personas: {', '.join(persona_names)}"
                    if persona_names
                    else "define it under a top-level 'personas:' mapping"
                ),
            )
        elif item in planned:
            report(pos, f"persona '{item}' is listed twice in '{name}'", None)
        else:
            planned.append(item)
    return tuple(planned)


def _segment(
    item: _Entry,
    seen: dict[str, Pos],
    tier_names: tuple[str, ...],
    persona_names: tuple[str, ...],
    report: Report,
    text: str,
) -> Segment | None:
    name, entry, pos = item.name, item.entry, item.pos
    if not NAME_RE.match(name):
        report(
            pos,
            f"bad segment name '{name}'",
            "use lowercase letters, digits and _, starting with a letter",
        )
    if name in seen:
        report(
            pos,
            f"'{name}' is defined twice",
            f"first at line {seen[name].line}; names are shared by tiers and segments",
        )
        return None
    seen[name] = pos
    if not isinstance(entry, Map):
        report(pos, f"'{name}' must be a mapping with a 'when:' rule", None)
        return None
    for key in entry:
        if key not in _ENTRY_KEYS:
            report(entry.key_at(key), f"unknown key '{key}' in '{name}'", suggest(key, _ENTRY_KEYS))
    rule = entry.get("when")
    if rule is True:
        rule = "true"
    if not isinstance(rule, str):
        report(
            entry.at("when") if "when" in entry else pos,
            f"'{name}' needs a 'when:' rule",
            "e.g. when: arr >= 5000000",
        )
        return None
    scope = Scope(
        engagement=False, account_only=item.is_tier, tiers=tier_names, personas=persona_names
    )
    planned = _planned(entry, name, persona_names, report)
    expr = _parse_rule(rule, scope, entry.at("when"), report, text)
    if expr is None:
        return None
    label = entry.get("label")
    if label is not None and not isinstance(label, str | Map):
        report(entry.at("label"), "a label is text, or a mapping of locale to text", None)
        label = None
    return Segment(name, rule, expr, item.is_tier, label, entry.get("description"), planned)


def _check_lowering(
    segset: SegmentSet,
    positions: Mapping[str, Pos],
    persona_positions: Mapping[str, Pos],
    report: Report,
) -> None:
    """The last check: every rule must have a set-based form (the engine runs it as SQL)."""
    lowering = Lowering(segset)
    for persona in segset.personas:
        try:
            lowering.lower(persona.expr)
        except ValueError as exc:
            report(
                persona_positions[persona.name],
                f"persona '{persona.name}' cannot be turned into SQL: {exc}",
                "compare fields with values, e.g. contact.role == 'admin'",
            )
    for segment in (*segset.tiers, *segset.segments):
        try:
            lowering.where(segment.name)
        except ValueError as exc:
            report(
                positions[segment.name],
                f"'{segment.name}' cannot be turned into SQL: {exc}",
                "compare fields with values, e.g. days_to_renewal <= 90",
            )


def _parse_rule(rule: str, scope: Scope, pos: Pos, report: Report, text: str) -> nodes.Expr | None:
    offset = _quote_offset(text, pos)
    try:
        expr = parse(rule)
    except TemplateSyntaxError as exc:
        report(
            Pos(pos.line + (exc.lineno or 1) - 1, pos.col + offset),
            f"cannot read the rule: {exc.message}",
            "see docs/dsl.md#conditions",
        )
        return None
    found: list[ExprProblem] = check(expr, scope)
    for problem in found:
        line, col = locate(rule, problem.needle)
        at = Pos(pos.line + line, (pos.col + offset + col) if line == 0 else col + 1)
        report(at, problem.message, problem.hint)
    return None if found else expr


def _quote_offset(text: str, pos: Pos) -> int:
    """1 when the scalar at ``pos`` starts with a quote (the rule text starts after it)."""
    lines = text.splitlines()
    if 0 < pos.line <= len(lines):
        line = lines[pos.line - 1]
        if pos.col - 1 < len(line) and line[pos.col - 1] in "'\"":
            return 1
    return 0


def check_names(segset: SegmentSet, names: Sequence[str]) -> list[tuple[str, str | None]]:
    """The names among ``names`` that the segments file does not define, with hints."""
    return [(n, suggest(n, segset.names)) for n in names if n not in segset]


# ---------------------------------------------------------------------------- lowering


class Lowering:
    """Lowers the checked rules of one segments file to :mod:`~campaigns.journeys.rules`.

    Raises :class:`ValueError` saying why when a rule has no set-based form (``is number``,
    ``days_to_renewal`` compared with a field...). The tier rules are lowered once, for the
    tiers themselves and for every rule that reads ``tier``.
    """

    def __init__(self, segset: SegmentSet) -> None:
        self.segset = segset
        self._tiers: tuple[tuple[Rule, str], ...] | None = None
        self._personas: tuple[tuple[Rule, str], ...] | None = None

    def where(self, name: str) -> Rule:
        """The rule a contact (joined to its account) meets to be in segment ``name``."""
        segment = self.segset.get(name)
        if segment.is_tier:
            self.tiers()
            return Compare(TierOf(), "eq", name)
        return self.lower(segment.expr)

    def tiers(self) -> tuple[tuple[Rule, str], ...]:
        """Each tier's rule and name, in order: the first that holds names the tier."""
        if self._tiers is None:
            self._tiers = tuple((self.lower(t.expr), t.name) for t in self.segset.tiers)
        return self._tiers

    def personas(self) -> tuple[tuple[Rule, str], ...]:
        """Each persona's rule and name, in order: the first that holds names the persona."""
        if self._personas is None:
            self._personas = tuple((self.lower(p.expr), p.name) for p in self.segset.personas)
        return self._personas

    def lower(self, node: nodes.Node) -> Rule:
        """The rule for a checked condition (a segment's, or a journey's ``audience``)."""
        if isinstance(node, nodes.Const):
            return Always(bool(node.value))
        if isinstance(node, nodes.And):
            return AllOf((self.lower(node.left), self.lower(node.right)))
        if isinstance(node, nodes.Or):
            return AnyOf((self.lower(node.left), self.lower(node.right)))
        if isinstance(node, nodes.Not):
            if isinstance(node.node, nodes.Test) and node.node.name == "none":
                return IsNone(self._operand(node.node.node, None), negated=True)
            return Negation(self.lower(node.node))
        if isinstance(node, nodes.Test):
            return self._test(node)
        if isinstance(node, nodes.Compare):
            parts: list[Rule] = []
            left: nodes.Node = node.expr
            for operand in node.ops:
                parts.append(self._compare(left, operand.op, operand.expr))
                left = operand.expr
            return AllOf(tuple(parts)) if len(parts) > 1 else parts[0]
        ref = field_ref(node)
        if isinstance(ref, Ref):
            column = self._operand(node, True)
            if ref.kind == "bool" or ref.scope.endswith("_attr"):
                return IsTrue(column)
            return IsNone(column, negated=True)
        raise ValueError(f"'{type(node).__name__}' has no SQL form")

    def _test(self, node: nodes.Test) -> Rule:
        operand = self._operand(node.node, None)
        if node.name in ("none", "undefined"):
            return IsNone(operand)
        if node.name == "defined":
            return IsNone(operand, negated=True)
        raise ValueError(f"test '{node.name}' has no SQL form")

    def _compare(self, left: nodes.Node, op: str, right: nodes.Node) -> Rule:
        left_value, right_value = _constant(left), _constant(right)
        if not isinstance(left_value, _Unwritten) and not isinstance(right_value, _Unwritten):
            return Always(compare_constants(left_value, op, right_value))
        if not isinstance(left_value, _Unwritten):  # 5 < arr  ->  arr > 5
            if op in ("in", "notin"):
                raise ValueError("'in' needs a field on its left")
            return self._compare(right, FLIP[op], left)
        ref = field_ref(left)
        if not isinstance(ref, Ref):
            raise ValueError("a comparison needs a field")
        day_count = ref.scope == "account" and ref.name in DAY_COUNTS
        if isinstance(right_value, _Unwritten):
            if day_count:
                raise ValueError(f"{ref.name} can only be compared with a number")
            return Compare(self._operand(left, None), op, self._operand(right, None))
        if day_count:
            return _days(ref.name, op, right_value)
        sample = right_value[0] if isinstance(right_value, list) and right_value else right_value
        return Compare(self._operand(left, sample), op, _coerce(ref, right_value))

    def _operand(self, node: nodes.Node, sample: Constant) -> Operand:
        """The column ``node`` reads; ``sample`` (a value it is compared with) says how a JSON
        attribute is read."""
        ref = field_ref(node)
        if not isinstance(ref, Ref):
            raise ValueError("not a field")
        if ref.scope == "account":
            if ref.name == "tier":
                self.tiers()
                return TierOf()
            if ref.name in DAY_COUNTS:
                if sample is not None:
                    raise ValueError(f"{ref.name} can only be compared with a number")
                # Only `is none` reaches here: the day count is missing when its date is.
                return Column("account", DAY_COUNTS[ref.name])
            return Column("account", ref.name)
        if ref.scope == "contact":
            if ref.name == PERSONA:
                self.personas()
                return PersonaOf()
            return Column("contact", ref.name)
        table: Table = "account" if ref.scope == "account_attr" else "contact"
        return Column(table, ref.name, _json_type(sample))


def _json_type(sample: Constant) -> JsonType:
    if isinstance(sample, bool):
        return "bool"
    if isinstance(sample, int | float):
        return "number"
    return "string"


def _coerce(ref: Ref, value: Constant) -> Constant:
    """A written value as its column holds it: dates parsed, email addresses lowercased."""
    if isinstance(value, list):
        return [_coerce(ref, v) for v in value]
    if ref.kind == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if ref.name == "email" and ref.scope == "contact" and isinstance(value, str):
        return value.lower()
    return value


def _days(name: str, op: str, value: Constant) -> Rule:
    # days_to_renewal = renewal_date - today        ->  renewal_date  op  today + N
    # days_since_start = today - contract_start      ->  contract_start op' today - N
    column = Column("account", DAY_COUNTS[name])
    sign, op2 = (1, op) if name == "days_to_renewal" else (-1, FLIP.get(op, op))
    if op in ("in", "notin"):
        values = value if isinstance(value, list) else [value]
        numbers = [_number(name, v) for v in values if v is not None]
        return DaysFromToday(column, op, [sign * int(n) for n in numbers if float(n).is_integer()])
    if value is None:
        return DaysFromToday(column, op, None)
    number = _number(name, value)
    if op in ("eq", "ne") and not float(number).is_integer():
        return Always(False) if op == "eq" else IsNone(column, negated=True)
    # For a fractional N, `days <= N` is `days <= floor(N)` and `days >= N` is `days >= ceil(N)`.
    rounding = {"lt": math.ceil, "lteq": math.floor, "gt": math.floor, "gteq": math.ceil}
    days = rounding[op](number) if op in rounding else number
    return DaysFromToday(column, op2, sign * int(days))


def _number(name: str, value: Constant) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} can only be compared with a number")
    return value


class _Unwritten:
    """Not a constant: a field, or an expression over fields."""


def _constant(node: nodes.Node) -> Constant | _Unwritten:
    if isinstance(node, nodes.Const):
        value: Constant = node.value
        return value
    if (
        isinstance(node, nodes.Neg)
        and isinstance(node.node, nodes.Const)
        and isinstance(node.node.value, int | float)
    ):
        negative: Constant = -node.node.value
        return negative
    if isinstance(node, nodes.List | nodes.Tuple):
        values = [_constant(item) for item in node.items]
        written = [v for v in values if not isinstance(v, _Unwritten)]
        return written if len(written) == len(values) else _Unwritten()
    return _Unwritten()
