"""The dashboard blueprint and what every page on it shares: the sign-in, CSRF and role
guard run before each request, the security headers, the error page, and the page renderer.

The pages themselves are in :mod:`campaigns.web.dashboard` (signing in, journeys and their
reports), :mod:`campaigns.web.crm` (tasks, contacts) and :mod:`campaigns.web.previews`; each
imports this module and none imports another, and the app factory registers :data:`bp` once
they have added their routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from campaigns.insight.rates import Rate
from campaigns.web import roles
from campaigns.web.auth import csrf_ok, csrf_token, current_user, safe_next

bp = Blueprint("dashboard", __name__, template_folder="templates")

PUBLIC = frozenset({"dashboard.login"})
"""Endpoints open without signing in (those marked :data:`~campaigns.web.roles.PUBLIC`)."""

BAD_FORM = (
    "This form has expired or did not come from this site. Go back, reload the page and try again."
)

F = TypeVar("F", bound=Callable[..., object])

_BODY_LIMIT = "_campaigns_body_limit"

CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# ---------------------------------------------------------------------------- plumbing


def sessions() -> sessionmaker[Session]:
    factory: sessionmaker[Session] = current_app.extensions["campaigns.sessions"]
    return factory


def format_rate(rate: Rate) -> str:
    """``42.9% [15.8–75.0] n=7``: the rate, its 95% Wilson interval and its n; ``—`` for n=0."""
    if not rate.n or rate.value is None or rate.interval is None:
        return "—"
    low, high = rate.interval
    return f"{rate.value * 100:.1f}% [{low * 100:.1f}–{high * 100:.1f}] n={rate.n:,}"


def page(name: str, status: int = 200, **values: Any) -> Response:
    body = render_template(
        f"dashboard/{name}", csrf=csrf_token(), rate=format_rate, user=g.get("user"), **values
    )
    return Response(body, status=status, mimetype="text/html")


def _here() -> str | None:
    """This request's path and query, if it may be a ``next`` after signing in."""
    path = quote(request.path, safe="/:@!$&'()*+,;=-._~")
    query = request.query_string.decode("latin-1")
    return safe_next(f"{path}?{query}" if query else path)


def body_limit(limit: int) -> Callable[[F], F]:
    """Mark a view with the largest request body it takes, in bytes (413 beyond), in place of
    the app's ``MAX_CONTENT_LENGTH``: the guard applies it before it reads the form."""

    def mark(view: F) -> F:
        setattr(view, _BODY_LIMIT, limit)
        return view

    return mark


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    """CSRF on every POST, then a signed-in user on every page but the public ones, then
    the permission the page is marked with (:mod:`campaigns.web.roles`): 403 without it."""
    view = current_app.view_functions.get(request.endpoint or "")
    limit = getattr(view, _BODY_LIMIT, None)
    if isinstance(limit, int):
        request.max_content_length = limit
    if request.method == "POST" and not csrf_ok():
        abort(400, BAD_FORM)
    permission = roles.required(view, request.method)
    if request.endpoint in PUBLIC or permission == roles.PUBLIC:
        return None
    with sessions()() as session:
        g.user = current_user(session)
    if g.user is None:
        return redirect(
            url_for("dashboard.login", next=_here() if request.method == "GET" else None)
        )
    if not roles.may(g.user.role, permission):
        abort(403, roles.refusal(g.user.role, permission))
    return None


@bp.app_template_global("may")
def may(permission: str) -> bool:
    """Whether the signed-in user may do ``permission`` (templates hide what they may not)."""
    if permission not in roles.PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    user = g.get("user")
    return user is not None and roles.may(user.role, permission)


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault(
        "Content-Security-Policy", CSP
    )  # a page may set its own (the preview)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HTTPException)
def _error(exc: HTTPException) -> ResponseReturnValue:
    return page(
        "error.html", status=exc.code or 500, code=exc.code, title=exc.name, message=exc.description
    )
