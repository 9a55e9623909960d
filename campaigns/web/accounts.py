"""The dashboard's account pages (routes on the dashboard blueprint, behind its sign-in):

- ``/accounts/<id>``: the page a CSM opens before a call: the company's facts (ARR in its
  currency, tier, owner, renewal and the days to it), its health with the trend chart and
  what changed, its contacts with persona and engagement, journeys, tasks, NPS answers and
  one timeline of every touch (:func:`campaigns.insight.accounts.account_page`);
- ``/accounts``: "My accounts", the signed-in user's accounts (everyone's with ``owner=all``),
  sorted by health, renewal date, ARR or name in either direction, filtered by tier and band,
  a page at a time;
- ``/health``: the health overview: bands per tier and the movement between bands this month.

Amounts, days and dates are written in the signed-in user's language (their ``locale``:
``1,200,000円`` and ``2027年1月8日（金）`` in Japanese). Charts are inline SVG
(:mod:`campaigns.web.charts`); nothing is loaded from anywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from flask import abort, current_app, g, request
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from sqlalchemy.orm import Session

from campaigns.content.locale import format_date, format_days, format_money
from campaigns.engine.personas import personas_for
from campaigns.exceptions import JourneyError
from campaigns.insight.accounts import (
    AccountPage,
    Personas,
    account_page,
    find_account,
    scorecard_view,
)
from campaigns.insight.portfolio import PER_PAGE, SORTS, health_overview, list_accounts, tiers
from campaigns.journeys.segments import SegmentSet
from campaigns.store.enums import HealthBand
from campaigns.web import dashboard_base as base
from campaigns.web.charts import Layer, band_bars, band_moves, health_trend
from campaigns.web.dashboard_base import bp
from campaigns.web.roles import READ_PEOPLE, READ_REPORTS, needs

BANDS = (*(b.value for b in HealthBand), "none")
DEFAULT_ORDER = {"health": "asc", "renewal": "asc", "arr": "desc", "name": "asc"}
"""The first click on a column: the worst health, the nearest renewal, the largest ARR."""


def _now() -> datetime:
    now: datetime = current_app.extensions["campaigns.clock"].now()
    return now


def _locale() -> str:
    return str(getattr(g.get("user"), "locale", None) or "en")


def _formatters(locale: str) -> dict[str, Any]:
    """What the templates write amounts, days and dates with, in the reader's words."""

    def money(amount: Decimal | None, currency: str | None) -> str:
        return "—" if amount is None else format_money(amount, currency, locale)

    def day(value: date | None) -> str:
        return "—" if value is None else format_date(value, locale, "long")

    def days(value: int | None) -> str:
        if value is None:
            return "—"
        if value < 0:
            return (
                f"{format_days(-value, locale)} ago"
                if locale[:2] != "ja"
                else (f"{format_days(-value, locale)}前")
            )
        return format_days(value, locale)

    return {"money": money, "day": day, "days": days, "locale": locale}


_LOADED: dict[tuple[str, ...], tuple[tuple[tuple[int, int], ...], Any]] = {}
"""Files read for the pages, by their paths: kept while their times and sizes stay the same
(read again on every page, the segments and scorecards files were three quarters of its
time: bench/account_page.py)."""


def _read_once(paths: tuple[Path, ...], load: Callable[[], Any]) -> Any:
    """``load()``, or what it gave the last time, when none of ``paths`` has changed since.
    A file with problems raises every time (what it raises is not kept)."""
    stamp = tuple(
        (st.st_mtime_ns, st.st_size) if (st := _stat(p)) is not None else (0, -1) for p in paths
    )
    key = tuple(str(p) for p in paths)
    kept = _LOADED.get(key)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    value = load()
    _LOADED[key] = (stamp, value)
    return value


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _segments(services: Any) -> SegmentSet:
    config = services.project.config
    return cast(SegmentSet, _read_once((config.segments_file,), services.project.segments))


def scorecard_marks() -> dict[str, Any]:
    """From the scorecards file, for the health chart: ``labels`` (measure name -> label) and
    ``bands`` (scorecard -> band -> lower bound); empty when the file does not load."""
    services = current_app.extensions.get("campaigns.services")
    if services is None:
        return {}
    config = services.project.config
    try:
        return cast(
            dict[str, Any],
            _read_once(
                (config.segments_file, config.scorecards_file),
                lambda: scorecard_view(services.project.scorecards(_segments(services))),
            ),
        )
    except JourneyError:
        return {}


