"""The dashboard's steering of a journey and its audit log (routes on the dashboard blueprint,
behind its sign-in and CSRF checks).

The journey page's lifecycle block (``dashboard/_lifecycle.html``) posts here: pause, resume,
archive, make a draft live, and take one contact (by email) or account (by external id) out.
Each is :mod:`campaigns.engine.lifecycle`'s, the same as ``campaigns journey ...``, with the
signed-in user's email as the actor of its audit entry; a change the journey's status does not
allow, or someone who is not in it, is said in a message on the page, changing nothing.
``/audit`` lists the audit log, newest first, a page at a time, optionally of one journey.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.engine import lifecycle
from campaigns.exceptions import CampaignsError, UnknownJourney
from campaigns.store import audit
from campaigns.store.models import Journey
from campaigns.web import dashboard_base as base
from campaigns.web.dashboard_base import bp
from campaigns.web.roles import MANAGE_USERS, READ_REPORTS, STEER, may, needs

PAGE = 50
"""Audit entries per page."""

_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_ID = re.compile(r"[0-9]{1,18}")


def _now() -> datetime:
    return current_app.extensions["campaigns.clock"].now()


@bp.app_template_global()
def may_steer() -> bool:
    """Whether the signed-in user may pause, resume, archive and take people out."""
    user = g.get("user")
    return user is not None and may(user.role, STEER)


@bp.app_template_global()
def paused_since(key: str) -> datetime | None:
    """Since when journey ``key`` is paused (None unless it is)."""
    with base.sessions()() as session:
        return session.scalar(select(Journey.paused_at).where(Journey.key == key))


def _steer(
    key: str, move: Callable[[Session, str, str, datetime], lifecycle.Change], done: str
) -> ResponseReturnValue:
    if not _KEY.fullmatch(key):
        abort(404, "No such journey.")
    try:
        with base.sessions()() as session, session.begin():
            change = move(session, key, g.user.email, _now())
    except UnknownJourney:
        abort(404, f"No journey {key!r}.")
    except CampaignsError as exc:
        flash(str(exc), "error")
    else:
        flash(f"{change.key}: {done}.", "ok")
    return redirect(url_for("dashboard.journey", key=key))


@bp.post("/journeys/<key>/pause")
@needs(STEER)
def journey_pause(key: str) -> ResponseReturnValue:
    return _steer(key, lifecycle.pause, "paused: nothing enters and nothing is sent")


@bp.post("/journeys/<key>/resume")
@needs(STEER)
def journey_resume(key: str) -> ResponseReturnValue:
    return _steer(key, lifecycle.resume, "resumed where everyone was")


@bp.post("/journeys/<key>/archive")
@needs(STEER)
def journey_archive(key: str) -> ResponseReturnValue:
    return _steer(key, lifecycle.archive, "archived: its running enrollments ended")


@bp.post("/journeys/<key>/live")
@needs(STEER)
def journey_live(key: str) -> ResponseReturnValue:
    return _steer(key, lifecycle.go_live, "live: it enrols and sends from the next tick")


@bp.post("/journeys/<key>/remove")
@needs(STEER)
def journey_remove(key: str) -> ResponseReturnValue:
    """Take the contact (``kind=contact``, an email) or account (``kind=account``, an
    external id) in ``who`` out of the journey."""
    if not _KEY.fullmatch(key):
        abort(404, "No such journey.")
    kind = request.form.get("kind", "contact")
    if kind not in ("contact", "account"):
        abort(400, "kind: expected contact or account.")
    who = request.form.get("who", "")
    if len(who) > 320 or any(ch < " " or ch == "\x7f" for ch in who):
        abort(400, "who: at most 320 characters, on one line.")
    who = who.strip()
    if not who:
        flash("Name the contact's email or the account's id to take out.", "error")
        return redirect(url_for("dashboard.journey", key=key))
    try:
        with base.sessions()() as session, session.begin():
            removal = lifecycle.remove(
                session,
                key,
                g.user.email,
                _now(),
                contact=who if kind == "contact" else None,
                account=who if kind == "account" else None,
            )
    except UnknownJourney:
        abort(404, f"No journey {key!r}.")
    except CampaignsError as exc:
        flash(str(exc), "error")
    else:
        flash(
            f"{removal.who} taken out of {removal.key}: {removal.ended} enrollment"
            f"{'s' if removal.ended != 1 else ''} ended, {removal.withdrawn} unsent message"
            f"{'s' if removal.withdrawn != 1 else ''} withdrawn.",
            "ok",
        )
    return redirect(url_for("dashboard.journey", key=key))


@bp.get("/audit")
@needs(READ_REPORTS)
def audit_log() -> ResponseReturnValue:
    """Who did what, newest first: the journeys' entries for everyone who reads the reports,
    the users' too for those who manage users; ``journey`` filters, ``before`` pages back."""
    key = request.args.get("journey", "").strip()
    if key and not _KEY.fullmatch(key):
        abort(400, "journey: not a journey's key.")
    before_text = request.args.get("before", "").strip()
    if before_text and not _ID.fullmatch(before_text):
        abort(400, "before: expected an entry's number.")
    before = int(before_text) if before_text else None
    everything = may(g.user.role, MANAGE_USERS) and not key
    with base.sessions()() as session:
        keys = list(session.scalars(select(Journey.key).order_by(Journey.key)))
        found = audit.entries(
            session,
            kind=None if everything else audit.JOURNEY,
            target=key or None,
            before=before,
            limit=PAGE + 1,
        )
        rows = [
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "kind": e.target_kind,
                "target": e.target,
                "detail": e.detail,
            }
            for e in found[:PAGE]
        ]
    older = rows[-1]["id"] if len(found) > PAGE else None
    return base.page(
        "audit.html", entries=rows, journey=key, keys=keys, older=older, paged=before is not None
    )
