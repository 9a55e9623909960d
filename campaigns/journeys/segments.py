"""Segments and touch tiers: rules over account and contact fields, compiled to SQL.

``journeys/segments.yaml`` lists the tiers (first match wins, so every account lands in at
most one) and the segments journeys target. Each rule is a condition (see
:mod:`campaigns.journeys.expressions`) translated into one SQLAlchemy ``WHERE`` clause, so counting
or tiering a million contacts is a single set-based statement on SQLite or PostgreSQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from sqlalchemy import ColumnElement, and_, case, false, func, not_, null, or_, select, true, update
from sqlalchemy.orm import Session

from campaigns.exceptions import Problem, SegmentError
from campaigns.journeys.expressions import (
    ExprProblem,
    Ref,
    Scope,
    check,
    field_ref,
    locate,
    parse,
    suggest,
)
from campaigns.journeys.yamlsource import Map, Pos, YamlProblem, load, read
from campaigns.store.models import Account, Contact

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SECTION_KEYS = ("tiers", "segments")
_ENTRY_KEYS = ("when", "label", "description")


@dataclass(frozen=True)
class Segment:
    """A named rule. ``is_tier``: one of the ordered, mutually exclusive touch tiers."""

    name: str
    rule: str
    expr: nodes.Expr
    is_tier: bool
    label: str | Mapping[str, str] | None = None
    description: str | None = None

    def label_for(self, locale: str = "en") -> str:
        if isinstance(self.label, Mapping):
            return self.label.get(locale) or self.label.get("en") or self.name
        return self.label or self.name


@dataclass(frozen=True)
class SegmentSet:
    """The tiers (in order) and the segments of one segments file."""

    tiers: tuple[Segment, ...]
    segments: tuple[Segment, ...]
    path: str = "segments.yaml"

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


# ---------------------------------------------------------------------------- loading


def load_segments(path: Path) -> SegmentSet:
    """Read and check a segments file; raise :class:`SegmentError` with every problem."""
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
    return parse_segments(text, str(path))


def parse_segments(text: str, path: str = "segments.yaml") -> SegmentSet:
    problems: list[Problem] = []

    def report(pos: Pos, message: str, hint: str | None = None) -> None:
        problems.append(Problem(path, pos.line, pos.col, message, hint))

    try:
        doc = load(text)
    except YamlProblem as exc:
        raise SegmentError(
            [Problem(path, exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    if not isinstance(doc, Map):
        raise SegmentError(
            [
                Problem(
                    path, 1, 1, "the segments file must be a mapping with 'tiers:' and 'segments:'"
                )
            ]
        )
    for key in doc:
        if key not in _SECTION_KEYS:
            report(
                doc.key_at(key),
                f"unknown key '{key}'",
                suggest(key, _SECTION_KEYS) or "use 'tiers:' and 'segments:'",
            )
    raw: list[tuple[str, Map, Pos, bool]] = []
    for section in _SECTION_KEYS:
        block = doc.get(section)
        if block is None:
            continue
        if not isinstance(block, Map):
            report(doc.at(section), f"'{section}' must be a mapping of names to rules")
            continue
        for name, entry in block.items():
            raw.append((name, entry, block.key_at(name), section == "tiers"))
    seen: dict[str, Pos] = {}
    tier_names = tuple(name for name, _, _, is_tier in raw if is_tier)
    tiers: list[Segment] = []
    segments: list[Segment] = []
    positions: dict[str, Pos] = {}
    for name, entry, pos, is_tier in raw:
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
            continue
        seen[name] = pos
        if not isinstance(entry, Map):
            report(pos, f"'{name}' must be a mapping with a 'when:' rule")
            continue
        for key in entry:
            if key not in _ENTRY_KEYS:
                report(
                    entry.key_at(key), f"unknown key '{key}' in '{name}'", suggest(key, _ENTRY_KEYS)
                )
        rule = entry.get("when")
        if rule is True:
            rule = "true"
        if not isinstance(rule, str):
            report(
                entry.at("when") if "when" in entry else pos,
                f"'{name}' needs a 'when:' rule",
                "e.g. when: arr >= 5000000",
            )
            continue
        scope = Scope(engagement=False, account_only=is_tier, tiers=tier_names)
        expr = _parse_rule(rule, scope, entry.at("when"), report, text)
        if expr is None:
            continue
        label = entry.get("label")
        if label is not None and not isinstance(label, str | Map):
            report(entry.at("label"), "a label is text, or a mapping of locale to text")
            label = None
        segment = Segment(name, rule, expr, is_tier, label, entry.get("description"))
        positions[name] = entry.at("when")
        (tiers if is_tier else segments).append(segment)
    if not problems:
        # The last check: every rule must compile to SQL.
        segset = SegmentSet(tuple(tiers), tuple(segments), path)
        compiler = RuleCompiler(segset, date.today())
        for segment in (*tiers, *segments):
            try:
                compiler.where(segment.name)
            except ValueError as exc:
                where = positions[segment.name]
                report(
                    where,
                    f"'{segment.name}' cannot be turned into SQL: {exc}",
                    "compare fields with values, e.g. days_to_renewal <= 90",
                )
    if problems:
        raise SegmentError(sorted(problems, key=lambda p: (p.line, p.col)))
    return SegmentSet(tuple(tiers), tuple(segments), path)


def _parse_rule(rule: str, scope: Scope, pos: Pos, report: Any, text: str) -> nodes.Expr | None:
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


# ---------------------------------------------------------------------------- SQL

_FLIP = {"lt": "gt", "lteq": "gteq", "gt": "lt", "gteq": "lteq", "eq": "eq", "ne": "ne"}


class RuleCompiler:
    """Translates checked rules into SQL over ``contacts LEFT JOIN accounts``.

    ``today`` anchors ``days_to_renewal`` and ``days_since_start``; both are rewritten into
    comparisons of the date column with a constant, so indexes on the dates are used.
    """

    def __init__(self, segset: SegmentSet, today: date) -> None:
        self.segset = segset
        self.today = today
        self._tier_case: ColumnElement[Any] | None = None

    # -- public

    def where(self, name: str) -> ColumnElement[bool]:
        """The clause a contact (joined to its account) meets to be in segment ``name``."""
        segment = self.segset.get(name)
        if segment.is_tier:
            return self.tier_case() == name
        return self.compile(segment.expr)

    def tier_case(self) -> ColumnElement[Any]:
        """``CASE WHEN <tier 1> THEN 'name 1' ... END``: an account's tier, first match wins."""
        if self._tier_case is None:
            whens = [(self.compile(t.expr), t.name) for t in self.segset.tiers]
            self._tier_case = case(*whens, else_=None) if whens else null()
        assert self._tier_case is not None
        return self._tier_case

    def compile(self, node: nodes.Node) -> ColumnElement[Any]:
        if isinstance(node, nodes.Const):
            return true() if node.value else false()
        if isinstance(node, nodes.And):
            return and_(self.compile(node.left), self.compile(node.right))
        if isinstance(node, nodes.Or):
            return or_(self.compile(node.left), self.compile(node.right))
        if (
            isinstance(node, nodes.Not)
            and isinstance(node.node, nodes.Test)
            and node.node.name == "none"
        ):
            return self._column(node.node.node, None).is_not(None)
        if isinstance(node, nodes.Not):
            # Two-valued NOT: a rule on a missing value (NULL) is false, so its negation holds.
            return not_(case((self.compile(node.node), True), else_=False))
        if isinstance(node, nodes.Test):
            column = self._column(node.node, None)
            if node.name in ("none", "undefined"):
                return column.is_(None)
            if node.name == "defined":
                return column.is_not(None)
            raise ValueError(f"test '{node.name}' has no SQL form")
        if isinstance(node, nodes.Compare):
            parts = []
            left: nodes.Node = node.expr
            for operand in node.ops:
                parts.append(self._compare(left, operand.op, operand.expr))
                left = operand.expr
            return and_(*parts) if len(parts) > 1 else parts[0]
        ref = field_ref(node)
        if isinstance(ref, Ref):
            column = self._column(node, True)
            return (
                column.is_(True)
                if ref.kind == "bool" or ref.scope.endswith("_attr")
                else column.is_not(None)
            )
        raise ValueError(f"'{type(node).__name__}' has no SQL form")

    # -- internals

    def _compare(self, left: nodes.Node, op: str, right: nodes.Node) -> ColumnElement[bool]:
        left_value, right_value = _constant(left), _constant(right)
        if left_value is not _NOT_CONST and right_value is not _NOT_CONST:
            return true() if _py_compare(left_value, op, right_value) else false()
        if left_value is not _NOT_CONST:  # 5 < arr  ->  arr > 5
            if op in ("in", "notin"):
                raise ValueError("'in' needs a field on its left")
            return self._compare(right, _FLIP[op], left)
        ref = field_ref(left)
        if not isinstance(ref, Ref):
            raise ValueError("a comparison needs a field")
        if right_value is _NOT_CONST:
            if ref.scope == "account" and ref.name in ("days_to_renewal", "days_since_start"):
                raise ValueError(f"{ref.name} can only be compared with a number")
            return _apply(self._column(left, None), op, self._column(right, None))
        if ref.scope == "account" and ref.name in ("days_to_renewal", "days_since_start"):
            return self._days(ref.name, op, right_value)
        column = self._column(
            left, right_value[0] if isinstance(right_value, list) and right_value else right_value
        )
        if ref.kind == "date":
            right_value = (
                [date.fromisoformat(v) for v in right_value]
                if isinstance(right_value, list)
                else date.fromisoformat(right_value)
            )
        if ref.name == "email" and ref.scope == "contact":
            right_value = (
                [v.lower() for v in right_value]
                if isinstance(right_value, list)
                else right_value.lower()
            )
        return _apply(column, op, right_value)

    def _days(self, name: str, op: str, value: Any) -> ColumnElement[bool]:
        # days_to_renewal = renewal_date - today        ->  renewal_date  op  today + N
        # days_since_start = today - contract_start      ->  contract_start op' today - N
        if name == "days_to_renewal":
            column, sign, op2 = Account.renewal_date, 1, op
        else:
            column, sign, op2 = Account.contract_start, -1, (_FLIP.get(op, op))

        def at(n: float, rounding: str = "exact") -> date:
            days = (
                math.floor(n) if rounding == "floor" else math.ceil(n) if rounding == "ceil" else n
            )
            return self.today + timedelta(days=sign * int(days))

        if op in ("in", "notin"):
            dates = [at(v) for v in value if float(v).is_integer()]
            return _apply(column, op, dates)
        if value is None:
            return _apply(column, op, None)
        if op in ("eq", "ne") and not float(value).is_integer():
            return false() if op == "eq" else column.is_not(None)
        # For a fractional N, `days <= N` is `days <= floor(N)` and `days >= N` is `days >= ceil(N)`.
        rounding = {"lt": "ceil", "lteq": "floor", "gt": "floor", "gteq": "ceil"}.get(op, "exact")
        return _apply(column, op2, at(value, rounding))

    def _column(self, node: nodes.Node, sample: Any) -> Any:
        ref = field_ref(node)
        if not isinstance(ref, Ref):
            raise ValueError("not a field")
        if ref.scope == "account":
            if ref.name == "tier":
                return self.tier_case()
            if ref.name in ("days_to_renewal", "days_since_start"):
                if sample is not None:
                    raise ValueError(f"{ref.name} can only be compared with a number")
                # Only `is none` reaches here: the day count is missing when its date is.
                return (
                    Account.renewal_date
                    if ref.name == "days_to_renewal"
                    else Account.contract_start
                )
            return getattr(Account, ref.name)
        if ref.scope == "contact":
            return getattr(Contact, ref.name)
        json_column = Account.attributes if ref.scope == "account_attr" else Contact.attributes
        element = json_column[ref.name]
        if isinstance(sample, bool):
            return element.as_boolean()
        if isinstance(sample, int | float):
            return element.as_float()
        return element.as_string()


