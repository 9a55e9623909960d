"""``campaigns tasks`` and ``user``: account owners' tasks, and the dashboard's users."""

from __future__ import annotations

import sys

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state

ROLES = ("admin", "marketer", "csm", "viewer")
"""The dashboard's roles (:class:`campaigns.store.enums.UserRole`)."""


@click.group(invoke_without_command=True)
@click.option("--owner", help="Only this owner's tasks (an email address).")
@click.option(
    "--status",
    type=click.Choice(["open", "done", "cancelled", "all"]),
    default="open",
    show_default=True,
)
@click.option(
    "--due",
    type=click.Choice(["overdue", "today", "week"]),
    help="Only open tasks due before now, by the end of today, or by the end of the 7th day"
    " from today (days in TASK_TIME_ZONE).",
)
@click.pass_context
def tasks(ctx: click.Context, owner: str | None, status: str, due: str | None) -> None:
    """Account owners' tasks (open ones, oldest due first); `campaigns tasks done ID` marks
    one done."""
    if ctx.invoked_subcommand is not None:
        return
    from zoneinfo import ZoneInfo

    from campaigns.engine.tasks import list_tasks

    state: State = ctx.ensure_object(State)
    now = common.now()
    zone = state.config.task_time_zone  # the days --due counts, as the inbox's
    with state.sessions()() as session:
        items, total = list_tasks(
            session, now, owner=owner, status=status, due=due, limit=500, zone=zone
        )
        rows = [
            [
                i.task.id,
                i.task.due_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d")
                if i.task.due_at
                else "-",
                ("! " if i.overdue(now) else "") + i.task.title,
                i.task.priority,
                i.account or "-",
                i.task.owner_email or "-",
                i.task.status
                + (f" (escalated to {i.task.escalated_to})" if i.task.escalated_at else ""),
            ]
            for i in items
        ]
    if not rows:
        click.echo(f"no {status if status != 'all' else ''} tasks".replace("  ", " "))
        return
    common.table(["id", "due", "task", "priority", "account", "owner", "status"], rows)
    if total > len(rows):
        click.echo(f"... and {total - len(rows)} more")


@tasks.command("done")
@click.argument("task_id", type=click.IntRange(1, 2**31 - 1))
@click.option(
    "--outcome",
    default="",
    help="What came of it (kept with the task, shown on the contact's timeline).",
)
@click.option("--by", default=None, help="Who did it (an email address).")
@pass_state
def tasks_done(state: State, task_id: int, outcome: str, by: str | None) -> None:
    """Mark task TASK_ID done: the journey waiting on it goes on at its next run."""
    from campaigns.engine.tasks import TaskError, complete_task

    with state.sessions()() as session, session.begin():
        try:
            task = complete_task(session, task_id, common.now(), by=by, outcome=outcome)
        except TaskError as exc:
            common.err(str(exc))
            raise SystemExit(1) from None
        click.echo(f"done: {task.title}")


@click.group()
def user() -> None:
    """Dashboard users: add them, list them, set a password, set how they hear of tasks
    (`campaigns users` is the same group)."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user.command("add")
@click.argument("email")
@click.option("--name", default="", help="The name shown in the dashboard.")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="csm",
    show_default=True,
    help="admin: everything; marketer: journeys (edit, deploy, steer); csm: accounts, contacts"
    " and tasks; viewer: the reports only.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts) instead of asking.",
)
@pass_state
def user_add(state: State, email: str, name: str, role: str, password_stdin: bool) -> None:
    """Add a user who can sign in to the dashboard as EMAIL (the audit log records it)."""
    from campaigns.store import audit
    from campaigns.store.enums import AuditAction
    from campaigns.store.users import add_user, check_password

    password = _read_password(password_stdin)
    check_password(password)  # before opening the database: a typo costs nothing
    with state.sessions()() as session, session.begin():
        added = add_user(session, email, password, common.now(), name=name, role=role)
        audit.record(
            session,
            audit.cli_actor(),
            AuditAction.USER,
            added.email,
            kind=audit.USER,
            detail={"change": "added", "role": added.role},
        )
        click.echo(f"added {added.role} {added.email}")


@user.command("password")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of asking.",
)
@pass_state
def user_password(state: State, email: str, password_stdin: bool) -> None:
    """Set a new password for EMAIL (their dashboard sessions end)."""
    from campaigns.store.users import check_password, set_password

    password = _read_password(password_stdin)
    check_password(password)
    with state.sessions()() as session, session.begin():
        changed = set_password(session, email, password)
        click.echo(f"new password set for {changed.email}; their dashboard sessions have ended")


@user.command("set")
@click.argument("email")
@click.option(
    "--task-mail",
    type=click.Choice(["each", "digest"]),
    help="each: one email per new task; digest: one email a day of new and overdue tasks.",
)
@click.option(
    "--escalate-to",
    metavar="EMAIL",
    help="Where this user's overdue tasks escalate (their manager); '' clears it.",
)
@click.option(
    "--team",
    help="The user's team: its escalation address in journeys/triggers.yaml applies; '' clears.",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    help="The user's role (the audit log records the change; it applies at their next page).",
)
@pass_state
def user_set(
    state: State,
    email: str,
    task_mail: str | None,
    escalate_to: str | None,
    team: str | None,
    role: str | None,
) -> None:
    """Set EMAIL's role, how they hear of their tasks, and where their overdue tasks escalate."""
    from campaigns.store import audit
    from campaigns.store.enums import AuditAction
    from campaigns.store.users import set_role, set_task_mail

    if task_mail is None and escalate_to is None and team is None and role is None:
        common.err("nothing to set: give --role, --task-mail, --escalate-to or --team")
        raise SystemExit(1)
    with state.sessions()() as session, session.begin():
        if role is not None:
            user, before = set_role(session, email, role)
            if before != role:
                audit.record(
                    session,
                    audit.cli_actor(),
                    AuditAction.USER,
                    user.email,
                    kind=audit.USER,
                    detail={"change": "role", "from": before, "to": role},
                )
            click.echo(f"{user.email}: role {role}" + ("" if before != role else " (unchanged)"))
            if task_mail is None and escalate_to is None and team is None:
                return
        changed = set_task_mail(
            session, email, task_mail=task_mail, escalate_to=escalate_to, team=team
        )
        click.echo(
            f"{changed.email}: task mail {changed.task_mail}, escalates to "
            f"{changed.escalate_to or '(team or default)'}, team {changed.team or '-'}"
        )


@user.command("list")
@pass_state
def user_list(state: State) -> None:
    """Every dashboard user: email, name, role, when added and last signed in (UTC)."""
    from campaigns.store.users import list_users

    with state.sessions()() as session:
        users = list_users(session)
    if not users:
        click.echo("no users; add one with `campaigns user add EMAIL --role admin`")
        return
    stamp = "%Y-%m-%d %H:%M"
    rows = [
        [
            u.email,
            u.name,
            u.role,
            u.created_at.strftime(stamp),
            u.last_login_at.strftime(stamp) if u.last_login_at else "never",
            u.task_mail,
            u.escalate_to or "-",
            u.team or "-",
        ]
        for u in users
    ]
    common.table(
        ["email", "name", "role", "added", "last sign-in", "task mail", "escalates to", "team"],
        rows,
    )
