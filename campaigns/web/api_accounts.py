"""The API's routes for accounts (on the API blueprint, behind its API keys): the product posts
daily usage per account (``POST /usage``), and a CRM or a chat bot reads an account's page
(``GET /accounts/<external_id>``) or a page of accounts (``GET /accounts``), the same data the
dashboard's account page and "My accounts" show.

``POST /usage`` is all or nothing like ``POST /events``: every row is checked, every problem
is reported with its place (``usage[3].metrics.logins``), and only a request without any is
stored, as one upsert (:func:`campaigns.insight.usage.store_usage`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue

from campaigns.insight.accounts import account_page, find_account
from campaigns.insight.portfolio import SORTS, list_accounts
from campaigns.insight.usage import (
    MAX_METRICS,
    UsageRow,
    account_ids,
    metric_problem,
    store_usage,
    value_problem,
)
from campaigns.store.enums import HealthBand
from campaigns.web import api_base as base
from campaigns.web import api_input
from campaigns.web.accounts import personas_source, scorecard_marks
from campaigns.web.api_base import bp
from campaigns.web.api_input import FUTURE_SLACK, MAX_ITEMS, ApiError, Problems
from campaigns.web.roles import INGEST, READ_PEOPLE, needs

ROW_FIELDS = {"account", "day", "metrics"}
BANDS = (*(b.value for b in HealthBand), "none")
MAX_LIMIT = 500


# ---------------------------------------------------------------------------- POST /usage


def _row(obj: Any, index: int, today: date, problems: Problems) -> UsageRow | None:
    where = f"usage[{index}]"
    if not api_input.object_(obj, where, ROW_FIELDS, ROW_FIELDS, problems, index):
        return None
    account = api_input.text(obj, "account", where, problems, index, max_len=128)
    day = None
    raw_day = obj.get("day")
    if "day" in obj:
        if not isinstance(raw_day, str):
            problems.add(
                index, f"{where}.day", f"expected a date YYYY-MM-DD, got {api_input.kind(raw_day)}"
            )
        else:
            try:
                day = api_input.parse_day(raw_day)
            except ValueError as exc:
                problems.add(index, f"{where}.day", str(exc))
            else:
                if day > today + FUTURE_SLACK:
                    problems.add(index, f"{where}.day", f"{raw_day} is more than a day ahead")
                    day = None
    metrics: dict[str, float] = {}
    raw = obj.get("metrics")
    good = "metrics" in obj
    if "metrics" in obj:
        if not isinstance(raw, dict):
            problems.add(
                index, f"{where}.metrics", f"expected an object, got {api_input.kind(raw)}"
            )
            good = False
        elif not 1 <= len(raw) <= MAX_METRICS:
            problems.add(
                index, f"{where}.metrics", f"{len(raw)} metrics; send 1 to {MAX_METRICS} per row"
            )
            good = False
        else:
            for name, value in raw.items():
                place = f"{where}.metrics.{name[:64]}"
                problem = metric_problem(name) or value_problem(value)
                if problem:
                    problems.add(index, place, problem)
                    good = False
                else:
                    metrics[name] = float(value)
    if account is None or day is None or not good:
        return None
    return UsageRow(account, day, metrics)


@bp.post("/usage")
@needs(INGEST)
def post_usage() -> ResponseReturnValue:
    """Store daily usage per account: ``{"usage": [{"account", "day", "metrics"}]}``, 1 to
    1000 rows; a day posted again replaces its values."""
    body = api_input.body()
    if not isinstance(body, dict):
        raise ApiError(400, f'body: expected {{"usage": [...]}}, got {api_input.kind(body)}')
    extra = sorted(body.keys() - {"usage"})
    if extra:
        raise ApiError(400, f'{extra[0]}: unknown field; send {{"usage": [...]}}')
    if "usage" not in body:
        raise ApiError(400, 'usage: required; send {"usage": [...]}')
    items = body["usage"]
    if not isinstance(items, list):
        raise ApiError(400, f"usage: expected an array, got {api_input.kind(items)}")
    if not 1 <= len(items) <= MAX_ITEMS:
        raise ApiError(400, f"usage: {len(items)} rows; send 1 to {MAX_ITEMS} per request")
    now = base.now()
    problems = Problems()
    parsed = [(i, _row(item, i, now.date(), problems)) for i, item in enumerate(items)]

    def store(session: Any) -> int:
        found = problems.copy()
        wanted = {
            item["account"]
            for item in items
            if isinstance(item, dict) and isinstance(item.get("account"), str)
        }
        ids = account_ids(session, wanted)
        for index, item in enumerate(items):
            name = item.get("account") if isinstance(item, dict) else None
            if isinstance(name, str) and name.strip() and len(name) <= 128 and name not in ids:
                found.add(index, f"usage[{index}].account", f"no account with external_id {name!r}")
        found.raise_if_any(len(items), "rows")
        return store_usage(session, [row for _, row in parsed if row is not None], ids, now)

    stored = base.transaction(store)
    return jsonify(rows=len(items), values=stored)


# ---------------------------------------------------------------------------- GET /accounts


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(400, f"{name}: a whole number from {low} to {high}")
    return int(raw)


def _choice(name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = request.args.get(name, default)
    if value is not None and value not in allowed:
        raise ApiError(400, f"{name}: one of {', '.join(allowed)}")
    return value


@bp.get("/accounts")
@needs(READ_PEOPLE)
def accounts() -> ResponseReturnValue:
    """A page of accounts (an ``owner``'s, or everyone's), sorted by health, renewal date, ARR
    (in the base currency) or name, filtered by tier and band."""
    base.only_params({"owner", "sort", "order", "tier", "band", "limit", "offset"})
    owner = request.args.get("owner")
    if owner is not None:
        owner = api_input.path_email(owner)
    sort = _choice("sort", SORTS, "health") or "health"
    order: Literal["asc", "desc"] = (
        "desc" if _choice("order", ("asc", "desc"), "asc") == "desc" else "asc"
    )
    band = _choice("band", BANDS, None)
    tier = request.args.get("tier")
    if tier is not None and not 1 <= len(tier) <= 64:
        raise ApiError(400, "tier: 1 to 64 characters")
    limit, offset = _int("limit", 50, 1, MAX_LIMIT), _int("offset", 0, 0, 10**9)
    cfg = current_app.config["CAMPAIGNS"]
    with base.sessions()() as session:
        rows, total = list_accounts(
            session,
            base.now().date(),
            cfg.currencies,
            owner=owner,
            sort=sort,
            direction=order,
            tier=tier,
            band=band,
            limit=limit,
            offset=offset,
        )
        return jsonify(total=total, accounts=[row.to_json() for row in rows])


@bp.get("/accounts/<external_id>")
@needs(READ_PEOPLE)
def account(external_id: str) -> ResponseReturnValue:
    """One account's page: facts, health and its history, contacts, journeys, tasks, NPS
    answers and the timeline."""
    base.only_params(set())
    if len(external_id) > 128:
        raise ApiError(404, "no account with that external_id (at most 128 characters)")
    now: datetime = base.now()
    with base.sessions()() as session:
        found = find_account(session, external_id=external_id)
        if found is None:
            raise ApiError(404, f"no account with external_id {external_id[:128]!r}")
        page = account_page(
            session,
            found,
            now,
            personas=personas_source(session, now),
            **scorecard_marks(),
        )
        return jsonify(page.to_json())
