"""The dashboard's template preview and test send (routes on the dashboard blueprint).

``/preview`` picks a deployed journey, one of its email steps (and variant) and a contact by
address, and shows the subject, the HTML (in a sandboxed frame served by ``/preview/email``,
whose Content-Security-Policy forbids scripts, forms and plugins) and the text part, as
:mod:`campaigns.engine.preview` renders them. The form below sends that email as a test to the
signed-in user (or another address) through the configured transport.
"""

from __future__ import annotations

from typing import Any

from flask import Response, abort, current_app, flash, g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from campaigns.content.mime import InvalidAddress
from campaigns.content.project import Project
from campaigns.engine.preview import Preview, PreviewError, email_steps, render_preview, send_test
from campaigns.exceptions import JourneyError
from campaigns.journeys.segments import SegmentSet
from campaigns.services import Services
from campaigns.store.enums import JourneyStatus
from campaigns.store.models import Contact, JourneyVersion
from campaigns.store.models import Journey as JourneyRow
from campaigns.tracking.events import contacts_by_email
from campaigns.web import dashboard_base as base
from campaigns.web.dashboard_base import CSP, bp
from campaigns.web.roles import READ_PEOPLE, STEER, needs

PAGE_CSP = CSP.replace("default-src 'none'", "default-src 'none'; frame-src 'self'")
EMAIL_CSP = (
    "default-src 'none'; img-src 'self' data: https:; style-src 'unsafe-inline'; "
    "font-src https: data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'; sandbox "
    "allow-popups allow-popups-to-escape-sandbox"
)


def _services() -> Services:
    """The app's services (:func:`campaigns.services.build`): renderer, transport, links and
    the parsed journeys, the same the engine sends with."""
    services: Services = current_app.extensions["campaigns.services"]
    return services


def _choices(session: Any) -> list[dict[str, Any]]:
    """Every journey with a deployed version, with its email steps."""
    found = []
    query = (
        select(
            JourneyRow.key,
            JourneyRow.name,
            JourneyRow.status,
            JourneyVersion.source_text,
            JourneyVersion.source_path,
        )
        .join(JourneyVersion, JourneyVersion.id == JourneyRow.current_version_id)
        .order_by(JourneyRow.key)
    )
    for key, name, status, source, path in session.execute(query):
        journey = _services().journeys.parse_or_none(source, path)
        if journey is None:
            continue
        found.append(
            {
                "key": key,
                "name": name,
                "status": status,
                "journey": journey,
                "steps": email_steps(journey),
            }
        )
    return found


def _contact(session: Any, wanted: str) -> Contact | None:
    address = wanted.strip().lower()
    return contacts_by_email(session, [address]).get(address) if address else None


def _build(session: Any, args: Any) -> tuple[list[dict[str, Any]], Preview | None, str | None]:
    """The journeys to choose from, the preview asked for (if any) and the problem (if any)."""
    choices = _choices(session)
    key, step, variant, address = (
        args.get("journey", ""),
        args.get("step", ""),
        args.get("variant", "") or None,
        args.get("contact", "")[:320],
    )
    if not (key and step and address):
        return choices, None, None
    chosen = next((c for c in choices if c["key"] == key), None)
    if chosen is None:
        return choices, None, f"No deployed journey {key!r}."
    person = _contact(session, address)
    if person is None:
        return choices, None, f"No contact with the address {address!r}."
    services = _services()
    try:
        preview = render_preview(
            session,
            services.renderer,
            chosen["journey"],
            step,
            person,
            current_app.extensions["campaigns.clock"].now(),
            variant=variant,
            links=services.links,
            segments=_segments(services.project),
        )
    except PreviewError as exc:
        return choices, None, str(exc)
    return choices, preview, None


@bp.get("/preview")
@needs(READ_PEOPLE)
def preview() -> ResponseReturnValue:
    with base.sessions()() as session:
        choices, shown, problem = _build(session, request.args)
        sample = session.scalars(select(Contact.email).order_by(Contact.id).limit(20)).all()
    args = {k: request.args.get(k, "") for k in ("journey", "step", "variant", "contact")}
    response = base.page(
        "preview.html",
        status=400 if problem else 200,
        choices=choices,
        preview=shown,
        problem=problem,
        args=args,
        sample=sample,
        # The step list is the chosen journey's (the first one until one is chosen): the
        # page has no script, so choosing a journey reloads it.
        selected=next((c for c in choices if c["key"] == args["journey"]), None)
        or (choices[0] if choices else None),
        active=[c["key"] for c in choices if c["status"] == JourneyStatus.LIVE],
    )
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


@bp.get("/preview/email")
@needs(READ_PEOPLE)
def preview_email() -> ResponseReturnValue:
    """The previewed HTML alone, for the sandboxed frame."""
    with base.sessions()() as session:
        _, shown, problem = _build(session, request.args)
    if shown is None:
        abort(400 if problem else 404, problem or "Choose a journey, a step and a contact.")
    response = Response(shown.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = EMAIL_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.post("/preview/send")
@needs(STEER)
def preview_send() -> ResponseReturnValue:
    to = (request.form.get("to", "") or g.user.email).strip()[:320]
    fields: dict[str, Any] = {
        k: request.form.get(k, "") for k in ("journey", "step", "variant", "contact")
    }
    back = url_for("dashboard.preview", **fields)
    with base.sessions()() as session:
        _, shown, problem = _build(session, request.form)
    if shown is None:
        flash(problem or "Choose a journey, a step and a contact first.", "error")
        return redirect(back)
    services = _services()
    try:
        send_test(
            services.renderer,
            services.transport,
            shown,
            to,
            current_app.extensions["campaigns.clock"].now(),
        )
    except InvalidAddress as exc:
        flash(f"Not sent: {exc}", "error")
        return redirect(back)
    except Exception as exc:  # the relay refused or is down: say so, keep the form
        current_app.logger.warning("test send to %s failed: %s", to, exc)
        flash(f"Not sent: the mail relay said {str(exc)[:300]}", "error")
        return redirect(back)
    flash(f"Test sent to {to}: “{shown.subject}”.", "ok")
    return redirect(back)


def _segments(project: Project) -> SegmentSet | None:
    """The segments file for the persona of the previewed contact; None when it does not
    load (the preview shows the step's own content, the journeys page says what is wrong)."""
    try:
        return project.segments()
    except JourneyError:
        return None
