"""Product usage: the daily metrics a product posts per account (``POST /api/v1/usage``,
``campaigns import usage``), kept one row per account, metric and day in ``usage_metrics``.

A day posted again replaces the value (the product recounted it): the rows go in as one
upsert, ``INSERT ... ON CONFLICT (account_id, metric, day) DO UPDATE``, the same statement on
SQLite and PostgreSQL. Scorecards (:mod:`campaigns.insight.health`) read the rows over a
window; nothing here interprets them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from campaigns.store.models import Account, UsageMetric

METRIC = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""A metric's name: a lower-case letter, then up to 63 lower-case letters, digits or ``_``."""

MAX_METRICS = 64
"""Metrics in one row (one account's day)."""

MAX_VALUE = 1e15
"""The largest value taken: a count or a sum, never an identifier."""


@dataclass(frozen=True)
class UsageRow:
    """One account's metrics on one day, as posted: the account by its ``external_id``."""

    account: str
    day: date
    metrics: Mapping[str, float]


def metric_problem(name: object) -> str | None:
    """Why ``name`` cannot be a metric's name, or None when it can."""
    if not isinstance(name, str) or not METRIC.fullmatch(name):
        shown = name[:40] if isinstance(name, str) else name
        return (
            f"{shown!r}: a metric's name is a lower-case letter, then up to 63 lower-case "
            "letters, digits or _ (e.g. active_users)"
        )
    return None


def value_problem(value: object) -> str | None:
    """Why ``value`` cannot be a metric's value (a finite number from 0 to 1e15), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "expected a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "expected a finite number"
    if value < 0:
        return f"{value}: a usage value is 0 or more"
    if value > MAX_VALUE:
        return f"{value}: larger than {MAX_VALUE:g}"
    return None


def account_ids(session: Session, external_ids: Iterable[str]) -> dict[str, int]:
    """The id of each account among ``external_ids`` that exists."""
    wanted = sorted(set(external_ids))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        found.update(
            (external_id, id)
            for external_id, id in session.execute(
                select(Account.external_id, Account.id).where(Account.external_id.in_(chunk))
            )
        )
    return found


def store_usage(
    session: Session, rows: Iterable[UsageRow], ids: Mapping[str, int], now: datetime
) -> int:
    """Upsert ``rows`` (accounts resolved by ``ids``) in one statement; how many values.

    The same account, metric and day twice in ``rows``: the later value counts (one
    statement may not update a row twice)."""
    values: dict[tuple[int, str, date], float] = {}
    for row in rows:
        account_id = ids[row.account]
        for metric, value in row.metrics.items():
            values[(account_id, metric, row.day)] = float(value)
    if not values:
        return 0
    params = [
        {"account_id": a, "metric": m, "day": d, "value": v, "recorded_at": now}
        for (a, m, d), v in values.items()
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(UsageMetric)
    statement = statement.on_conflict_do_update(
        index_elements=[UsageMetric.account_id, UsageMetric.metric, UsageMetric.day],
        set_={"value": statement.excluded.value, "recorded_at": statement.excluded.recorded_at},
    )
    session.execute(statement, params)
    return len(params)
