"""The product API under ``/api/v1``: JSON in and out, a caller proves itself with an API key.

Products post their events here (the journeys' entries, exits, goals and ``wait_until``
signals), fetch and acknowledge a contact's in-app messages, and read a contact with their
answers; the mail relay posts its bounces and complaints (a plain JSON format, or Amazon SES
notifications through SNS). ``/api/v1/openapi.json`` describes all of it.

Writes are all or nothing: a request is checked as a whole, every problem is reported with
the place it was found (``events[3].contact.email``), and only a request without any is
stored, in one transaction. Idempotency keys are unique in the database, so a retried
request stores nothing twice, even when two copies of it race.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar

import yaml
from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge

from campaigns.events import record_event
from campaigns.models import (
    Account,
    Classification,
    Contact,
    Event,
    EventKind,
    InAppMessage,
    Journey,
    Message,
    MessageStatus,
    Suppression,
    SuppressionReason,
)

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""Bytes in one request body; a larger one is refused with 413 before it is read."""

MAX_ITEMS = 1000
"""Events in one ``POST /events``; notifications (recipients) in one bounce webhook call."""

MAX_PROPERTIES = 16 * 1024
"""Bytes of one event's ``properties``, as compact UTF-8 JSON."""

MAX_DEPTH = 32
"""How deep a JSON body may nest."""

MAX_REPORTED = 100
"""Problems listed in one 422 answer (its message says how many there were in all)."""

FUTURE_SLACK = timedelta(days=1)
"""How far ahead of our clock an ``occurred_at`` may be: clocks differ, a week ahead is a bug."""

RECENT_ANSWERS = 50
"""Answers shown with a contact."""

IN_APP_LIMIT = 100
"""In-app messages returned for one contact, newest first."""

ATTEMPTS = 3
"""Tries of a write that lost a race on a unique key (the next try sees the winner's row)."""

EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL stores neither NUL nor lone surrogates
_NO_AUTH = {"api.openapi"}
_SNS_AUTH = {"api.bounce_webhook"}  # Amazon SNS can send credentials only as Basic auth (https://user:KEY@host/...)

T = TypeVar("T")
_EMPTY = object()  # no body at all, as opposed to the JSON document null


