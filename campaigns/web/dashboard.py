"""The dashboard: server-rendered pages for the customer-success team, behind a sign-in.

``/journeys`` lists every journey with its headline rates; ``/journeys/<key>`` shows one
journey's funnel as an inline SVG chart (:mod:`campaigns.web.charts`) and its rates by
step, segment, tier, channel and variant, for a range of days. The numbers are
:func:`campaigns.insight.report.journey_report`'s, the same as ``campaigns report`` and the API's:
human signals only, each rate with its n and 95% Wilson interval, machine opens and clicks
beside them.

Every page but ``/login`` needs a signed-in user (checked once, before every request of the
blueprint, so a new page cannot forget it); every POST needs the session's CSRF token
(:mod:`campaigns.web.auth`). Pages work without JavaScript and are sent with a strict
Content-Security-Policy: no script at all, styles only from the page itself.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

from flask import (
    abort,
    current_app,
    g,
    redirect,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.insight.report import JourneyReport, Row, global_lift, journey_report, overview
from campaigns.insight.report import journeys as report_journeys
from campaigns.store.models import Journey, JourneyVersion
from campaigns.store.users import authenticate, end_sessions, normalise_email
from campaigns.web import dashboard_base as base
from campaigns.web.auth import safe_next, sign_in, sign_out
from campaigns.web.charts import FunnelStep, Series, funnel, lines
from campaigns.web.dashboard_base import bp
from campaigns.web.roles import PUBLIC, READ_REPORTS, SIGNED_IN, needs
from campaigns.web.throttle import SignInThrottle, ThrottleUnavailable, client_key

BREAKDOWNS: tuple[tuple[str, str], ...] = (
    ("segment", "By segment"),
    ("tier", "By tier"),
    ("channel", "By channel"),
    ("variant", "By variant"),
    ("persona", "By persona"),
)
"""The tables under a journey's funnel: (``journey_report``'s ``by``, heading)."""

BAD_LOGIN = "Wrong email or password."
"""The one message for an unknown email and a wrong password alike."""

UNAVAILABLE = "Signing in is not possible for a moment. Try again in a minute."


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


# ---------------------------------------------------------------------------- plumbing


def _throttle() -> SignInThrottle:
    throttle: SignInThrottle = current_app.extensions["campaigns.signin"]
    return throttle


def _in_words(seconds: int) -> str:
    """``1 second``, ``40 seconds``, ``2 minutes``: how long to wait, as the page says it."""
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minutes"


# ---------------------------------------------------------------------------- signing in and out


@bp.route("/login", methods=["GET", "POST"])
@needs(PUBLIC)
def login() -> ResponseReturnValue:
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        return base.page(
            "login.html",
            next=target,
            email="",
            error=None,
            ephemeral=current_app.config["CAMPAIGNS"].secret_is_ephemeral,
        )
    email = request.form.get("email", "")[:320]
    password = request.form.get("password", "")
    key = normalise_email(email)
    client = client_key(
        request.remote_addr
    )  # behind TRUSTED_PROXIES load balancers, the client's own (ProxyFix)
    now = current_app.extensions["campaigns.clock"].now()
    try:
        wait = _throttle().attempt(client, key, now)
    except ThrottleUnavailable:
        current_app.logger.exception("sign-in refused: the throttle's store is unavailable")
        response = base.page("login.html", status=503, next=target, email=email, error=UNAVAILABLE)
        response.headers["Retry-After"] = "30"
        return response
    if wait:
        seconds = max(math.ceil(wait), 1)
        current_app.logger.warning("sign-in throttled for %s s: client %s", seconds, client)
        response = base.page(
            "login.html",
            status=429,
            next=target,
            email=email,
            error=f"Too many failed sign-ins. Wait {_in_words(seconds)}, then try again.",
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    with base.sessions()() as session, session.begin():
        user = authenticate(session, email, password, now)
        if user is not None:
            sign_in(user)
    if user is None:
        current_app.logger.warning(
            "sign-in failed: client %s", client
        )  # not the email: it may be a mistyped password
        return base.page("login.html", next=target, email=email, error=BAD_LOGIN)
    try:
        _throttle().succeeded(client, key)
    except (
        ThrottleUnavailable
    ):  # signed in all the same: the count it leaves only errs on the safe side
        current_app.logger.exception("the sign-in throttle's store is unavailable")
    return redirect(target or url_for("dashboard.journeys"))


@bp.post("/logout")
@needs(SIGNED_IN)
def logout() -> ResponseReturnValue:
    """Sign out: every session of this user ends, here and on every other device, so a
    copy of the cookie (kept by a shared computer, a proxy's log) is worth nothing after."""
    with base.sessions()() as session, session.begin():
        end_sessions(session, g.user.id)
    sign_out()
    return redirect(url_for("dashboard.login"))


# ---------------------------------------------------------------------------- pages


@bp.get("/")
@needs(SIGNED_IN)
def index() -> ResponseReturnValue:
    return redirect(url_for("dashboard.journeys"))


def _journey_info(session: Session, key: str | None = None) -> dict[str, tuple[str, int | None]]:
    """Each journey's (status, current version number), by key."""
    query = select(Journey.key, Journey.status, JourneyVersion.number).outerjoin(
        JourneyVersion, JourneyVersion.id == Journey.current_version_id
    )
    if key is not None:
        query = query.where(Journey.key == key)
    return {k: (status, number) for k, status, number in session.execute(query)}


@bp.get("/journeys")
@needs(READ_REPORTS)
def journeys() -> ResponseReturnValue:
    from campaigns.insight.flow import Totals, totals

    with base.sessions()() as session:
        items = overview(session)
        info = _journey_info(session)
        overall = global_lift(session)
        live = totals(session)
        ids = {k: i for k, i in session.execute(select(Journey.key, Journey.id))}
    rows = [
        {
            "key": item["journey"],
            "name": item["name"],
            "status": info.get(item["journey"], ("", None))[0],
            "version": info.get(item["journey"], ("", None))[1],
            "row": Row(item["journey"], item["counts"]),
            "live": live.get(ids.get(item["journey"], 0), Totals()),
        }
        for item in items
    ]
    # lifecycle: archived journeys leave the default list (?archived=1 shows them)
    show_archived = request.args.get("archived", "") == "1"
    archived = sum(1 for r in rows if r["status"] == "archived")
    if not show_archived:
        rows = [r for r in rows if r["status"] != "archived"]
    return base.page(
        "journeys.html",
        journeys=rows,
        global_lift=overall,
        archived=archived,
        show_archived=show_archived,
    )


def _day(name: str) -> date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    if not _DAY.fullmatch(value):
        abort(400, f"{name}: expected a date like 2026-11-24 (YYYY-MM-DD).")
    try:
        return date.fromisoformat(value)
    except ValueError:
        abort(400, f"{name}: {value} is not a date.")


@bp.get("/journeys/<key>")
@needs(READ_REPORTS)
def journey(key: str) -> ResponseReturnValue:
    if not _KEY.fullmatch(key):
        abort(404, "No such journey.")
    since, until = _day("since"), _day("until")
    if since and until and since > until:
        abort(400, "since: the first day comes after the last (until).")
    with base.sessions()() as session:
        try:
            reports: dict[str, JourneyReport] = {
                by: journey_report(session, key, by=by, since=since, until=until)
                for by in ("step", *(b for b, _ in BREAKDOWNS))
            }
        except LookupError:
            abort(404, f"No journey {key!r}.")
        status, version = _journey_info(session, key).get(key, ("", None))
        journey_id = session.scalar(select(Journey.id).where(Journey.key == key))
        allocations = _allocation_charts(session, journey_id) if journey_id is not None else []
        drawn = _flowchart(session, key, reports["step"])
    steps = reports["step"]
    chart = funnel(
        [
            FunnelStep(
                row.key or "(journey)",
                sent=row.count("sent"),
                opened=row.count("opened"),
                clicked=row.count("clicked"),
                answered=row.count("answered"),
                opened_machine=row.count("opened_machine"),
                clicked_machine=row.count("clicked_machine"),
            )
            for row in steps.rows
        ],
        title=f"{steps.name}: sent, opened, clicked and answered per step",
    )
    tables = [
        ("step", "By step", steps),
        *((by, heading, reports[by]) for by, heading in BREAKDOWNS),
    ]
    return base.page(
        "journey.html",
        report=steps,
        journey_status=status,
        version=version,
        chart=chart,
        tables=tables,
        since=since,
        until=until,
        allocations=allocations,
        flow=drawn,
    )


def _flowchart(session: Session, key: str, report: JourneyReport) -> dict[str, Any] | None:
    """The journey's flowchart with its live counts (:mod:`campaigns.web.flowchart`), and
    the counts themselves for the table of held messages beside it; None without a version."""
    from campaigns.insight.flow import current, flow
    from campaigns.web.flowchart import layout, render

    found = current(session, key)
    if found is None:
        return None
    journey_id, definition = found
    counts = flow(session, journey_id, definition)
    chart = render(
        layout(definition),
        counts.steps,
        lambda step: url_for("dashboard.journey_step", key=key, step=step),
        title=f"{report.name}: the steps and who is where now",
        converted=counts.totals.converted if definition.goal is not None else None,
    )
    return {"chart": chart, "counts": counts}


def _allocation_charts(session: Session, journey_id: int) -> list[dict[str, Any]]:
    """Per tuned step and segment: the arms' shares over time as a line chart, and the
    latest allocation with each arm's trials, rate and probability of being best."""
    from campaigns.insight.tuning import history

    groups: dict[tuple[str, str, str], list[Any]] = {}
    for row in history(session, journey_id):
        groups.setdefault((row.step_id, row.segment, row.dimension), []).append(row)
    charts = []
    for (step, segment, dimension), rows in sorted(groups.items()):
        times = sorted({r.at for r in rows})
        arms = sorted({r.arm for r in rows})
        share = {(r.at, r.arm): r.share for r in rows}
        labels = [t.strftime("%m-%d %H:%M") for t in times]
        series = [
            Series(
                arm, tuple((share[(t, arm)] * 100 if (t, arm) in share else None) for t in times)
            )
            for arm in arms
        ]
        latest = [r for r in rows if r.at == times[-1]]
        chart = lines(
            labels,
            series,
            title=f"{step} ({segment or 'all segments'}): share of new sends per {dimension}",
            description=f"How the bandit split new sends between the {dimension}s of step {step} "
            "over time; the "
            "better an arm's "
            "human response, the "
            "larger its share "
            "(never below the "
            "exploration "
            "floor).",
            low=0,
            high=100,
            unit="%",
            chart_id=f"alloc-{step}-{segment}-{dimension}",
        )
        charts.append(
            {
                "step": step,
                "segment": segment,
                "dimension": dimension,
                "chart": chart,
                "latest": sorted(latest, key=lambda r: -r.share),
                "at": times[-1],
            }
        )
    return charts


@bp.get("/nps")
@needs(READ_REPORTS)
def nps() -> ResponseReturnValue:
    from campaigns.insight.nps import BUCKETS, summary

    key = request.args.get("journey", "").strip() or None
    if key is not None and not _KEY.fullmatch(key):
        abort(404, "No such journey.")
    bucket = request.args.get("bucket", "week")
    if bucket not in BUCKETS:
        abort(400, f"bucket: expected one of {', '.join(BUCKETS)}.")
    since, until = _day("since"), _day("until")
    if since and until and since > until:
        abort(400, "since: the first day comes after the last (until).")
    with base.sessions()() as session:
        try:
            result = summary(session, key, since=since, until=until, bucket=bucket)
        except LookupError:
            abort(404, f"No journey {key!r}.")
        names = [(k, name) for _, k, name in report_journeys(session)]
    chart = lines(
        [p.key for p in result.over_time],
        [Series("NPS", tuple(p.score for p in result.over_time))],
        title=f"NPS per {bucket}",
        description="Net Promoter Score (% promoters minus % "
        "detractors) of the "
        "answers in each "
        "period.",
        low=-100,
        high=100,
        chart_id="nps-over-time",
        zero=True,
    )
    return base.page(
        "nps.html",
        result=result,
        chart=chart,
        journeys=names,
        journey=key,
        bucket=bucket,
        since=since,
        until=until,
    )