_NOT_CONST = object()


def _constant(node: nodes.Node) -> Any:
    if isinstance(node, nodes.Const):
        return node.value
    if (
        isinstance(node, nodes.Neg)
        and isinstance(node.node, nodes.Const)
        and isinstance(node.node.value, int | float)
    ):
        return -node.node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        values = [_constant(item) for item in node.items]
        return _NOT_CONST if any(v is _NOT_CONST for v in values) else values
    return _NOT_CONST


def _py_compare(a: Any, op: str, b: Any) -> bool:
    try:
        return bool(
            {
                "eq": lambda: a == b,
                "ne": lambda: a != b,
                "lt": lambda: a < b,
                "lteq": lambda: a <= b,
                "gt": lambda: a > b,
                "gteq": lambda: a >= b,
                "in": lambda: a in b,
                "notin": lambda: a not in b,
            }[op]()
        )
    except TypeError:
        return False


def _apply(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if value is None:
        if op == "eq":
            return column.is_(None)
        if op == "ne":
            return column.is_not(None)
        return false()
    if op == "eq":
        return column == value
    if op == "ne":  # None != 'x' holds, as in the journey's own evaluation
        return column.is_distinct_from(value)
    if op == "lt":
        return column < value
    if op == "lteq":
        return column <= value
    if op == "gt":
        return column > value
    if op == "gteq":
        return column >= value
    if op == "in":
        values = (
            list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        )
        return column.in_(values) if values else false()
    if op == "notin":
        values = (
            list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        )
        return or_(column.is_(None), column.not_in(values)) if values else true()
    raise ValueError(f"unsupported comparison {op}")


# ---------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class SegmentCount:
    name: str
    is_tier: bool
    label: str
    accounts: int
    contacts: int


def count(
    session: Session, segset: SegmentSet, today: date, locale: str = "en"
) -> list[SegmentCount]:
    """Accounts and contacts in every tier and segment: one scan of each table.

    Every segment is a ``SUM(CASE WHEN rule THEN 1 END)`` column of the same query, so the
    cost is one pass over ``contacts LEFT JOIN accounts`` however many segments there are.
    """
    compiler = RuleCompiler(segset, today)
    every = [*segset.tiers, *segset.segments]
    if not every:
        return []
    contact_cols = [
        func.coalesce(func.sum(case((compiler.where(s.name), 1), else_=0)), 0) for s in every
    ]
    contact_row = session.execute(
        select(*contact_cols)
        .select_from(Contact)
        .outerjoin(Account, Contact.account_id == Account.id)
    ).one()
    account_counts: dict[str, int] = {}
    account_level = [
        s for s in every if all(not r.scope.startswith("contact") for r in _refs(s, segset))
    ]
    if account_level:
        cols = [
            func.coalesce(func.sum(case((compiler.where(s.name), 1), else_=0)), 0)
            for s in account_level
        ]
        row = session.execute(select(*cols).select_from(Account)).one()
        account_counts = {s.name: int(v) for s, v in zip(account_level, row, strict=True)}
    contact_level = [s for s in every if s.name not in account_counts]
    if contact_level:
        cols = [
            func.coalesce(
                func.count(func.distinct(case((compiler.where(s.name), Contact.account_id)))), 0
            )
            for s in contact_level
        ]
        row = session.execute(
            select(*cols).select_from(Contact).outerjoin(Account, Contact.account_id == Account.id)
        ).one()
        account_counts.update({s.name: int(v) for s, v in zip(contact_level, row, strict=True)})
    return [
        SegmentCount(s.name, s.is_tier, s.label_for(locale), account_counts[s.name], int(n))
        for s, n in zip(every, contact_row, strict=True)
    ]


def _refs(segment: Segment, segset: SegmentSet) -> list[Ref]:
    from campaigns.journeys.expressions import referenced_fields

    refs = referenced_fields(segment.expr)
    if any(r.scope == "account" and r.name == "tier" for r in refs):
        for tier in segset.tiers:
            refs.extend(referenced_fields(tier.expr))
    return refs


def apply_tiers(session: Session, segset: SegmentSet, today: date) -> int:
    """Store every account's tier in ``accounts.tier`` with one ``UPDATE``; return rows changed."""
    compiler = RuleCompiler(segset, today)
    tier = compiler.tier_case()
    result = session.execute(
        update(Account).where(Account.tier.is_distinct_from(tier)).values(tier=tier)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def members(segset: SegmentSet, names: Sequence[str], today: date) -> Any:
    """A ``SELECT contacts.id`` of the contacts in any of the segments ``names``."""
    compiler = RuleCompiler(segset, today)
    clause = or_(*(compiler.where(n) for n in names)) if names else false()
    return select(Contact.id).outerjoin(Account, Contact.account_id == Account.id).where(clause)


def check_names(segset: SegmentSet, names: Sequence[str]) -> list[tuple[str, str | None]]:
    """The names among ``names`` that the segments file does not define, with hints."""
    return [(n, suggest(n, segset.names)) for n in names if n not in segset]