class ApiError(Exception):
    """A refused request, answered as ``{"error": {"code", "message"[, "items"]}}``."""

    def __init__(self, code: int, message: str, *, items: list[dict[str, Any]] | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.items, self.headers = code, message, items, headers or []


@bp.errorhandler(ApiError)
def api_error(exc: ApiError) -> ResponseReturnValue:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.items is not None:
        error["items"] = exc.items
    response = jsonify(error=error)
    response.status_code = exc.code
    for name, value in exc.headers:
        response.headers.add(name, value)  # add, not set: a 401 may offer two challenges
    return response


# ---------------------------------------------------------------------------- auth


@bp.before_request
def authenticate() -> None:
    """Every endpoint but the OpenAPI document needs ``Authorization: Bearer <one of API_KEYS>``."""
    request.max_content_length = MAX_BODY
    if request.endpoint in _NO_AUTH:
        return
    keys: tuple[str, ...] = current_app.config["CAMPAIGNS"].api_keys
    if not keys:
        raise ApiError(403, "the API is off: set API_KEYS")
    basic = request.endpoint in _SNS_AUTH
    challenge = [("WWW-Authenticate", 'Bearer realm="campaigns"')] + ([("WWW-Authenticate", 'Basic realm="campaigns"')] if basic else [])
    header = request.headers.get("Authorization", "").strip()
    if not header:
        raise ApiError(401, "missing Authorization header; send 'Authorization: Bearer <API key>'", headers=challenge)
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "basic" and basic and request.authorization is not None:
        token = request.authorization.password or ""
    elif scheme.lower() != "bearer":
        raise ApiError(401, f"unsupported Authorization scheme {scheme[:20]!r}; send 'Authorization: Bearer <API key>'", headers=challenge)
    given = token.strip().encode("utf-8", "replace")
    matched = False
    for key in keys:  # compare with every key, so the time taken says nothing about which is close
        matched |= hmac.compare_digest(key.encode(), given)
    if not matched:
        raise ApiError(401, "invalid API key", headers=[("WWW-Authenticate", 'Bearer realm="campaigns", error="invalid_token"'), *challenge[1:]])


@bp.after_request
def no_store(response: Any) -> Any:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# ---------------------------------------------------------------------------- reading input


class Problems:
    """Every problem found in a request's items, each with the item's index and the field."""

    def __init__(self, items: Iterable[dict[str, Any]] = ()) -> None:
        self.items = list(items)

    def add(self, index: int, where: str, message: str) -> None:
        self.items.append({"index": index, "field": where, "message": message})

    def copy(self) -> Problems:
        return Problems(self.items)

    def raise_if_any(self, total: int, noun: str) -> None:
        if not self.items:
            return
        bad = len({p["index"] for p in self.items})
        more = f" (the first {MAX_REPORTED} of {len(self.items)} problems are listed)" if len(self.items) > MAX_REPORTED else ""
        raise ApiError(422, f"{bad} of {total} {noun} invalid; nothing was stored{more}", items=self.items[:MAX_REPORTED])


def _body(*, empty_ok: bool = False) -> Any:
    """The request body as JSON; anything else is a 400 (or 413) that says what is wrong."""
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise ApiError(413, f"body larger than {MAX_BODY} bytes; send at most {MAX_ITEMS} items per request") from None
    if not raw.strip():
        if empty_ok:
            return _EMPTY
        raise ApiError(400, "empty body; send a JSON document")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body is not UTF-8 (bad byte at offset {exc.start})") from None
    return _loads(text, "body")


def _loads(text: str, where: str) -> Any:
    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def finite(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise ValueError(f"number {literal[:40]} is out of range")
        return value

    try:
        data = json.loads(text, parse_constant=constant, parse_float=finite)
    except RecursionError:
        raise ApiError(400, f"{where}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ApiError(400, f"{where} is not valid JSON: {exc}") from None
    _check_storable(data, where)
    return data


def _check_storable(data: Any, where: str) -> None:
    """Refuse deep nesting and what the databases cannot store (NUL, lone surrogates), naming the place."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                raise ApiError(400, f"{_path(path) or where}: contains a NUL character or an unpaired surrogate")
            continue
        if len(path) >= MAX_DEPTH:
            raise ApiError(400, f"{_path(path)}: JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    raise ApiError(400, f"{_path(path) or where}: a field name contains a NUL character or an unpaired surrogate")
                if isinstance(item, str | dict | list):
                    stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value) if isinstance(item, str | dict | list))


def _path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def _object(value: Any, where: str, allowed: set[str], required: set[str], problems: Problems, index: int) -> bool:
    if not isinstance(value, dict):
        problems.add(index, where or "(item)", f"expected an object, got {_kind(value)}")
        return False
    for key in sorted(value.keys() - allowed):
        problems.add(index, _join(where, key), f"unknown field; expected {', '.join(sorted(allowed))}")
    for key in sorted(required - value.keys()):
        problems.add(index, _join(where, key), "required")
    return True


def _text(obj: dict[str, Any], key: str, where: str, problems: Problems, index: int, *, max_len: int) -> str | None:
    value = obj.get(key)
    place = _join(where, key)
    if value is None:
        if key in obj:
            problems.add(index, place, "expected a string, got null")
        return None
    if not isinstance(value, str):
        problems.add(index, place, f"expected a string, got {_kind(value)}")
        return None
    if not value.strip():
        problems.add(index, place, "empty")
        return None
    if len(value) > max_len:
        problems.add(index, place, f"longer than {max_len} characters")
        return None
    return value


def _address(value: Any, place: str, problems: Problems, index: int) -> str | None:
    if not isinstance(value, str):
        problems.add(index, place, f"expected an email address, got {_kind(value)}")
        return None
    address = value.strip().lower()
    if len(address) > 320 or not _EMAIL.fullmatch(address) or _UNSTORABLE.search(address):
        problems.add(index, place, f"not an email address: {value[:80]!r}")
        return None
    return address


def _timestamp(value: Any, place: str, problems: Problems, index: int, now: datetime | None = None) -> datetime | None:
    hint = "expected an ISO 8601 time with a UTC offset, e.g. 2025-04-01T09:30:00+09:00"
    if not isinstance(value, str) or len(value) > 64:
        problems.add(index, place, f"{hint}, got {_kind(value)}")
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            problems.add(index, place, f"no UTC offset in {value!r}; add Z or +09:00")
            return None
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        problems.add(index, place, f"{hint}, got {value[:64]!r}")
        return None
    if now is not None and parsed > now + FUTURE_SLACK:
        problems.add(index, place, f"{value!r} is more than a day in the future")
        return None
    return parsed


def _path_email(value: str) -> str:
    problems = Problems()
    address = _address(value, "email", problems, 0)
    if address is None:
        raise ApiError(400, f"email: {problems.items[0]['message']}")
    return address


def _no_body() -> None:
    body = _body(empty_ok=True)
    if body is not _EMPTY and body != {}:
        raise ApiError(400, "body: this endpoint takes no fields; send no body (or {})")


def _flag(name: str) -> bool:
    value = request.args.get(name, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ApiError(400, f"{name}: expected 1 or 0, got {value[:20]!r}")


# ---------------------------------------------------------------------------- storing


def _now() -> datetime:
    now: datetime = current_app.extensions["campaigns.clock"].now()
    return now


def _sessions() -> Any:
    return current_app.extensions["campaigns.sessions"]


def _transaction(work: Callable[[Session], T]) -> T:
    """Run ``work`` and commit. A unique key taken by a concurrent request meanwhile (an
    idempotency key, a suppressed address) rolls back and runs ``work`` again: it then finds
    the other request's row, so the outcome is the same as if the two had come in turn."""
    for _ in range(ATTEMPTS):
        with _sessions()() as session:
            try:
                result = work(session)
                session.commit()
            except IntegrityError:
                session.rollback()
                continue
            return result
    raise ApiError(409, "the request kept colliding with concurrent requests for the same keys; send it again")


def _contacts(session: Session, emails: Iterable[str]) -> dict[str, Contact]:
    """Contacts by lowercased address; the exact match uses the index, the rest ignores case."""
    wanted = set(emails)
    if not wanted:
        return {}
    found = {c.email.lower(): c for c in session.scalars(select(Contact).where(Contact.email.in_(wanted)))}
    missing = wanted - found.keys()
    if missing:
        for contact in session.scalars(select(Contact).where(func.lower(Contact.email).in_(missing))):
            found.setdefault(contact.email.lower(), contact)
    return found


def _contact_or_404(session: Session, address: str) -> Contact:
    contact = _contacts(session, [address]).get(address)
    if contact is None:
        raise ApiError(404, f"no contact with email {address}")
    return contact


def _existing_keys(session: Session, keys: set[str]) -> set[str]:
    """The idempotency keys among ``keys`` that are already stored."""
    if not keys:
        return set()
    return {k for k in session.scalars(select(Event.dedupe_key).where(Event.dedupe_key.in_(keys))) if k}


def _digest(*parts: str | None) -> str:
    return hashlib.sha256("\n".join(p or "" for p in parts).encode()).hexdigest()[:40]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


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
    if not _object(obj, where, EVENT_FIELDS, {"name"}, problems, index):
        return None
    name = _text(obj, "name", where, problems, index, max_len=128)
    if name is not None and not EVENT_NAME.fullmatch(name):
        problems.add(index, _join(where, "name"), f"{name[:40]!r}: use 1-128 letters, digits and _ . : - (e.g. usage_dropped)")
    email = external_id = None
    if "contact" in obj and _object(obj["contact"], _join(where, "contact"), {"email"}, {"email"}, problems, index):
        email = _address(obj["contact"].get("email"), _join(where, "contact.email"), problems, index)
    if "account" in obj and _object(obj["account"], _join(where, "account"), {"external_id"}, {"external_id"}, problems, index):
        external_id = _text(obj["account"], "external_id", _join(where, "account"), problems, index, max_len=128)
    if "contact" not in obj and "account" not in obj:
        problems.add(index, where or "(event)", 'needs a contact {"email": ...} or an account {"external_id": ...}')
    occurred_at = _timestamp(obj["occurred_at"], _join(where, "occurred_at"), problems, index, now) if obj.get("occurred_at") is not None else None
    properties = obj.get("properties")
    properties = {} if properties is None else properties
    if not isinstance(properties, dict):
        problems.add(index, _join(where, "properties"), f"expected an object, got {_kind(properties)}")
    elif len(json.dumps(properties, ensure_ascii=False, separators=(",", ":")).encode()) > MAX_PROPERTIES:
        problems.add(index, _join(where, "properties"), f"larger than {MAX_PROPERTIES} bytes as JSON")
    key = _text(obj, "id", where, problems, index, max_len=100) if "id" in obj else None
    # Returned even with problems, so that unknown contacts and accounts are reported too;
    # nothing is stored while any problem stands.
    return _EventIn(index, where, name or "", email, external_id, occurred_at, properties if isinstance(properties, dict) else {}, f"api:{key}" if key else None)


@bp.post("/events")
def post_events() -> ResponseReturnValue:
    """Store product events (one, or ``{"events": [...]}``) and wake the journeys waiting on them."""
    body = _body()
    now = _now()
    if isinstance(body, dict) and "events" in body:
        extra = sorted(body.keys() - {"events"})
        if extra:
            raise ApiError(400, f'{extra[0]}: unknown field beside "events"; send one event, or {{"events": [...]}} alone')
        items = body["events"]
        if not isinstance(items, list):
            raise ApiError(400, f"events: expected an array, got {_kind(items)}")
        if not 1 <= len(items) <= MAX_ITEMS:
            raise ApiError(400, f"events: {len(items)} events; send 1 to {MAX_ITEMS} per request")
        prefix = "events"
    elif isinstance(body, dict):
        items, prefix = [body], ""
    else:
        raise ApiError(400, f'body: expected an event object or {{"events": [...]}}, got {_kind(body)}')
    problems = Problems()
    parsed = [_event(item, i, f"{prefix}[{i}]" if prefix else "", now, problems) for i, item in enumerate(items)]
    events = [e for e in parsed if e is not None]
    accepted, duplicates = _transaction(lambda session: _store_events(session, events, problems.copy(), len(items), now))
    return jsonify(accepted=accepted, duplicates=duplicates), 202


def _store_events(session: Session, events: list[_EventIn], problems: Problems, total: int, now: datetime) -> tuple[int, int]:
    contacts = _contacts(session, {e.email for e in events if e.email})
    external_ids = {e.external_id for e in events if e.external_id}
    accounts = {a.external_id: a for a in session.scalars(select(Account).where(Account.external_id.in_(external_ids)))} if external_ids else {}
    for e in events:
        contact = contacts.get(e.email) if e.email else None
        account = accounts.get(e.external_id) if e.external_id else None
        if e.email and contact is None:
            problems.add(e.index, _join(e.where, "contact.email"), f"no contact with email {e.email}")
        if e.external_id and account is None:
            problems.add(e.index, _join(e.where, "account.external_id"), f"no account with external_id {e.external_id!r}")
        if contact is not None and account is not None and contact.account_id != account.id:
            problems.add(e.index, _join(e.where, "account.external_id"), f"{e.email} is not a contact of account {e.external_id!r}")
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
            account_id = accounts[e.external_id].id if e.external_id else contact.account_id if contact else None
            record_event(
                session, now, kind=EventKind.CUSTOM, name=e.name, contact_id=contact.id if contact else None, account_id=account_id,
                dedupe_key=e.key, data=e.properties, occurred_at=e.occurred_at,
            )  # fmt: skip
            accepted += 1
    return accepted, duplicates


# ---------------------------------------------------------------------------- in-app messages


def _in_app(item: InAppMessage) -> dict[str, Any]:
    return {
        "id": item.id, "title": item.title, "body": item.body, "url": item.url, "created_at": _iso(item.created_at),
        "expires_at": _iso(item.expires_at), "seen_at": _iso(item.seen_at), "clicked_at": _iso(item.clicked_at),
    }  # fmt: skip


@bp.get("/contacts/<email>/in-app")
def in_app_messages(email: str) -> ResponseReturnValue:
    """The contact's in-app messages that have not expired, newest first; unseen ones unless ``?all=1``."""
    address, include_seen, now = _path_email(email), _flag("all"), _now()
    with _sessions()() as session:
        contact = _contact_or_404(session, address)
        query = select(InAppMessage).where(InAppMessage.contact_id == contact.id, InAppMessage.expires_at.is_(None) | (InAppMessage.expires_at > now))
        if not include_seen:
            query = query.where(InAppMessage.seen_at.is_(None))
        items = session.scalars(query.order_by(InAppMessage.created_at.desc(), InAppMessage.id.desc()).limit(IN_APP_LIMIT)).all()
        return jsonify([_in_app(item) for item in items])


@bp.post("/in-app/<int(max=2147483647):in_app_id>/seen")
def in_app_seen(in_app_id: int) -> ResponseReturnValue:
    """The product showed the message: ``seen_at`` is set the first time, and an ``in_app_seen`` event recorded."""
    return _acknowledge(in_app_id, clicked=False)


@bp.post("/in-app/<int(max=2147483647):in_app_id>/clicked")
def in_app_clicked(in_app_id: int) -> ResponseReturnValue:
    """The contact followed the message: ``clicked_at`` (and ``seen_at``, if unset) the first time."""
    return _acknowledge(in_app_id, clicked=True)


def _acknowledge(in_app_id: int, *, clicked: bool) -> ResponseReturnValue:
    _no_body()
    now = _now()
    marks = [("seen_at", "in_app_seen")] + ([("clicked_at", "in_app_clicked")] if clicked else [])

    def work(session: Session) -> dict[str, Any]:
        item = session.get(InAppMessage, in_app_id)
        if item is None:
            raise ApiError(404, f"no in-app message {in_app_id}")
        for column, name in marks:
            # A conditional UPDATE, so two requests at once still record the first time only.
            first = update(InAppMessage).where(InAppMessage.id == in_app_id, getattr(InAppMessage, column).is_(None)).values({column: now})
            if getattr(session.execute(first.execution_options(synchronize_session=False)), "rowcount", 0):
                record_event(
                    session, now, kind=EventKind.CUSTOM, name=name, contact_id=item.contact_id, enrollment_id=item.enrollment_id,
                    journey_id=item.journey_id, step_id=item.step_id, data={"in_app_id": item.id},
                )  # fmt: skip
        session.flush()
        session.refresh(item)
        return _in_app(item)

    return jsonify(_transaction(work))


# ---------------------------------------------------------------------------- GET /contacts/<email>


@bp.get("/contacts/<email>")
def contact(email: str) -> ResponseReturnValue:
    """The contact, their account and their latest answers (survey scores, RSVPs); machine hits left out."""
    address = _path_email(email)
    with _sessions()() as session:
        found = _contact_or_404(session, address)
        account = session.get(Account, found.account_id) if found.account_id else None
        answers = session.execute(
            select(Event.kind, Event.step_id, Journey.key, Event.value, Event.occurred_at)
            .outerjoin(Journey, Journey.id == Event.journey_id)
            .where(Event.contact_id == found.id, Event.kind.in_([EventKind.ANSWER, EventKind.RSVP]), Event.classification != Classification.MACHINE)
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(RECENT_ANSWERS)
        ).all()
        return jsonify(
            email=found.email, name=found.name, locale=found.locale, time_zone=found.time_zone, subscribed=found.subscribed,
            tags=list(found.tags or []), attributes=dict(found.attributes or {}),
            account={"external_id": account.external_id, "name": account.name} if account else None,
            answers=[{"kind": kind, "step_id": step, "journey": journey, "value": value, "occurred_at": _iso(at)} for kind, step, journey, value, at in answers],
        )  # fmt: skip


# ---------------------------------------------------------------------------- POST /webhooks/bounces


@dataclass
class _Notice:
    """One recipient's bounce or complaint, from either format."""

    index: int
    kind: EventKind  # BOUNCE or COMPLAINT
    email: str
    hard: bool
    message_ids: tuple[str, ...]
    diagnostic: str | None
    source: str  # "webhook" or "ses"
    key: str | None  # the event's dedupe key, when the notice can be told apart from a repeat
    occurred_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)


GENERIC_FIELDS = {"type", "email", "message_id", "bounce_type", "diagnostic"}


def _generic(obj: dict[str, Any], index: int, where: str, problems: Problems) -> list[_Notice]:
    before = len(problems.items)
    _object(obj, where, GENERIC_FIELDS, {"type", "email"}, problems, index)
    kind = obj.get("type")
    if "type" in obj and kind not in ("bounce", "complaint"):
        problems.add(index, _join(where, "type"), f"expected 'bounce' or 'complaint', got {str(kind)[:20]!r}")
    email = _address(obj.get("email"), _join(where, "email"), problems, index) if "email" in obj else None
    message_id = _text(obj, "message_id", where, problems, index, max_len=255)
    bounce_type = obj.get("bounce_type")
    if kind == "bounce" and bounce_type not in ("hard", "soft"):
        problems.add(index, _join(where, "bounce_type"), f"expected 'hard' or 'soft' for a bounce, got {str(bounce_type)[:20]!r}")
    if kind == "complaint" and "bounce_type" in obj:
        problems.add(index, _join(where, "bounce_type"), "only for bounces")
    diagnostic = _text(obj, "diagnostic", where, problems, index, max_len=2000)
    if len(problems.items) > before or email is None:
        return []
    event_kind = EventKind.BOUNCE if kind == "bounce" else EventKind.COMPLAINT
    key = f"webhook:{_digest(event_kind, str(bounce_type), email, message_id.strip().strip('<>'))}" if message_id else None
    detail = {"source": "webhook", "bounce_type": bounce_type, "diagnostic": diagnostic} if kind == "bounce" else {"source": "webhook"}
    return [_Notice(index, event_kind, email, bounce_type == "hard", (message_id,) if message_id else (), diagnostic, "webhook", key, None, detail)]


def _ses(obj: dict[str, Any], index: int, where: str, problems: Problems) -> list[_Notice] | None:
    """An Amazon SES notification (``notificationType``, or ``eventType`` from event publishing);
    None for the kinds that are not bounces or complaints (Delivery, Send, ...)."""
    kind = obj.get("notificationType", obj.get("eventType"))
    if kind not in ("Bounce", "Complaint"):
        return None
    mail = obj.get("mail", {})
    if not isinstance(mail, dict):
        problems.add(index, _join(where, "mail"), f"expected an object, got {_kind(mail)}")
        return []
    ids = _ses_message_ids(mail)
    part = obj.get(kind.lower())
    place = _join(where, kind.lower())
    if not isinstance(part, dict):
        problems.add(index, place, f"expected an object, got {_kind(part)}")
        return []
    list_name = "bouncedRecipients" if kind == "Bounce" else "complainedRecipients"
    recipients = part.get(list_name)
    if not isinstance(recipients, list) or not recipients:
        problems.add(index, _join(place, list_name), f"expected a non-empty array, got {_kind(recipients)}")
        return []
    feedback_id = part.get("feedbackId") if isinstance(part.get("feedbackId"), str) else None
    when = _timestamp(part.get("timestamp"), "timestamp", Problems(), index)  # a bad one is no reason to lose the bounce
    bounce_type = part.get("bounceType")
    if kind == "Bounce" and not isinstance(bounce_type, str):
        problems.add(index, _join(place, "bounceType"), f"expected Permanent, Transient or Undetermined, got {_kind(bounce_type)}")
    feedback_type = part.get("complaintFeedbackType") if isinstance(part.get("complaintFeedbackType"), str) else None
    if feedback_type == "not-spam":
        return None  # the recipient said it is not spam: nothing to act on
    notices = []
    for i, recipient in enumerate(recipients):
        spot = f"{_join(place, list_name)}[{i}]"
        if not isinstance(recipient, dict):
            problems.add(index, spot, f"expected an object, got {_kind(recipient)}")
            continue
        raw = recipient.get("emailAddress")
        email = _address(parseaddr(raw)[1] if isinstance(raw, str) and "<" in raw else raw, _join(spot, "emailAddress"), problems, index)
        diagnostic = recipient.get("diagnosticCode") if isinstance(recipient.get("diagnosticCode"), str) else None
        if email is None:
            continue
        if kind == "Bounce":
            detail = {"source": "ses", "bounce_type": bounce_type, "bounce_subtype": part.get("bounceSubType"), "diagnostic": diagnostic, "feedback_id": feedback_id}
            notice = _Notice(index, EventKind.BOUNCE, email, bounce_type == "Permanent", ids, diagnostic, "ses", None, when, detail)
        else:
            detail = {"source": "ses", "feedback_type": feedback_type, "feedback_id": feedback_id}
            notice = _Notice(index, EventKind.COMPLAINT, email, False, ids, feedback_type, "ses", None, when, detail)
        notice.key = f"ses:{_digest(feedback_id, email)}" if feedback_id else (f"ses:{_digest(kind, str(bounce_type), email, *ids)}" if ids else None)
        notices.append(notice)
    return notices


def _ses_message_ids(mail: dict[str, Any]) -> tuple[str, ...]:
    """Our Message-ID header as SES reports it (it sends under an id of its own, ``mail.messageId``)."""
    ids = []
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        ids.append(common["messageId"])
    headers = mail.get("headers")
    if isinstance(headers, list):
        ids += [h["value"] for h in headers if isinstance(h, dict) and str(h.get("name", "")).lower() == "message-id" and isinstance(h.get("value"), str)]
    if isinstance(mail.get("messageId"), str):
        ids.append(mail["messageId"])
    return tuple(dict.fromkeys(i for i in ids if i.strip() and len(i) <= 255))


@bp.post("/webhooks/bounces")
def bounce_webhook() -> ResponseReturnValue:
    """Bounces and complaints from the mail relay: suppress the address, mark the message, record the event."""
    body = _body()
    items = body if isinstance(body, list) else [body]
    if not 1 <= len(items) <= MAX_ITEMS:
        raise ApiError(400, f"body: {len(items)} notifications; send 1 to {MAX_ITEMS} per request")
    problems, notices, ignored = Problems(), [], 0
    for index, item in enumerate(items):
        where = f"[{index}]" if isinstance(body, list) else ""
        if isinstance(item, dict) and "Type" in item:  # an Amazon SNS envelope
            sns_type = item.get("Type")
            if sns_type in ("SubscriptionConfirmation", "UnsubscribeConfirmation") and isinstance(item.get("SubscribeURL"), str):
                log.warning("Amazon SNS %s for topic %s: to confirm, open %s", sns_type, item.get("TopicArn"), item["SubscribeURL"])
                ignored += 1
                continue
            if sns_type != "Notification" or not isinstance(item.get("Message"), str):
                problems.add(index, _join(where, "Type"), "expected an SNS Notification with a Message string (or a SubscriptionConfirmation)")
                continue
            try:
                item = _loads(item["Message"], _join(where, "Message"))
            except ApiError as exc:
                problems.add(index, _join(where, "Message"), exc.message)
                continue
            where = _join(where, "Message")
        if not isinstance(item, dict):
            problems.add(index, where or "(notification)", f"expected an object, got {_kind(item)}")
        elif "notificationType" in item or "eventType" in item:
            found = _ses(item, index, where, problems)
            ignored += found is None
            notices += found or []
        else:
            notices += _generic(item, index, where, problems)
    if len(notices) > MAX_ITEMS:
        raise ApiError(400, f"body: {len(notices)} recipients; send at most {MAX_ITEMS} per request")
    problems.raise_if_any(len(items), "notifications")
    processed, duplicates = _transaction(lambda session: _store_notices(session, notices, _now()))
    return jsonify(processed=processed, duplicates=duplicates, ignored=ignored)


def _bracketed(message_id: str) -> tuple[str, str]:
    core = message_id.strip().strip("<>")
    return core, f"<{core}>"


def _store_notices(session: Session, notices: list[_Notice], now: datetime) -> tuple[int, int]:
    emails = {n.email for n in notices}
    contacts = _contacts(session, emails)
    wanted = {form for n in notices for m in n.message_ids for form in _bracketed(m)}
    messages = {m.message_id: m for m in session.scalars(select(Message).where(Message.message_id.in_(wanted)))} if wanted else {}
    suppressed = {s.email: s for s in session.scalars(select(Suppression).where(Suppression.email.in_(emails)))}
    stored = _existing_keys(session, {n.key for n in notices if n.key})
    processed = duplicates = 0
    with session.no_autoflush:
        for n in notices:
            reason = SuppressionReason.COMPLAINT if n.kind == EventKind.COMPLAINT else SuppressionReason.HARD_BOUNCE if n.hard else None
            existing = suppressed.get(n.email)
            repeat = n.key in stored if n.key else (reason is not None and existing is not None and existing.reason == reason)
            if repeat:
                duplicates += 1
                continue
            if n.key:
                stored.add(n.key)
            forms = [form for m in n.message_ids for form in _bracketed(m)]
            message = next((messages[f] for f in forms if f in messages and (messages[f].to_address or n.email).lower() == n.email), None)
            contact = contacts.get(n.email) or (session.get(Contact, message.contact_id) if message else None)
            if reason is not None and existing is None:
                label = f"{n.source}: {n.diagnostic}" if n.diagnostic else f"{n.source}: {reason}"
                suppressed[n.email] = Suppression(email=n.email, reason=reason, source=label[:255], created_at=now)
                session.add(suppressed[n.email])
            if n.hard and message is not None:
                message.status, message.error = MessageStatus.BOUNCED, (n.diagnostic or "hard bounce")[:2000]
            if n.kind == EventKind.COMPLAINT and contact is not None:
                contact.subscribed = False
            bounce = n.kind == EventKind.BOUNCE
            record_event(
                session, now, kind=n.kind, contact_id=contact.id if contact else None, account_id=contact.account_id if contact else None,
                message_id=message.id if message else None, enrollment_id=message.enrollment_id if message else None,
                journey_id=message.journey_id if message else None, step_id=message.step_id if message else None,
                classification=Classification.UNKNOWN if bounce else Classification.HUMAN,
                reason=("hard bounce" if n.hard else "soft bounce") if bounce else "complaint",
                value=n.diagnostic[:2048] if n.diagnostic else None, dedupe_key=n.key,
                data={k: v for k, v in n.detail.items() if v is not None}, occurred_at=n.occurred_at,
            )  # fmt: skip
            processed += 1
    return processed, duplicates


# ---------------------------------------------------------------------------- GET /openapi.json


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this blueprint, shipped beside it as ``openapi.yaml``."""
    document: dict[str, Any] = yaml.safe_load(resources.files("campaigns.web").joinpath("openapi.yaml").read_text(encoding="utf-8"))
    return document


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The API's OpenAPI document (no key needed), with this installation's address as its server."""
    document = {**openapi_document(), "servers": [{"url": current_app.config["CAMPAIGNS"].base_url}]}
    return current_app.response_class(json.dumps(document, ensure_ascii=False, indent=1), mimetype="application/json")
