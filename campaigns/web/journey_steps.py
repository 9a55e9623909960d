"""Who is at a journey's step, on the dashboard: the page each flowchart box links to, and
the export of a journey's enrollments as CSV (routes on the dashboard blueprint, behind its
sign-in, CSRF and role checks).

``/journeys/<key>/steps/<step>`` lists the enrollments whose current step it is (a contact,
or an account), their state, since when they have been there and when they run next; paged
and filtered by state (``now``, active and waiting, by default). ``/journeys/<key>/
enrollments.csv?step=&state=`` streams the same rows, of one step or all, as UTF-8 with a
byte-order mark (so Excel reads Japanese names right), and records the export in the audit
log. The counts are :mod:`campaigns.insight.flow`'s.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

from flask import Response, abort, g, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from campaigns.insight import flow
from campaigns.journeys.model import Journey
from campaigns.store import audit
from campaigns.store.enums import AuditAction, EnrollmentState
from campaigns.web import dashboard_base as base
from campaigns.web.dashboard_base import bp
from campaigns.web.roles import READ_PEOPLE, STEER, needs

PAGE = 50
"""Enrollments per page of a step's list."""

STATES = ("now", "all", *(s.value for s in EnrollmentState))
"""The ``state`` filter: ``now`` (active and waiting), ``all``, or one state."""

_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_STEP = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _states(name: str) -> tuple[str, ...]:
    value = request.args.get(name, "now") or "now"
    if value not in STATES:
        abort(400, f"{name}: expected one of {', '.join(STATES)}.")
    if value == "now":
        return flow.NOW
    if value == "all":
        return tuple(s.value for s in EnrollmentState)
    return (value,)


def _page_number() -> int:
    raw = request.args.get("page", "1") or "1"
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 100_000:  # not "²"
        abort(400, "page: expected a whole number from 1.")
    return int(raw)


def _journey(session: Session, key: str) -> tuple[int, Journey]:
    if not _KEY.fullmatch(key):
        abort(404, "No such journey.")
    found = flow.current(session, key)
    if found is None:
        abort(404, f"No journey {key!r}.")
    return found


@bp.get("/journeys/<key>/steps/<step>")
@needs(READ_PEOPLE)
def journey_step(key: str, step: str) -> ResponseReturnValue:
    states = _states("state")
    number = _page_number()
    with base.sessions()() as session:
        journey_id, definition = _journey(session, key)
        if not _STEP.fullmatch(step) or step not in {s.id for s in definition.steps}:
            abort(404, f"No step {step!r} in {key}.")
        total = flow.count_at_step(session, journey_id, step, states)
        rows = flow.at_step(
            session, journey_id, step, states, offset=(number - 1) * PAGE, limit=PAGE
        )
        counts = flow.flow(session, journey_id, definition).steps[step]
    state = request.args.get("state", "now") or "now"
    pages = max(1, -(-total // PAGE))
    return base.page(
        "journey_step.html",
        key=key,
        journey_name=definition.name,
        step=definition.step(step),
        rows=rows,
        total=total,
        page_number=number,
        pages=pages,
        state=state,
        states=STATES,
        counts=counts,
        csv_url=url_for("dashboard.journey_enrollments_csv", key=key, step=step, state=state),
    )


@bp.get("/journeys/<key>/enrollments.csv")
@needs(STEER)
def journey_enrollments_csv(key: str) -> ResponseReturnValue:
    states = _states("state")
    step = request.args.get("step", "") or None
    with base.sessions()() as session, session.begin():
        journey_id, definition = _journey(session, key)
        if step is not None and (
            not _STEP.fullmatch(step) or step not in {s.id for s in definition.steps}
        ):
            abort(404, f"No step {step!r} in {key}.")
        audit.record(
            session,
            g.user.email,
            AuditAction.EXPORT,
            key,
            detail={"step": step, "state": request.args.get("state", "now") or "now"},
        )
    maker = base.sessions()

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(flow.CSV_HEADER)
        yield "\ufeff" + buffer.getvalue()
        with maker() as session:
            for row in flow.each_at_step(session, journey_id, step, states):
                buffer.seek(0)
                buffer.truncate()
                writer.writerow(flow.csv_row(row))
                yield buffer.getvalue()

    name = f"{key}-{step or 'all'}-enrollments.csv"
    return Response(
        stream_with_context(lines()),
        mimetype="text/csv",
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
