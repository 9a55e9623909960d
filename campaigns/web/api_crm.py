"""The API's routes for the people side (on the API blueprint, behind its API keys): account
owners' tasks (list, mark done: the same as the dashboard's inbox, so a CRM or a chat bot can
close a task and let the journey go on), a contact's timeline, and the NPS summary."""

from __future__ import annotations

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from campaigns.engine.tasks import Due, TaskError, complete_task, list_tasks
from campaigns.insight.nps import BUCKETS, summary
from campaigns.insight.timeline import LIMIT, contact_timeline
from campaigns.web import api_base as base
from campaigns.web import api_input
from campaigns.web.api_base import bp
from campaigns.web.api_input import ApiError
from campaigns.web.roles import READ_PEOPLE, READ_REPORTS, WORK_TASKS, needs

MAX_LIMIT = 500


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if (
        not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high
    ):  # "²".isdigit(), but int("²") fails
        raise ApiError(400, f"{name}: a whole number from {low} to {high}")
    return int(raw)


@bp.get("/tasks")
@needs(READ_PEOPLE)
def tasks() -> ResponseReturnValue:
    """Tasks by owner, status and due date; open ones oldest due first."""
    base.only_params({"owner", "status", "due", "limit", "offset"})
    status = request.args.get("status", "open")
    if status not in ("open", "done", "cancelled", "all"):
        raise ApiError(400, "status: one of open, done, cancelled, all")
    due = request.args.get(
        "due"
    )  # an empty "due=" is none of the values either: a 400, as the document's enum says
    if due is not None and due not in {d.value for d in Due}:
        raise ApiError(400, "due: one of overdue, today, week")
    owner = request.args.get("owner")
    if owner is not None:
        owner = api_input.path_email(owner)
    limit, offset = _int("limit", 100, 1, MAX_LIMIT), _int("offset", 0, 0, 10**9)
    with base.sessions()() as session:
        items, total = list_tasks(
            session, base.now(), owner=owner, status=status, due=due, limit=limit, offset=offset
        )
        return jsonify(total=total, tasks=[item.to_json() for item in items])


@bp.post("/tasks/<int(max=2147483647):task_id>/complete")
@needs(WORK_TASKS)
def complete(task_id: int) -> ResponseReturnValue:
    """Mark an open task done with an optional ``outcome`` (and who did it, ``by``): a
    ``task_done`` event, and the journey waiting on it goes on."""
    data = api_input.body(empty_ok=True)
    data = {} if data is api_input._EMPTY else data
    if not isinstance(data, dict) or set(data) - {"outcome", "by"}:
        raise ApiError(400, "body: an object with optional outcome and by")
    outcome, by = data.get("outcome"), data.get("by")
    if outcome is not None and (not isinstance(outcome, str) or len(outcome) > 4_000):
        raise ApiError(400, "outcome: a string of at most 4000 characters")
    if by is not None:
        if not isinstance(by, str):
            raise ApiError(400, "by: an email address")
        by = api_input.path_email(by)
    with base.sessions()() as session, session.begin():
        from campaigns.store.models import Task

        try:
            task = complete_task(session, task_id, base.now(), by=by, outcome=outcome)
        except TaskError as exc:
            exists = session.get(Task, task_id) is not None
            raise ApiError(409 if exists else 404, str(exc)) from None
        result = {
            "id": task.id,
            "status": task.status,
            "completed_at": task.completed_at.isoformat() if task.completed_at else None,
            "outcome": task.outcome,
        }
    return jsonify(result)


@bp.get("/contacts/<email>/timeline")
@needs(READ_PEOPLE)
def timeline(email: str) -> ResponseReturnValue:
    """The contact's timeline, newest first (``before`` an ISO time pages back)."""
    base.only_params({"before", "limit"})
    address = api_input.path_email(email)
    before = None
    if "before" in request.args:
        try:
            before = api_input.parse_time(request.args["before"])
        except ValueError as exc:
            raise ApiError(400, f"before: {exc}") from None
        except OverflowError:
            raise ApiError(400, "before: a time between the years 1 and 9999") from None
    limit = _int("limit", LIMIT, 1, MAX_LIMIT)
    with base.sessions()() as session:
        contact = base.contact_or_404(session, address)
        entries = contact_timeline(session, contact.id, before=before, limit=limit)
        return jsonify(email=contact.email, entries=[e.to_json() for e in entries])


@bp.get("/nps")
@needs(READ_REPORTS)
def nps() -> ResponseReturnValue:
    """NPS in all, per period, per segment and per journey (``journey`` narrows it to one)."""
    base.only_params({"journey", "bucket", "since", "until"})
    bucket = request.args.get("bucket", "week")
    if bucket not in BUCKETS:
        raise ApiError(400, f"bucket: one of {', '.join(BUCKETS)}")
    since, until = base.day_param("since"), base.day_param("until")
    with base.sessions()() as session:
        try:
            result = summary(
                session,
                request.args.get("journey") or None,
                since=since,
                until=until,
                bucket=bucket,
            )
        except LookupError:
            raise ApiError(404, f"no journey {request.args.get('journey')!r}") from None
        return jsonify(result.as_dict())
