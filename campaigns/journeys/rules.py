"""Segment rules as plain data: what a set-based query over contacts and accounts must test.

A condition's Jinja AST says what a marketer wrote; a :data:`Rule` says what the database
must check: which column (a typed field, a JSON attribute read as a number, text or
true/false, or the account's tier as the tier rules decide it), which comparison, which
constant. :mod:`campaigns.journeys.segments` lowers checked rules into this form and so
decides, without a database, whether a rule can run at all; the engine's
:mod:`campaigns.engine.audience` only spells a rule in SQL. The language stays free of
SQLAlchemy, and the SQL stays free of the language's grammar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

Table = Literal["account", "contact"]
JsonType = Literal["bool", "number", "string"]
Constant = bool | int | float | str | date | None | list["Constant"]
"""A value written in a rule (lists for ``in``); dates already parsed."""


@dataclass(frozen=True)
class Column:
    """A column of ``contacts LEFT JOIN accounts``: a typed field, or a JSON attribute
    (``json`` says how its value is read)."""

    table: Table
    name: str
    json: JsonType | None = None


@dataclass(frozen=True)
class TierOf:
    """The account's tier as the tier rules decide it now (first match wins)."""


@dataclass(frozen=True)
class PersonaOf:
    """The contact's persona as the persona rules decide it now (first match wins)."""


Operand = Column | TierOf | PersonaOf


@dataclass(frozen=True)
class Always:
    """``true`` or ``false``: a rule, or a comparison of two constants, settled already."""

    value: bool


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Rule, ...]


@dataclass(frozen=True)
class Negation:
    """Two-valued NOT: a rule on a missing value is false, so its negation holds."""

    rule: Rule


@dataclass(frozen=True)
class IsNone:
    operand: Operand
    negated: bool = False


@dataclass(frozen=True)
class IsTrue:
    """A field used as a condition on its own (``contact.subscribed``, ``attributes.vip``)."""

    operand: Operand


@dataclass(frozen=True)
class Compare:
    """``operand op value``; ``op`` is Jinja's name (eq, ne, lt, lteq, gt, gteq, in, notin)."""

    operand: Operand
    op: str
    value: Constant | Operand


@dataclass(frozen=True)
class DaysFromToday:
    """``column op today + days``: how ``days_to_renewal`` and ``days_since_start`` run, so the
    date's index serves. ``days`` is a list for ``in``, None for a comparison with none."""

    column: Column
    op: str
    days: int | list[int] | None


Rule = Always | AllOf | AnyOf | Negation | IsNone | IsTrue | Compare | DaysFromToday

FLIP = {"lt": "gt", "lteq": "gteq", "gt": "lt", "gteq": "lteq", "eq": "eq", "ne": "ne"}
"""The comparison seen from the other side: ``5 < arr`` is ``arr > 5``."""


def compare_constants(a: Constant, op: str, b: Constant) -> bool:
    """What ``a op b`` gives when both sides are written out; False when they do not compare."""
    try:
        return bool(
            {
                "eq": lambda: a == b,
                "ne": lambda: a != b,
                "lt": lambda: a < b,  # type: ignore[operator]
                "lteq": lambda: a <= b,  # type: ignore[operator]
                "gt": lambda: a > b,  # type: ignore[operator]
                "gteq": lambda: a >= b,  # type: ignore[operator]
                "in": lambda: a in b,  # type: ignore[operator]
                "notin": lambda: a not in b,  # type: ignore[operator]
            }[op]()
        )
    except TypeError:
        return False
