"""The product API under ``/api/v1``: JSON in and out, a caller proves itself with an API key.

Products post their events here (the journeys' entries, exits, goals and ``wait_until``
signals), fetch and acknowledge a contact's in-app messages, and read a contact with their
answers; the mail relay posts its bounces and complaints (a plain JSON format, or Amazon SES
notifications through SNS). ``/api/v1/openapi.json`` describes all of it.

Writes are all or nothing: a request is checked as a whole, every problem is reported with
the place it was found (``events[3].contact.email``), and only a request without any is
stored, in one transaction. Idempotency keys are unique in the database, so a retried
request stores nothing twice, even when two copies of it race.

The routes are here; checking their input is ``campaigns.web.api_input``, reading bounce
notifications ``campaigns.web.bounces``, and acting on them ``campaigns.tracking.bounces``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.store.enums import Classification, EventKind
from campaigns.store.models import Account, Event, Journey
from campaigns.tracking.bounces import store_notices
from campaigns.tracking.events import contacts_by_email, record_event, stored_keys
from campaigns.web import api_base as base
from campaigns.web import api_input, bounces
from campaigns.web.api_base import bp
from campaigns.web.api_input import MAX_ITEMS, ApiError, Problems
from campaigns.web.roles import INGEST, PUBLIC, READ_PEOPLE, READ_REPORTS, needs

log = logging.getLogger(__name__)

MAX_PROPERTIES = 16 * 1024
"""Bytes of one event's ``properties``, as compact UTF-8 JSON."""

RECENT_ANSWERS = 50
"""Answers shown with a contact."""

EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


# ---------------------------------------------------------------------------- storing


_existing_keys = stored_keys  # a module global: the race test replaces it


# ---------------------------------------------------------------------------- POST /events


@dataclass
class _EventIn:
    index: int
    where: str
    name: str
    email: str | None
    external_id: str | None
    occurred_at: datetime | None
    properties: dict[str, Any]
    key: str | None


EVENT_FIELDS = {"name", "contact", "account", "occurred_at", "properties", "id"}


def _event(obj: Any, index: int, where: str, now: datetime, problems: Problems) -> _EventIn | None:
    if not api_input.object_(obj, where, EVENT_FIELDS, {"name"}, problems, index):
        return None
    name = api_input.text(obj, "name", where, problems, index, max_len=128)
    if name is not None and not EVENT_NAME.fullmatch(name):
        problems.add(
            index,
            api_input.join(where, "name"),
            f"{name[:40]!r}: use 1-128 letters, digits and _ . : - (e.g. usage_dropped)",
        )
    email = external_id = None
    if "contact" in obj and api_input.object_(
        obj["contact"], api_input.join(where, "contact"), {"email"}, {"email"}, problems, index
    ):
        email = api_input.address(
            obj["contact"].get("email"), api_input.join(where, "contact.email"), problems, index
        )
    if "account" in obj and api_input.object_(
        obj["account"],
        api_input.join(where, "account"),
        {"external_id"},
        {"external_id"},
        problems,
        index,
    ):
        external_id = api_input.text(
            obj["account"],
            "external_id",
            api_input.join(where, "account"),
            problems,
            index,
            max_len=128,
        )
    if "contact" not in obj and "account" not in obj:
        problems.add(
            index,
            where or "(event)",
            'needs a contact {"email": ...} or an account {"external_id": ...}',
        )
    occurred_at = (
        api_input.timestamp(
            obj["occurred_at"], api_input.join(where, "occurred_at"), problems, index, now
        )
        if obj.get("occurred_at") is not None
        else None
    )
    properties = obj.get("properties")
    properties = {} if properties is None else properties
    if not isinstance(properties, dict):
        problems.add(
            index,
            api_input.join(where, "properties"),
            f"expected an object, got {api_input.kind(properties)}",
        )
    elif (
        len(json.dumps(properties, ensure_ascii=False, separators=(",", ":")).encode())
        > MAX_PROPERTIES
    ):
        problems.add(
            index,
            api_input.join(where, "properties"),
            f"larger than {MAX_PROPERTIES} bytes as JSON",
        )
    key = api_input.text(obj, "id", where, problems, index, max_len=100) if "id" in obj else None
    # Returned even with problems, so that unknown contacts and accounts are reported too;
    # nothing is stored while any problem stands.
    return _EventIn(
        index,
        where,
        name or "",
        email,
        external_id,
        occurred_at,
        properties if isinstance(properties, dict) else {},
        f"api:{key}" if key else None,
    )


