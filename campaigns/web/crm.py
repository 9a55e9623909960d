"""The dashboard's pages for people who talk to customers: the tasks inbox and the contact
timeline (routes on the dashboard blueprint, behind its sign-in and CSRF checks).

``/tasks`` is an account owner's inbox: their open tasks, oldest due first, overdue ones
marked, each with its priority and, once escalated, to whom and when; filtered by owner
(``me`` by default for a CSM, everyone's for an admin), status, due date and escalation;
each open task has a form to mark it done with an outcome note (a ``task_done`` event: the
journey waiting on it goes on) or to cancel it. ``/contacts`` finds a person by
address, name or account; ``/contacts/<id>`` is their timeline (:mod:`campaigns.insight.timeline`),
their open tasks and the journeys they are in. ``/settings`` is the signed-in user's own
task mail: one email per task or a daily digest, and where their overdue tasks escalate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, or_, select

from campaigns.engine.tasks import (
    Due,
    TaskError,
    cancel_task,
    complete_task,
    list_tasks,
    open_counts,
    owners,
)
from campaigns.insight.timeline import LIMIT, contact_timeline
from campaigns.store.enums import TaskMail, TaskStatus, UserRole
from campaigns.store.models import Account, Contact, Enrollment, Journey, Task
from campaigns.store.users import UserError, set_task_mail
from campaigns.web import dashboard_base as base
from campaigns.web.dashboard_base import bp
from campaigns.web.roles import READ_PEOPLE, SIGNED_IN, WORK_TASKS, needs

PAGE = 50
"""Tasks per page of the inbox."""

STATUSES = ("open", "done", "cancelled", "all")


def _now() -> datetime:
    return current_app.extensions["campaigns.clock"].now()


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = request.args.get(name, default)
    if value not in allowed:
        abort(400, f"{name}: expected one of {', '.join(allowed)}.")
    return value


def _text(name: str, limit: int) -> str:
    """A free-text parameter, trimmed, without control characters (PostgreSQL refuses NUL)."""
    return "".join(ch for ch in request.args.get(name, "") if ch >= " " and ch != "\x7f").strip()[
        :limit
    ]


def _page_number() -> int:
    raw = request.args.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 10_000:  # not "²"
        abort(400, "page: expected a whole number from 1.")
    return int(raw)


# ---------------------------------------------------------------------------- tasks


@bp.get("/tasks")
@needs(READ_PEOPLE)
def tasks() -> ResponseReturnValue:
    user = g.user
    status = _choice("status", STATUSES, "open")
    due = _choice("due", ("", *(d.value for d in Due)), "")
    escalated = _choice("escalated", ("", "1"), "") == "1"
    zone = current_app.config["CAMPAIGNS"].task_time_zone
    page = _page_number()
    now = _now()
    with base.sessions()() as session:
        # Mine by default, but a user who owns no open task (a new CSM, a manager) starts on
        # everyone's rather than on an empty page; the page says so.
        chosen = _text("owner", 320)
        none_mine = not chosen and open_counts(session, now, user.email, zone)["open"] == 0
        default_owner = "all" if user.role == UserRole.ADMIN or none_mine else "me"
        owner_choice = chosen or default_owner
        owner = (
            None if owner_choice == "all" else user.email if owner_choice == "me" else owner_choice
        )
        items, total = list_tasks(
            session,
            now,
            owner=owner,
            status=status,
            due=due or None,
            escalated=escalated,
            limit=PAGE,
            offset=(page - 1) * PAGE,
            zone=zone,
        )
        counts = open_counts(session, now, owner, zone)
        everyone = owners(session)
    return base.page(
        "tasks.html",
        items=items,
        total=total,
        counts=counts,
        shown=status,
        due=due,
        escalated=escalated,
        owner=owner_choice,
        none_mine=none_mine and user.role != UserRole.ADMIN,
        zone=zone,
        owners=everyone,
        page=page,
        pages=max(1, -(-total // PAGE)),
        now=now,
    )


def _back_to_tasks() -> ResponseReturnValue:
    """Back where the form was (the inbox or a contact's page), never anywhere else."""
    back = request.form.get("back", "")
    if back.startswith("/contacts/") and back[10:].isascii() and back[10:].isdigit():
        return redirect(back)
    return redirect(url_for("dashboard.tasks"))


def _close(task_id: int, action: Callable[..., Task], note: str, said: str) -> ResponseReturnValue:
    """Mark the task done or cancelled (``action``) with the form's ``note`` field; say so."""
    with base.sessions()() as session, session.begin():
        try:
            title = action(session, task_id, _now(), g.user.email, request.form.get(note, "")).title
        except TaskError as exc:
            flash(str(exc), "error")
            return _back_to_tasks()
    flash(f"{said}: {title}", "ok")
    return _back_to_tasks()


@bp.post("/tasks/<int(max=2147483647):task_id>/complete")
@needs(WORK_TASKS)
def complete(task_id: int) -> ResponseReturnValue:
    return _close(
        task_id,
        lambda s, i, now, by, text: complete_task(s, i, now, by=by, outcome=text),
        "outcome",
        "Done",
    )


@bp.post("/tasks/<int(max=2147483647):task_id>/cancel")
@needs(WORK_TASKS)
def cancel(task_id: int) -> ResponseReturnValue:
    return _close(
        task_id,
        lambda s, i, now, by, text: cancel_task(s, i, now, by=by, reason=text),
        "reason",
        "Cancelled",
    )


# ---------------------------------------------------------------------------- settings


@bp.get("/settings")
@needs(SIGNED_IN)
def settings() -> ResponseReturnValue:
    return base.page("settings.html", me=g.user, modes=[m.value for m in TaskMail])


@bp.post("/settings")
@needs(SIGNED_IN)
def save_settings() -> ResponseReturnValue:
    """The signed-in user's task mail, escalation address and team (CSRF-checked by the
    blueprint's guard); a bad value says why and changes nothing."""
    mode = request.form.get("task_mail", "")
    if mode not in {m.value for m in TaskMail}:
        abort(400, "task_mail: expected each or digest.")
    escalate_to, team = _form_text("escalate_to", 320), _form_text("team", 64)
    try:
        with base.sessions()() as session, session.begin():  # an error rolls it all back
            set_task_mail(session, g.user.email, task_mail=mode, escalate_to=escalate_to, team=team)
    except UserError as exc:
        flash(str(exc), "error")
        return redirect(url_for("dashboard.settings"))
    flash("Saved: " + ("a daily digest" if mode == TaskMail.DIGEST else "one email per task"), "ok")
    return redirect(url_for("dashboard.settings"))


def _form_text(name: str, limit: int) -> str:
    value = request.form.get(name, "")
    if len(value) > limit or any(ch < " " or ch == "\x7f" for ch in value):
        abort(400, f"{name}: at most {limit} characters, on one line.")
    return value.strip()


# ---------------------------------------------------------------------------- contacts


@bp.get("/contacts")
@needs(READ_PEOPLE)
def contacts() -> ResponseReturnValue:
    query = _text("q", 200)
    found: list[Any] = []
    if query:
        pattern = (
            "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        with base.sessions()() as session:
            statement = (
                select(Contact, Account.name)
                .outerjoin(Account, Account.id == Contact.account_id)
                .where(
                    or_(
                        func.lower(Contact.email).like(pattern, escape="\\"),
                        func.lower(Contact.name).like(pattern, escape="\\"),
                        func.lower(Account.name).like(pattern, escape="\\"),
                    )
                )
                .order_by(Contact.email)
                .limit(100)
            )
            found = [
                {
                    "id": c.id,
                    "email": c.email,
                    "name": c.name,
                    "account": account,
                    "subscribed": c.subscribed,
                }
                for c, account in session.execute(statement)
            ]
    return base.page("contacts.html", q=query, found=found)


def _before() -> datetime | None:
    raw = request.args.get("before", "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        abort(400, "before: expected a time like 2026-11-24T09:30:00+00:00.")
    if value.tzinfo is None:
        abort(400, "before: give the time zone, e.g. +00:00.")
    return value


@bp.get("/contacts/<int(max=2147483647):contact_id>")
@needs(READ_PEOPLE)
def contact(contact_id: int) -> ResponseReturnValue:
    before = _before()
    now = _now()
    with base.sessions()() as session:
        person = session.get(Contact, contact_id)
        if person is None:
            abort(404, "No such contact.")
        account = person.account
        entries = contact_timeline(session, contact_id, before=before)
        open_tasks, _ = list_tasks(
            session, now, status=TaskStatus.OPEN, contact_id=contact_id, limit=50
        )
        journeys = session.execute(
            select(
                Journey.key,
                Journey.name,
                Enrollment.state,
                Enrollment.current_step,
                Enrollment.entered_at,
                Enrollment.segment,
            )
            .join(Journey, Journey.id == Enrollment.journey_id)
            .where(
                (Enrollment.contact_id == contact_id)
                | (  # and the account journeys their account is in
                    Enrollment.contact_id.is_(None)
                    & (Enrollment.account_id == (person.account_id or 0))
                )
            )
            .order_by(Enrollment.entered_at.desc())
            .limit(50)
        ).all()
        view = {
            "id": person.id,
            "email": person.email,
            "name": person.name,
            "role": person.role,
            "locale": person.locale,
            "time_zone": person.time_zone,
            "subscribed": person.subscribed,
            "opt_out": list(person.opt_out or []),
            "paused_until": person.paused_until,
            "tags": list(person.tags or []),
        }
        company = None
        if account is not None:
            company = {
                "id": account.id,
                "name": account.name,
                "tier": account.tier,
                "plan": account.plan,
                "arr": account.arr,
                "currency": account.currency,
                "renewal_date": account.renewal_date,
                "owner_email": account.owner_email,
                "health_score": account.health_score,
                "contract_status": account.contract_status,
            }
    older = entries[-1].at.isoformat() if len(entries) >= LIMIT else None
    return base.page(
        "contact.html",
        person=view,
        company=company,
        entries=entries,
        open_tasks=open_tasks,
        journeys=journeys,
        older=older,
        before=before,
        now=now,
    )
