"""The API's outgoing events (routes on the API blueprint): list them by status, and replay
the dead ones (audited, ``AuditAction.REPLAY``). docs/api.md "Outgoing events"."""

from __future__ import annotations

import re
from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from campaigns.engine import hooks
from campaigns.store import audit
from campaigns.store.enums import AuditAction, OutboundStatus
from campaigns.web import api_input
from campaigns.web.api_base import bp, now, only_params, sessions
from campaigns.web.api_input import ApiError
from campaigns.web.roles import READ_PEOPLE, STEER, needs

MAX_LIMIT = 500
MAX_IDS = 1_000
_NUMBER = re.compile(r"[0-9]{1,18}")


def _int_param(name: str, low: int, high: int, default: int | None) -> int | None:
    value = request.args.get(name)
    if value is None:
        return default
    if not _NUMBER.fullmatch(value.strip()) or not low <= int(value) <= high:
        raise ApiError(400, f"{name}: expected a whole number from {low} to {high}")
    return int(value)


@bp.get("/events/outgoing")
@needs(READ_PEOPLE)
def outgoing_events() -> ResponseReturnValue:
    """Outgoing events, newest first (``status``: pending, delivered or dead), with counts
    per subscriber; ``before`` (an id) pages back."""
    only_params({"status", "limit", "before"})
    status = request.args.get("status")
    if status is not None and status not in {str(s) for s in OutboundStatus}:
        raise ApiError(400, "status: expected pending, delivered or dead")
    limit = _int_param("limit", 1, MAX_LIMIT, 100) or 100
    before = _int_param("before", 1, 10**18 - 1, None)
    with sessions()() as session:
        rows = hooks.listing(session, status, limit=limit + 1, before=before)
        counts = hooks.counts(session)
        events = [hooks.to_json(r) for r in rows[:limit]]
    more = len(rows) > limit
    return jsonify(
        counts=counts,
        events=events,
        next_before=events[-1]["id"] if more and events else None,
    )


def _whole(value: Any) -> bool:
    """A row id: a whole number from 1 (JSON's 42.0 is 42, as JSON Schema reads it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return float(value).is_integer() and 0 < value < 2**63


@bp.post("/events/outgoing/replay")
@needs(STEER)
def replay_outgoing_events() -> ResponseReturnValue:
    """Put dead events back in the queue: ``{"ids": [...]}`` or ``{"all": true}``, optionally
    with ``"subscriber"``. Answers how many went back."""
    data: Any = api_input.body()
    if not isinstance(data, dict):
        raise ApiError(400, f"body: expected an object, got {api_input.kind(data)}")
    unknown = sorted(set(data) - {"ids", "all", "subscriber"})
    if unknown:
        raise ApiError(400, f"{unknown[0][:40]}: unknown field; expected ids, all, subscriber")
    ids = data.get("ids")
    every = data.get("all", False)
    subscriber = data.get("subscriber")
    if not isinstance(every, bool):
        raise ApiError(400, f"all: expected true/false, got {api_input.kind(every)}")
    if "ids" in data:
        if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(_whole(i) for i in ids):
            raise ApiError(400, f"ids: expected a list of up to {MAX_IDS} event ids (numbers)")
        ids = [int(i) for i in ids]
    if "subscriber" in data and (not isinstance(subscriber, str) or len(subscriber) > 64):
        raise ApiError(400, "subscriber: expected a subscriber's name")
    if (ids is None) == (not every) or (ids is not None and every):
        raise ApiError(400, "send either ids (a list of dead events' ids) or all: true")
    with sessions()() as session, session.begin():
        count = hooks.replay(session, now(), ids=ids, subscriber=subscriber)
        if count:
            audit.record(
                session,
                "api",
                AuditAction.REPLAY,
                subscriber or "all",
                kind="events",
                detail={"ids": (ids or [])[:100], "all": every, "count": count},
            )
    return jsonify(replayed=count)
