"""The dashboard's template preview and test send (routes on the dashboard blueprint).

``/preview`` picks a deployed journey, one of its email steps (and variant) and a contact by
address, and shows the subject, the HTML (in a sandboxed frame served by ``/preview/email``,
whose Content-Security-Policy forbids scripts, forms and plugins) and the text part, as
:mod:`campaigns.engine.preview` renders them. The form below sends that email as a test to the
signed-in user (or another address) through the configured transport.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from flask import Response, abort, current_app, flash, g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from campaigns.content.mime import InvalidAddress
from campaigns.engine.preview import Preview, PreviewError, email_steps, render_preview, send_test
from campaigns.exceptions import JourneyError
from campaigns.journeys.dsl import parse_journey
from campaigns.journeys.model import Journey
from campaigns.store.models import Contact, JourneyStatus, JourneyVersion
from campaigns.store.models import Journey as JourneyRow
from campaigns.tracking.events import contacts_by_email
from campaigns.web.dashboard import CSP, _page, _sessions, bp

PAGE_CSP = CSP.replace("default-src 'none'", "default-src 'none'; frame-src 'self'")
EMAIL_CSP = "default-src 'none'; img-src 'self' data: https:; style-src 'unsafe-inline'; font-src https: data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'; sandbox allow-popups allow-popups-to-escape-sandbox"


def _services() -> dict[str, Any]:
    """The renderer, the transport and the project's links, built once per app."""
    services = current_app.extensions.get("campaigns.preview")
    if services is None:
        from campaigns.channels.email import transport_from_url
        from campaigns.content.project import Project
        from campaigns.content.render import Renderer
        from campaigns.services import sender
        from campaigns.tracking.tokens import Tokens

        cfg = current_app.config["CAMPAIGNS"]
        project = Project(cfg)
        origin = sender(cfg)
        renderer = Renderer(
            project.templates,
            Tokens(cfg.secret_key, cfg.base_url),
            origin,
            domain=origin.address.rsplit("@", 1)[-1],
        )
        services = {
            "renderer": renderer,
            "transport": current_app.config.get("TRANSPORT") or transport_from_url(cfg.mail_url),
            "links": project.links(),
        }
        current_app.extensions["campaigns.preview"] = services
    return services


@lru_cache(maxsize=128)
def _parsed(source: str, path: str) -> Journey | None:
    """A stored version's journey, parsed once per process (None if it no longer parses)."""
    try:
        return parse_journey(source, path)
    except JourneyError:
        return None


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
        journey = _parsed(source, path)
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
            services["renderer"],
            chosen["journey"],
            step,
            person,
            current_app.extensions["campaigns.clock"].now(),
            variant=variant,
            links=services["links"],
        )
    except PreviewError as exc:
        return choices, None, str(exc)
    return choices, preview, None


@bp.get("/preview")
def preview() -> ResponseReturnValue:
    with _sessions()() as session:
        choices, shown, problem = _build(session, request.args)
        sample = session.scalars(select(Contact.email).order_by(Contact.id).limit(20)).all()
    args = {k: request.args.get(k, "") for k in ("journey", "step", "variant", "contact")}
    response = _page(
        "preview.html",
        status=400 if problem else 200,
        choices=choices,
        preview=shown,
        problem=problem,
        args=args,
        sample=sample,
        active=[c["key"] for c in choices if c["status"] == JourneyStatus.ACTIVE],
    )
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


@bp.get("/preview/email")
def preview_email() -> ResponseReturnValue:
    """The previewed HTML alone, for the sandboxed frame."""
    with _sessions()() as session:
        _, shown, problem = _build(session, request.args)
    if shown is None:
        abort(400 if problem else 404, problem or "Choose a journey, a step and a contact.")
    response = Response(shown.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = EMAIL_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.post("/preview/send")
def preview_send() -> ResponseReturnValue:
    to = (request.form.get("to", "") or g.user.email).strip()[:320]
    fields: dict[str, Any] = {
        k: request.form.get(k, "") for k in ("journey", "step", "variant", "contact")
    }
    back = url_for("dashboard.preview", **fields)
    with _sessions()() as session:
        _, shown, problem = _build(session, request.form)
    if shown is None:
        flash(problem or "Choose a journey, a step and a contact first.", "error")
        return redirect(back)
    services = _services()
    try:
        send_test(
            services["renderer"],
            services["transport"],
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