@bp.post("/events")
@needs(INGEST)
def post_events() -> ResponseReturnValue:
    """Store product events (one, or ``{"events": [...]}``) and wake the journeys waiting on
    them."""
    body = api_input.body()
    now = base.now()
    if isinstance(body, dict) and "events" in body:
        extra = sorted(body.keys() - {"events"})
        if extra:
            raise ApiError(
                400,
                f'{extra[0]}: unknown field beside "events"; send one event, or '
                '{"events": [...]} alone',
            )
        items = body["events"]
        if not isinstance(items, list):
            raise ApiError(400, f"events: expected an array, got {api_input.kind(items)}")
        if not 1 <= len(items) <= MAX_ITEMS:
            raise ApiError(400, f"events: {len(items)} events; send 1 to {MAX_ITEMS} per request")
        prefix = "events"
    elif isinstance(body, dict):
        items, prefix = [body], ""
    else:
        raise ApiError(
            400,
            f'body: expected an event object or {{"events": [...]}}, got {api_input.kind(body)}',
        )
    problems = Problems()
    parsed = [
        _event(item, i, f"{prefix}[{i}]" if prefix else "", now, problems)
        for i, item in enumerate(items)
    ]
    events = [e for e in parsed if e is not None]
    accepted, duplicates = base.transaction(
        lambda session: _store_events(session, events, problems.copy(), len(items), now)
    )
    return jsonify(accepted=accepted, duplicates=duplicates), 202


def _store_events(
    session: Session, events: list[_EventIn], problems: Problems, total: int, now: datetime
) -> tuple[int, int]:
    contacts = contacts_by_email(session, {e.email for e in events if e.email})
    external_ids = {e.external_id for e in events if e.external_id}
    accounts = (
        {
            a.external_id: a
            for a in session.scalars(select(Account).where(Account.external_id.in_(external_ids)))
        }
        if external_ids
        else {}
    )
    for e in events:
        contact = contacts.get(e.email) if e.email else None
        account = accounts.get(e.external_id) if e.external_id else None
        if e.email and contact is None:
            problems.add(
                e.index,
                api_input.join(e.where, "contact.email"),
                f"no contact with email {e.email}",
            )
        if e.external_id and account is None:
            problems.add(
                e.index,
                api_input.join(e.where, "account.external_id"),
                f"no account with external_id {e.external_id!r}",
            )
        if contact is not None and account is not None and contact.account_id != account.id:
            problems.add(
                e.index,
                api_input.join(e.where, "account.external_id"),
                f"{e.email} is not a contact of account {e.external_id!r}",
            )
    problems.raise_if_any(total, "events")
    stored = _existing_keys(session, {e.key for e in events if e.key})
    accepted = duplicates = 0
    with session.no_autoflush:  # the events go in one batch at commit, not one INSERT per wake
        for e in events:
            if e.key is not None and e.key in stored:
                duplicates += 1
                continue
            if e.key is not None:
                stored.add(e.key)
            contact = contacts.get(e.email) if e.email else None
            account_id = (
                accounts[e.external_id].id
                if e.external_id
                else contact.account_id
                if contact
                else None
            )
            record_event(
                session,
                now,
                kind=EventKind.CUSTOM,
                name=e.name,
                contact_id=contact.id if contact else None,
                account_id=account_id,
                dedupe_key=e.key,
                data=e.properties,
                occurred_at=e.occurred_at,
            )
            accepted += 1
    return accepted, duplicates


# ---------------------------------------------------------------------------- GET /contacts/<email>


@bp.get("/contacts/<email>")
@needs(READ_PEOPLE)
def contact(email: str) -> ResponseReturnValue:
    """The contact, their account and their latest answers (survey scores, RSVPs); machine hits
    left out."""
    address = api_input.path_email(email)
    with base.sessions()() as session:
        found = base.contact_or_404(session, address)
        account = session.get(Account, found.account_id) if found.account_id else None
        answers = session.execute(
            select(Event.kind, Event.step_id, Journey.key, Event.value, Event.occurred_at)
            .outerjoin(Journey, Journey.id == Event.journey_id)
            .where(
                Event.contact_id == found.id,
                Event.kind.in_([EventKind.ANSWER, EventKind.RSVP]),
                Event.classification != Classification.MACHINE,
            )
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(RECENT_ANSWERS)
        ).all()
        return jsonify(
            email=found.email,
            name=found.name,
            locale=found.locale,
            time_zone=found.time_zone,
            subscribed=found.subscribed,
            tags=list(found.tags or []),
            attributes=dict(found.attributes or {}),
            account={"external_id": account.external_id, "name": account.name} if account else None,
            answers=[
                {
                    "kind": kind,
                    "step_id": step,
                    "journey": journey,
                    "value": value,
                    "occurred_at": base.iso(at),
                }
                for kind, step, journey, value, at in answers
            ],
        )


