"""The API blueprint: its key check, its one error shape, and the helpers its route modules
share (:mod:`campaigns.web.api` for events, in-app messages, contacts and reports,
:mod:`campaigns.web.api_crm` for tasks, timelines and NPS). Both import this module; neither
imports the other, and the app factory registers :data:`bp` once both have added their routes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.store.enums import UserRole
from campaigns.store.models import Contact
from campaigns.tracking.events import contacts_by_email
from campaigns.web import api_input, roles
from campaigns.web.api_input import MAX_BODY, ApiError

bp = Blueprint("api", __name__, url_prefix="/api/v1")

ATTEMPTS = 3
"""Tries of a write that lost a race on a unique key (the next try sees the winner's row)."""

SNS_AUTH = {
    "api.bounce_webhook"
}  # Amazon SNS can send credentials only as Basic auth (https://user:KEY@host/...)

T = TypeVar("T")


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
    """Every endpoint but the OpenAPI document (marked :data:`~campaigns.web.roles.PUBLIC`)
    needs ``Authorization: Bearer <one of API_KEYS>``, and the key's role the permission the
    endpoint is marked with (:mod:`campaigns.web.roles`; 403 when it lacks it)."""
    request.max_content_length = MAX_BODY
    view = current_app.view_functions.get(request.endpoint or "")
    permission = roles.required(view, request.method)
    if permission == roles.PUBLIC:
        return
    keys: tuple[str, ...] = current_app.config["CAMPAIGNS"].api_keys
    if not keys:
        raise ApiError(403, "the API is off: set API_KEYS")
    basic = request.endpoint in SNS_AUTH
    challenge = [("WWW-Authenticate", 'Bearer realm="campaigns"')] + (
        [("WWW-Authenticate", 'Basic realm="campaigns"')] if basic else []
    )
    header = request.headers.get("Authorization", "").strip()
    if not header:
        raise ApiError(
            401,
            "missing Authorization header; send 'Authorization: Bearer <API key>'",
            headers=challenge,
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "basic" and basic and request.authorization is not None:
        token = request.authorization.password or ""
    elif scheme.lower() != "bearer":
        raise ApiError(
            401,
            f"unsupported Authorization scheme {scheme[:20]!r};"
            " send 'Authorization: Bearer <API key>'",
            headers=challenge,
        )
    given = token.strip().encode("utf-8", "replace")
    matched: str | None = None
    for key in keys:  # compare with every key, so the time taken says nothing about which is close
        if hmac.compare_digest(key.encode(), given):
            matched = key
    if matched is None:
        raise ApiError(
            401,
            "invalid API key",
            headers=[
                ("WWW-Authenticate", 'Bearer realm="campaigns", error="invalid_token"'),
                *challenge[1:],
            ],
        )
    role = current_app.config["CAMPAIGNS"].api_key_roles.get(matched) or UserRole.ADMIN
    g.api_role = role  # the actor of what this request records (consent, audit): see actor()
    if view is not None and not roles.may(role, permission):
        raise ApiError(
            403, f"this API key's role ({role}) may not {roles.WORDS.get(permission, permission)}"
        )


@bp.after_request
def no_store(response: Any) -> Any:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# ---------------------------------------------------------------------------- shared helpers


def iso(value: datetime | None) -> str | None:
    """A time as the API writes it (ISO 8601), or None."""
    return value.isoformat() if value else None


def now() -> datetime:
    now: datetime = current_app.extensions["campaigns.clock"].now()
    return now


def actor() -> str:
    """Who a write through the API is, for consent records and the audit log: ``api:<the
    key's role>``."""
    return f"api:{getattr(g, 'api_role', None) or 'unknown'}"


def sessions() -> sessionmaker[Session]:
    factory: sessionmaker[Session] = current_app.extensions["campaigns.sessions"]
    return factory


def transaction(work: Callable[[Session], T]) -> T:
    """Run ``work`` and commit. A unique key taken by a concurrent request meanwhile (an
    idempotency key, a suppressed address) rolls back and runs ``work`` again: it then finds
    the other request's row, so the outcome is the same as if the two had come in turn."""
    for _ in range(ATTEMPTS):
        with sessions()() as session:
            try:
                result = work(session)
                session.commit()
            except IntegrityError:
                session.rollback()
                continue
            return result
    raise ApiError(
        409, "the request kept colliding with concurrent requests for the same keys; send it again"
    )


def contact_or_404(session: Session, address: str) -> Contact:
    contact = contacts_by_email(session, [address]).get(address)
    if contact is None:
        raise ApiError(404, f"no contact with email {address}")
    return contact


def only_params(allowed: set[str]) -> None:
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        raise ApiError(
            400,
            f"unknown query parameter {unknown[0]!r}"
            + (f"; expected {', '.join(sorted(allowed))}" if allowed else ""),
        )


def day_param(name: str) -> date | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        return api_input.parse_day(value)
    except ValueError:
        raise ApiError(400, f"{name}: expected a date YYYY-MM-DD") from None
