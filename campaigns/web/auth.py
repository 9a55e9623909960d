"""Signing in to the dashboard: the session, CSRF tokens and safe ``next`` addresses.

The session is Flask's signed cookie (``HttpOnly``, ``SameSite=Lax``, ``Secure`` behind
https; set in :func:`campaigns.web.create_app`). It holds the user's id, their session
version at sign-in (compared with the database on every request, so signing out or a new
password ends every session of theirs at once, copies of the cookie included) and a
per-session CSRF token that every POST form must send back (:func:`csrf_ok`). The brake on
password guessing is :mod:`campaigns.web.throttle`.
"""

from __future__ import annotations

import hmac
import secrets
import string
from urllib.parse import urlsplit

from flask import request, session
from sqlalchemy.orm import Session

from campaigns.store.models import User

CSRF_FIELD = "csrf"
"""The name of the hidden form field (and session key) carrying the CSRF token."""

_NEXT_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")


# ---------------------------------------------------------------------------- CSRF


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def csrf_ok() -> bool:
    """Whether the posted form carries this session's CSRF token."""
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "surrogateescape"))


# ---------------------------------------------------------------------------- the signed-in user


def sign_in(user: User) -> None:
    """Start a fresh session for ``user`` (a new CSRF token too)."""
    session.clear()
    session.permanent = True
    session["user"] = user.id
    session["version"] = user.session_version
    csrf_token()


def sign_out() -> None:
    """Forget this browser's session. The caller ends the user's sessions in the database
    (:func:`campaigns.store.users.end_sessions`): clearing the cookie alone leaves copies valid."""
    session.clear()


def current_user(db: Session) -> User | None:
    """The signed-in user, or None (no session, a deleted user, or a session ended since:
    signed out somewhere, or a new password)."""
    user_id, version = session.get("user"), session.get("version")
    if type(user_id) is not int or type(version) is not int:
        return None
    user = db.get(User, user_id)
    # A plain comparison: the version is no secret, the cookie's signature is what cannot be forged.
    if user is None or user.session_version != version:
        return None
    return user


# ---------------------------------------------------------------------------- redirects


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path on this site (``/journeys?x=1``), else None.

    Refused: other sites (``https://evil``, ``//evil``), backslashes (``/\\evil``, which
    browsers read as ``//evil``), and spaces or control characters (browsers drop tabs and
    newlines, so ``/\\t/evil`` would become ``//evil``); only printable URL characters pass.
    """
    if not value or len(value) > 2048 or not value.startswith("/") or value.startswith("//"):
        return None
    if not set(value) <= _NEXT_CHARS:
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value
