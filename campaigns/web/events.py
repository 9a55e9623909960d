"""The dashboard's page of outgoing events (routes on the dashboard blueprint, behind its
sign-in and CSRF checks): each subscriber with its counts, the dead-letter list, and a Replay
button that puts dead events back in the queue (audited, ``AuditAction.REPLAY``)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, request, url_for
from flask.typing import ResponseReturnValue

from campaigns.engine import hooks
from campaigns.store import audit
from campaigns.store.enums import AuditAction, OutboundStatus
from campaigns.web import dashboard_base as base
from campaigns.web.dashboard_base import bp
from campaigns.web.roles import READ_PEOPLE, STEER, needs

PAGE = 100
"""Dead events shown on the page (the API and ``campaigns events dead`` page further)."""

_ID = re.compile(r"[0-9]{1,18}")


@bp.get("/integrations/events")
@needs(READ_PEOPLE)
def outgoing_events() -> ResponseReturnValue:
    """Subscribers and their counts, and the dead letters, newest first."""
    cfg = current_app.config["CAMPAIGNS"]
    with base.sessions()() as session:
        counts = hooks.counts(session)
        dead = hooks.listing(session, OutboundStatus.DEAD, limit=PAGE)
        empty = {str(s): 0 for s in OutboundStatus}
        subscribers = [
            {
                "name": s.name,
                "host": urlsplit(s.url).netloc,  # the path may carry a token: not shown
                "types": ", ".join(s.types) or "all",
                "machine": s.machine,
                **counts.get(s.name, empty),
            }
            for s in cfg.event_subscribers
        ]
        gone = sorted(set(counts) - {s.name for s in cfg.event_subscribers})
        rows = [
            {
                "id": r.id,
                "uid": r.uid,
                "type": r.type,
                "subscriber": r.subscriber,
                "attempts": r.attempts,
                "last_status": r.last_status,
                "last_error": r.last_error,
                "occurred_at": r.occurred_at,
            }
            for r in dead
        ]
    return base.page("events.html", subscribers=subscribers, gone=gone, counts=counts, dead=rows)


@bp.post("/integrations/events/replay")
@needs(STEER)
def replay_events() -> ResponseReturnValue:
    """Replay one dead event (``id``) or every one (``all``), optionally of one subscriber."""
    one = request.form.get("id", "").strip()
    every = request.form.get("all") == "1"
    subscriber = request.form.get("subscriber", "").strip() or None
    if bool(one) == every or (one and not _ID.fullmatch(one)):
        flash("Choose one dead event, or all of them.", "error")
        return redirect(url_for("dashboard.outgoing_events"))
    with base.sessions()() as session, session.begin():
        count = hooks.replay(
            session,
            current_app.extensions["campaigns.clock"].now(),
            ids=[int(one)] if one else None,
            subscriber=subscriber,
        )
        if count:
            audit.record(
                session,
                g.user.email,
                AuditAction.REPLAY,
                subscriber or "all",
                kind="events",
                detail={"ids": [int(one)] if one else [], "all": every, "count": count},
            )
    flash(
        f"{count} dead event{'s' if count != 1 else ''} put back in the queue."
        if count
        else "Nothing to replay: the event is not dead (any more).",
        "ok" if count else "error",
    )
    return redirect(url_for("dashboard.outgoing_events"))
