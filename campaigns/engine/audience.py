"""Who is in a segment, asked of the database in one set-based statement.

The journey language lowers every segment rule to plain data
(:mod:`campaigns.journeys.rules`); this module spells those rules in SQLAlchemy over
``contacts LEFT JOIN accounts`` and runs the three questions the engine and the CLI ask:
who is in these segments (:func:`members`), how many are in each (:func:`count`), and which
tier each account is in (:func:`apply_tiers`). A million contacts is one scan, on SQLite
or PostgreSQL, however many segments there are.

Amounts are compared in the base currency (:mod:`campaigns.currency`): ``arr`` and ``ltv``
are spelled ``CASE accounts.currency WHEN 'JPY' THEN arr WHEN 'USD' THEN ROUND(arr * 150, 2)
... END``, with the segment set's rates written into the statement, so a rule stays one
statement and one scan; ``arr_local`` and ``ltv_local`` read the stored amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from jinja2 import nodes
from sqlalchemy import (
    ColumnElement,
    Numeric,
    Select,
    and_,
    case,
    false,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import CTE

from campaigns.journeys.fields import IN_BASE_CURRENCY, LOCAL_AMOUNTS
from campaigns.journeys.rules import (
    AllOf,
    Always,
    AnyOf,
    Column,
    Compare,
    DaysFromToday,
    IsNone,
    IsTrue,
    Negation,
    Operand,
    PersonaOf,
    Rule,
    TierOf,
)
from campaigns.journeys.segments import Lowering, SegmentSet
from campaigns.store.models import Account, Contact


class RuleCompiler:
    """Translates checked rules into SQL over ``contacts LEFT JOIN accounts``.

    ``today`` anchors ``days_to_renewal`` and ``days_since_start``: both are comparisons of
    the date column with a constant, so indexes on the dates are used.
    """

    def __init__(
        self, segset: SegmentSet, today: date, tier: ColumnElement[Any] | None = None
    ) -> None:
        self.segset = segset
        self.today = today
        self.lowering = Lowering(segset)
        # ``tier``: a column that already holds each account's tier (the tier rules worked
        # out once per account, see :func:`live_tiers`), read instead of the CASE.
        self._tier_case: ColumnElement[Any] | None = tier
        self._persona_case: ColumnElement[Any] | None = None
        self._in_base: dict[str, ColumnElement[Any]] = {}

    def where(self, name: str) -> ColumnElement[bool]:
        """The clause a contact (joined to its account) meets to be in segment ``name``."""
        return self.sql(self.lowering.where(name))

    def compile(self, expr: nodes.Expr) -> ColumnElement[bool]:
        """The clause for a checked condition, such as a journey's ``audience``."""
        return self.sql(self.lowering.lower(expr))

    def tier_case(self) -> ColumnElement[Any]:
        """``CASE WHEN <tier 1> THEN 'name 1' ... END``: an account's tier, first match wins."""
        if self._tier_case is None:
            whens = [(self.sql(rule), name) for rule, name in self.lowering.tiers()]
            self._tier_case = case(*whens, else_=None) if whens else null()
        return self._tier_case

    def persona_case(self) -> ColumnElement[Any]:
        """``CASE WHEN <persona 1> THEN 'name 1' ... END``: a contact's persona (over
        ``contacts LEFT JOIN accounts``), first match wins; NULL when none holds. The same
        answer as :func:`campaigns.engine.personas.persona_of` gives in Python."""
        if self._persona_case is None:
            whens = [(self.sql(rule), name) for rule, name in self.lowering.personas()]
            self._persona_case = case(*whens, else_=None) if whens else null()
        return self._persona_case

    def sql(self, rule: Rule) -> ColumnElement[bool]:
        """One lowered rule as a SQL clause."""
        if isinstance(rule, Always):
            return true() if rule.value else false()
        if isinstance(rule, AllOf):
            return and_(*(self.sql(part) for part in rule.parts))
        if isinstance(rule, AnyOf):
            return or_(*(self.sql(part) for part in rule.parts))
        if isinstance(rule, Negation):
            # Two-valued NOT: a rule on a missing value (NULL) is false, so its negation holds.
            return not_(case((self.sql(rule.rule), True), else_=False))
        if isinstance(rule, IsNone):
            column = self.column(rule.operand)
            return column.is_not(None) if rule.negated else column.is_(None)
        if isinstance(rule, IsTrue):
            return self.column(rule.operand).is_(True)
        if isinstance(rule, Compare):
            value = rule.value
            right = self.column(value) if isinstance(value, Column | TierOf | PersonaOf) else value
            return _apply(self.column(rule.operand), rule.op, right)
        return self._days(rule)

    def column(self, operand: Operand) -> ColumnElement[Any]:
        """The SQL for a column of the join, or for the tier (or persona) the rules give."""
        if isinstance(operand, PersonaOf):
            return self.persona_case()
        if not isinstance(operand, Column):
            return self.tier_case()
        table = Account if operand.table == "account" else Contact
        if operand.json is None:
            if table is Account and operand.name in IN_BASE_CURRENCY:
                return self.in_base(operand.name)
            name = (
                LOCAL_AMOUNTS.get(operand.name, operand.name) if table is Account else operand.name
            )
            mapped: ColumnElement[Any] = getattr(table, name)
            return mapped
        element = table.attributes[operand.name]
        if operand.json == "bool":
            return element.as_boolean()
        if operand.json == "number":
            return element.as_float()
        return element.as_string()

    def in_base(self, name: str) -> ColumnElement[Any]:
        """The account's amount ``name`` in the base currency, as
        :meth:`campaigns.currency.Currencies.to_base` computes it: times its currency's rate,
        rounded to the cent; NULL in a currency without a rate. The rates are numerals of
        the checked table, written into the statement (a bound parameter would reach SQLite
        as a float and PostgreSQL as an untyped value)."""
        if name not in self._in_base:
            amount: ColumnElement[Any] = getattr(Account, name)
            currencies = self.segset.currencies
            arms: dict[str, ColumnElement[Any]] = {currencies.base: amount}
            for code, rate in currencies.rates:
                numeral = literal_column(format(rate, "f"), Numeric())
                arms[code] = func.round(amount * numeral, 2)
            self._in_base[name] = case(arms, value=Account.currency, else_=null())
        return self._in_base[name]

    def _days(self, rule: DaysFromToday) -> ColumnElement[bool]:
        column = self.column(rule.column)
        if rule.days is None:
            return _apply(column, rule.op, None)
        if isinstance(rule.days, list):
            return _apply(column, rule.op, [self._day(n) for n in rule.days])
        return _apply(column, rule.op, self._day(rule.days))

    def _day(self, days: int) -> date:
        """Today plus ``days``; a count beyond the calendar stops at its first or last day."""
        try:
            return self.today + timedelta(days=days)
        except OverflowError:
            return date.max if days > 0 else date.min