# ---------------------------------------------------------------------------- GET /reports


@bp.get("/reports")
@needs(READ_REPORTS)
def reports_overview() -> ResponseReturnValue:
    """Every journey's headline counts and rates (the same numbers as ``campaigns report``)."""
    from campaigns.insight import report

    base.only_params(set())
    with base.sessions()() as session:
        document: dict[str, Any] = {"journeys": report.overview(session)}
        overall = report.global_control(session)
        if overall is not None:
            document["global_control"] = overall
        return jsonify(document)


@bp.get("/reports/<journey>")
@needs(READ_REPORTS)
def journey_report(journey: str) -> ResponseReturnValue:
    """One journey's funnel, or its rows ``by`` segment, tier, channel, variant or day."""
    from campaigns.insight import report

    base.only_params({"by", "since", "until"})
    by = request.args.get("by", "step")
    if by not in report.BREAKDOWNS:
        raise ApiError(400, f"by: one of {', '.join(report.BREAKDOWNS)}")
    since, until = (base.day_param(name) for name in ("since", "until"))
    if since and until and since > until:  # an empty window, as the dashboard's: refused
        raise ApiError(400, "since: the first day comes after the last (until)")
    with base.sessions()() as session:
        try:
            result = report.journey_report(session, journey, by=by, since=since, until=until)
        except LookupError:
            raise ApiError(404, f"no journey {journey!r}") from None
        return jsonify(result.as_dict())


# ---------------------------------------------------------------------------- POST
# /webhooks/bounces
@bp.post("/webhooks/bounces")
@needs(INGEST)
def bounce_webhook() -> ResponseReturnValue:
    """Bounces and complaints from the mail relay: suppress the address, mark the message, record
    the event."""
    body = api_input.body()
    items = body if isinstance(body, list) else [body]
    if not 1 <= len(items) <= MAX_ITEMS:
        raise ApiError(400, f"body: {len(items)} notifications; send 1 to {MAX_ITEMS} per request")
    problems, notices, ignored = Problems(), [], 0
    for index, item in enumerate(items):
        where = f"[{index}]" if isinstance(body, list) else ""
        if isinstance(item, dict) and "Type" in item:  # an Amazon SNS envelope
            sns_type = item.get("Type")
            if sns_type in ("SubscriptionConfirmation", "UnsubscribeConfirmation") and isinstance(
                item.get("SubscribeURL"), str
            ):
                log.warning(
                    "Amazon SNS %s for topic %s: to confirm, open %s",
                    sns_type,
                    item.get("TopicArn"),
                    item["SubscribeURL"],
                )
                ignored += 1
                continue
            if sns_type != "Notification" or not isinstance(item.get("Message"), str):
                problems.add(
                    index,
                    api_input.join(where, "Type"),
                    "expected an SNS Notification with a Message string (or a "
                    "SubscriptionConfirmation)",
                )
                continue
            try:
                item = api_input.loads(item["Message"], api_input.join(where, "Message"))
            except ApiError as exc:
                problems.add(index, api_input.join(where, "Message"), exc.message)
                continue
            where = api_input.join(where, "Message")
        if not isinstance(item, dict):
            problems.add(
                index, where or "(notification)", f"expected an object, got {api_input.kind(item)}"
            )
        elif "notificationType" in item or "eventType" in item:
            found = bounces.ses(item, index, where, problems)
            ignored += found is None
            notices += found or []
        else:
            notices += bounces.generic(item, index, where, problems)
    if len(notices) > MAX_ITEMS:
        raise ApiError(
            400, f"body: {len(notices)} recipients; send at most {MAX_ITEMS} per request"
        )
    problems.raise_if_any(len(items), "notifications")
    processed, duplicates = base.transaction(
        lambda session: store_notices(session, notices, base.now())
    )
    return jsonify(processed=processed, duplicates=duplicates, ignored=ignored)


# ---------------------------------------------------------------------------- GET /openapi.json


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this blueprint, shipped beside it as ``openapi.yaml``."""
    document: dict[str, Any] = yaml.safe_load(
        resources.files("campaigns.web").joinpath("openapi.yaml").read_text(encoding="utf-8")
    )
    return document


@bp.get("/openapi.json")
@needs(PUBLIC)
def openapi() -> ResponseReturnValue:
    """The API's OpenAPI document (no key needed), with this installation's address as its
    server."""
    document = {
        **openapi_document(),
        "servers": [{"url": current_app.config["CAMPAIGNS"].base_url}],
    }
    return current_app.response_class(
        json.dumps(document, ensure_ascii=False, indent=1), mimetype="application/json"
    )