def personas_source(session: Session, now: datetime) -> Personas | None:
    """The persona rules of the segments file, for the contacts a page shows; None when the
    file defines none or does not load (the journeys page says what is wrong with it)."""
    services = current_app.extensions.get("campaigns.services")
    if services is None:
        return None
    try:
        segset = _segments(services)
    except JourneyError:
        return None
    if not segset.personas:
        return None
    return lambda people: personas_for(session, segset, people, now)


def _arg(name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = request.args.get(name, default)
    if value == "" and default is None:
        return None
    if value is not None and value not in allowed:
        abort(400, f"{name}: expected one of {', '.join(allowed)}.")
    return value


def _page_number() -> int:
    raw = request.args.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 10_000:  # not "²"
        abort(400, "page: expected a whole number from 1.")
    return int(raw)


# ---------------------------------------------------------------------------- My accounts


@bp.get("/accounts")
@needs(READ_PEOPLE)
def accounts() -> ResponseReturnValue:
    user = g.user
    whose = _arg("owner", ("me", "all"), "me") or "me"
    sort = _arg("sort", SORTS, "health") or "health"
    order = _arg("order", ("asc", "desc"), DEFAULT_ORDER[sort]) or "asc"
    band = _arg("band", BANDS, None)
    tier = request.args.get("tier") or None
    if tier is not None and len(tier) > 64:
        abort(400, "tier: at most 64 characters.")
    page = _page_number()
    now = _now()
    with base.sessions()() as session:
        rows, total = list_accounts(
            session,
            now.date(),
            current_app.config["CAMPAIGNS"].currencies,
            owner=user.email if whose == "me" else None,
            sort=sort,
            direction="desc" if order == "desc" else "asc",
            tier=tier,
            band=band,
            limit=PER_PAGE,
            offset=(page - 1) * PER_PAGE,
        )
        every_tier = tiers(session)
    query = {"owner": whose, "tier": tier or "", "band": band or ""}

    def sort_link(column: str) -> dict[str, Any]:
        """The header's link: this column, the other direction when it is the sorted one."""
        if column == sort:
            direction = "desc" if order == "asc" else "asc"
        else:
            direction = DEFAULT_ORDER[column]
        return {**query, "sort": column, "order": direction}

    return base.page(
        "accounts.html",
        rows=rows,
        total=total,
        whose=whose,
        sort=sort,
        order=order,
        band=band or "",
        tier=tier or "",
        tiers=every_tier,
        bands=BANDS,
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        query={**query, "sort": sort, "order": order},
        sort_link=sort_link,
        **_formatters(_locale()),
    )


# ---------------------------------------------------------------------------- one account


def trend_chart(view: AccountPage) -> Markup:
    """The health trend of the page: the score per day over each measure's contribution."""
    days = [h.day.isoformat() for h in view.history]
    layers = [
        Layer(label, tuple(h.contribution(name) for h in view.history))
        for name, label in view.measures
    ]
    return health_trend(
        days,
        [h.score for h in view.history],
        layers,
        view.thresholds,
        title=f"Health of {view.facts.name}, last {len(days)} days",
    )


@bp.get("/accounts/<int(max=2147483647):account_id>")
@needs(READ_PEOPLE)
def account(account_id: int) -> ResponseReturnValue:
    now = _now()
    locale = _locale()
    with base.sessions()() as session:
        found = find_account(session, id=account_id)
        if found is None:
            abort(404, "No such account.")
        view = account_page(
            session,
            found,
            now,
            locale=locale,
            personas=personas_source(session, now),
            **scorecard_marks(),
        )
    return base.page(
        "account.html",
        view=view,
        facts=view.facts,
        chart=trend_chart(view),
        now=now,
        **_formatters(locale),
    )


# ---------------------------------------------------------------------------- health overview


@bp.get("/health")
@needs(READ_REPORTS)
def health() -> ResponseReturnValue:
    whose = _arg("owner", ("me", "all"), "all") or "all"
    now = _now()
    with base.sessions()() as session:
        overview = health_overview(
            session, now.date(), owner=g.user.email if whose == "me" else None
        )
    groups = list(overview.by_tier.items())
    since = overview.since.isoformat() if overview.since else now.date().replace(day=1).isoformat()
    return base.page(
        "health.html",
        overview=overview,
        whose=whose,
        bars=band_bars(groups),
        moves=band_moves(overview.moves, since=since),
        since=since,
        **_formatters(_locale()),
    )