def live_tiers(segset: SegmentSet, today: date) -> CTE:
    """Each account's tier by the tier rules today (``id``, ``tier``), worked out once per
    account: a rule that names a tier (``segments: [high_touch]``, ``tier == 'low_touch'``)
    then reads this column instead of the whole CASE for each of the account's contacts.
    Materialized, so that PostgreSQL does not fold the CASE back into every reference."""
    compiler = RuleCompiler(segset, today)
    query = select(Account.id.label("id"), compiler.tier_case().label("tier"))
    return query.cte("live_tiers").prefix_with("MATERIALIZED")


def _apply(column: ColumnElement[Any], op: str, value: object) -> ColumnElement[bool]:
    """``column op value``: a constant, a list of them (``in``), or another column."""
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
    if op in ("in", "notin"):
        values = list(value) if isinstance(value, list) else [value]
        if op == "in":
            return column.in_(values) if values else false()
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
    account_level = [s for s in every if not segset.reads_contacts(s)]
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


def unpriced(session: Session, segset: SegmentSet) -> dict[str, int]:
    """Accounts per currency that has no rate in ``segset``'s table: their ``arr`` and
    ``ltv`` compare with nothing (written before the table lost the rate, or by hand)."""
    rows = session.execute(
        select(Account.currency, func.count())
        .where(Account.currency.not_in(segset.currencies.codes))
        .group_by(Account.currency)
        .order_by(Account.currency)
    )
    return {code: int(n) for code, n in rows}


def apply_tiers(session: Session, segset: SegmentSet, today: date) -> int:
    """Store every account's tier in ``accounts.tier`` with one ``UPDATE``; return rows changed."""
    compiler = RuleCompiler(segset, today)
    tier = compiler.tier_case()
    result = session.execute(
        update(Account).where(Account.tier.is_distinct_from(tier)).values(tier=tier)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def members(segset: SegmentSet, names: Sequence[str], today: date) -> Select[int]:
    """A ``SELECT contacts.id`` of the contacts in any of the segments ``names``."""
    compiler = RuleCompiler(segset, today)
    clause = or_(*(compiler.where(n) for n in names)) if names else false()
    return select(Contact.id).outerjoin(Account, Contact.account_id == Account.id).where(clause)


def persona_counts(
    session: Session, segset: SegmentSet, today: date, names: Sequence[str] = ()
) -> dict[str | None, int]:
    """Contacts per persona (None: no persona's rule holds), among the members of the
    segments ``names`` (every contact when none is named): one ``GROUP BY`` over the
    persona ``CASE``."""
    compiler = RuleCompiler(segset, today)
    persona = compiler.persona_case().label("persona")
    query = select(persona, func.count()).select_from(Contact)
    query = query.outerjoin(Account, Contact.account_id == Account.id)
    if names:
        query = query.where(or_(*(compiler.where(n) for n in names)))
    rows = session.execute(query.group_by(persona))
    return {name: int(n) for name, n in rows}
