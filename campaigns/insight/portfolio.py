"""Many accounts at once: "My accounts" (a CSM's accounts, or everyone's, sorted by health,
renewal date or ARR, filtered by tier and band, a page at a time) and the health overview (the
band distribution per tier, and how accounts moved between bands this month). The dashboard,
the API and the CLI show the same numbers; one account's page is
:mod:`campaigns.insight.accounts`.

Each is a few set-based statements over ``accounts`` (and one day of ``health_scores``), with
the owner's accounts read through the index of (owner, health).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Numeric, case, func, literal_column, null, select
from sqlalchemy.orm import Session

from campaigns.currency import Currencies
from campaigns.insight.accounts import BANDS, iso_row
from campaigns.store.models import Account, HealthScore

SORTS = ("health", "renewal", "arr", "name")
"""What "My accounts" sorts by."""

PER_PAGE = 50


# ---------------------------------------------------------------------------- My accounts


@dataclass(frozen=True)
class ListedAccount:
    id: int
    external_id: str
    name: str
    tier: str | None
    owner_email: str | None
    arr: Decimal | None
    currency: str
    renewal_date: date | None
    days_to_renewal: int | None
    health_score: int | None
    health_band: str | None
    health_change_30d: float | None

    def to_json(self) -> dict[str, Any]:
        row = iso_row(asdict(self))
        row["arr"] = None if self.arr is None else format(self.arr, "f")
        return row


def arr_in_base(currencies: Currencies) -> ColumnElement[Any]:
    """The account's ARR in the base currency (NULL without a rate), as
    :meth:`~campaigns.currency.Currencies.to_base` computes it, for sorting across
    currencies. The rates are numerals of the checked table, written into the statement."""
    arms: dict[str, Any] = {currencies.base: Account.arr}
    for code, rate in currencies.rates:
        arms[code] = func.round(Account.arr * literal_column(format(rate, "f"), Numeric()), 2)
    return case(arms, value=Account.currency, else_=null())


def list_accounts(
    session: Session,
    today: date,
    currencies: Currencies,
    *,
    owner: str | None = None,
    sort: str = "health",
    direction: Literal["asc", "desc"] = "asc",
    tier: str | None = None,
    band: str | None = None,
    limit: int = PER_PAGE,
    offset: int = 0,
) -> tuple[list[ListedAccount], int]:
    """Accounts (``owner``'s, or everyone's), sorted and filtered, one page; and how many
    match in all. Accounts without the sorted value come last either way; ties go by id.
    Owners' addresses are stored lower-cased (imports and users do), so ``owner`` is compared
    lower-cased, on the index of (owner, health)."""
    if sort not in SORTS:
        raise ValueError(f"sort: one of {', '.join(SORTS)}")
    key: Any = {
        "health": Account.health_score,
        "renewal": Account.renewal_date,
        "arr": arr_in_base(currencies),
        "name": Account.name,
    }[sort]
    where: list[ColumnElement[bool]] = []
    if owner is not None:
        where.append(Account.owner_email == owner.strip().lower())
    if tier is not None:
        where.append(Account.tier == tier)
    if band is not None:
        where.append(
            Account.health_band.is_(None) if band == "none" else Account.health_band == band
        )
    ordered = key.asc() if direction == "asc" else key.desc()
    rows = session.scalars(
        select(Account)
        .where(*where)
        .order_by(ordered.nulls_last(), Account.id if direction == "asc" else Account.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(select(func.count()).select_from(Account).where(*where)) or 0
    return [
        ListedAccount(
            a.id,
            a.external_id,
            a.name,
            a.tier,
            a.owner_email,
            a.arr,
            a.currency,
            a.renewal_date,
            (a.renewal_date - today).days if a.renewal_date else None,
            a.health_score,
            a.health_band,
            a.health_change_30d,
        )
        for a in rows
    ], total


def tiers(session: Session) -> list[str]:
    """Every tier an account is in, for the filter."""
    return [t for t in session.scalars(select(Account.tier).distinct().order_by(Account.tier)) if t]


# ---------------------------------------------------------------------------- the health overview


@dataclass
class HealthOverview:
    """Accounts per tier and band now, and how accounts moved between bands since the first
    day of the month that has scores (``since``)."""

    today: date
    by_tier: dict[str, dict[str, int]]  # tier ("" for none) -> band ("none" too) -> accounts
    since: date | None
    moves: dict[tuple[str, str], int]  # (band then, band now) -> accounts

    def to_json(self) -> dict[str, Any]:
        return {
            "today": self.today.isoformat(),
            "by_tier": self.by_tier,
            "since": self.since.isoformat() if self.since else None,
            "moves": [
                {"from": a, "to": b, "accounts": n} for (a, b), n in sorted(self.moves.items())
            ],
        }


def health_overview(session: Session, today: date, *, owner: str | None = None) -> HealthOverview:
    """The band distribution per tier (the accounts' latest band) and the movement between
    bands this month: each account's band on the month's first scored day against its band
    now. Two grouped statements over the accounts, one over that day's scores."""
    where = [Account.owner_email == owner.strip().lower()] if owner else []
    by_tier: dict[str, dict[str, int]] = {}
    for tier, band, n in session.execute(
        select(Account.tier, Account.health_band, func.count())
        .where(*where)
        .group_by(Account.tier, Account.health_band)
    ):
        bands = by_tier.setdefault(tier or "", {})
        bands[band or "none"] = bands.get(band or "none", 0) + n
    first = today.replace(day=1)
    since = session.scalar(
        select(func.min(HealthScore.day)).where(HealthScore.day >= first, HealthScore.day <= today)
    )
    moves: dict[tuple[str, str], int] = {}
    if since is not None:
        for then, now, n in session.execute(
            select(HealthScore.band, Account.health_band, func.count())
            .join(Account, Account.id == HealthScore.account_id)
            .where(
                HealthScore.day == since,
                HealthScore.band.is_not(None),
                Account.health_band.is_not(None),
                *where,
            )
            .group_by(HealthScore.band, Account.health_band)
        ):
            if then in BANDS and now in BANDS:
                moves[(then, now)] = n
    return HealthOverview(today, dict(sorted(by_tier.items())), since, moves)
