"""``campaigns account EXTERNAL_ID``: the account page in the terminal (``--json``: the API's
document), for a CSM who lives in a shell or a script that wants one account's story."""

from __future__ import annotations

import json

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.content.locale import format_date, format_days, format_money
from campaigns.engine.personas import personas_for
from campaigns.exceptions import CampaignsError
from campaigns.insight.accounts import AccountPage, account_page, find_account, scorecard_view

TIMELINE = 20
"""Timeline entries printed (``--json`` gives the page's 100)."""


@click.command()
@click.argument("external_id")
@click.option("--json", "as_json", is_flag=True, help="Print the page as the API's JSON.")
@click.option(
    "--locale", default="en", show_default=True, help="Write amounts and dates in this language."
)
@pass_state
def account(state: State, external_id: str, as_json: bool, locale: str) -> None:
    """One account's page: facts, health and what changed, contacts, journeys, tasks, NPS
    answers and the latest touches."""
    now = common.now()
    with state.sessions()() as session:
        found = find_account(session, external_id=external_id)
        if found is None:
            raise CampaignsError(f"no account with external_id {external_id!r}")
        project = state.project
        segset = project.segments()
        marks = scorecard_view(project.scorecards(segset))
        view = account_page(
            session,
            found,
            now,
            locale=locale,
            personas=(lambda people: personas_for(session, segset, people, now))
            if segset.personas
            else None,
            **marks,
        )
    if as_json:
        click.echo(json.dumps(view.to_json(), ensure_ascii=False, indent=1))
        return
    _print(view, locale)


def _print(view: AccountPage, locale: str) -> None:
    f = view.facts
    click.echo(f"{f.name} ({f.external_id})")
    arr = format_money(f.arr, f.currency, locale) if f.arr is not None else "-"
    renewal = "-"
    if f.renewal_date is not None:
        renewal = format_date(f.renewal_date, locale)
        if f.days_to_renewal is not None and f.days_to_renewal >= 0:
            renewal += f", in {format_days(f.days_to_renewal, locale)}"
    common.table(
        ["", ""],
        [
            ["ARR", arr],
            ["tier", f.tier or "-"],
            ["plan", f.plan or "-"],
            ["owner", f.owner_email or "-"],
            ["renewal", renewal],
            [
                "health",
                "-"
                if f.health_score is None
                else f"{f.health_score} {f.health_band or ''}".strip()
                + (f" ({f.health_change_30d:+.1f} in 30 days)" if f.health_change_30d else ""),
            ],
        ],
    )
    if view.history:
        scores = [h.score for h in view.history if h.score is not None]
        if scores:
            click.echo(
                f"\nHealth over {len(view.history)} days: {_spark(scores)} "
                f"(from {scores[0]:.0f} to {scores[-1]:.0f})"
            )
    if view.changes:
        click.echo("What changed in 30 days:")
        for c in view.changes:
            click.echo(f"  {c.label}: {c.delta:+.1f} points")
    if view.contacts:
        click.echo("\nContacts:")
        common.table(
            ["name", "role", "title", "persona", "sent", "opened", "clicked", "last touch"],
            [
                [
                    c.name or c.email,
                    c.role or "-",
                    c.title or "-",
                    c.persona or "-",
                    c.sent,
                    c.opened,
                    c.clicked,
                    c.last_touch.strftime("%Y-%m-%d") if c.last_touch else "-",
                ]
                for c in view.contacts
            ],
        )
    if view.journeys:
        click.echo("\nJourneys:")
        common.table(
            ["journey", "who", "state", "step", "entered"],
            [
                [
                    j.key,
                    j.contact or "(account)",
                    j.state,
                    j.step or "-",
                    j.entered_at.strftime("%Y-%m-%d"),
                ]
                for j in view.journeys
            ],
        )
    tasks = view.open_tasks + view.done_tasks
    if tasks:
        click.echo("\nTasks:")
        common.table(
            ["id", "due", "task", "priority", "status"],
            [
                [
                    t.id,
                    t.due_at.strftime("%Y-%m-%d") if t.due_at else "-",
                    t.title + (f" (escalated to {t.escalated_to})" if t.escalated_at else ""),
                    t.priority,
                    t.status,
                ]
                for t in tasks
            ],
        )
    if view.answers:
        click.echo("\nNPS answers:")
        for a in view.answers:
            group = f" {a.nps}" if a.nps else ""
            click.echo(f"  {a.at:%Y-%m-%d}  {a.contact or '-'}: {a.value}{group}")
    if view.timeline:
        click.echo("\nLatest touches (UTC):")
        for e in view.timeline[:TIMELINE]:
            who = f"{e.who}: " if e.who else ""
            machine = " [machine]" if e.machine else ""
            click.echo(f"  {e.at:%Y-%m-%d %H:%M}  {who}{e.title}{machine}")


def _spark(values: list[float]) -> str:
    """The scores as a line of block characters, 0 to 100, at most 45 of them."""
    blocks = "▁▂▃▄▅▆▇█"
    step = max(1, len(values) // 45)
    return "".join(
        blocks[min(int(max(v, 0) / 100 * len(blocks)), len(blocks) - 1)] for v in values[::step]
    )
