"""``campaigns enrollments``: who is in a journey and where, by step and state, as a table
or as CSV (the dashboard's export: the same columns, recorded in the audit log)."""

from __future__ import annotations

import csv
import sys

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.exceptions import CampaignsError

SHOWN = 500
"""Rows of the table at most (the CSV has them all)."""

STATES = ("now", "all", "active", "waiting", "completed", "goal", "exited", "failed")


@click.command()
@click.argument("journey")
@click.option("--step", help="Only the enrollments at this step (their current step).")
@click.option(
    "--state",
    "wanted",
    type=click.Choice(STATES),
    default="now",
    show_default=True,
    help="now: active or waiting; all: any state.",
)
@click.option("--csv", "as_csv", is_flag=True, help="Every row as CSV on stdout (audited).")
@pass_state
def enrollments(state: State, journey: str, step: str | None, wanted: str, as_csv: bool) -> None:
    """The enrollments of JOURNEY: whom, at which step, in which state, since when and when
    they run next; oldest first."""
    from campaigns.insight import flow
    from campaigns.insight.report import journeys
    from campaigns.store import audit
    from campaigns.store.enums import AuditAction, EnrollmentState

    states = (
        flow.NOW
        if wanted == "now"
        else tuple(s.value for s in EnrollmentState)
        if wanted == "all"
        else (wanted,)
    )
    sessions = state.sessions()
    with sessions() as session:
        found = flow.current(session, journey)
        if found is None:
            raise CampaignsError(
                f"no journey {journey!r}; deployed: "
                + (", ".join(k for _, k, _ in journeys(session)) or "none")
            )
        journey_id, definition = found
        ids = [s.id for s in definition.steps]
        if step is not None and step not in ids:
            raise CampaignsError(f"no step {step!r} in {journey}; its steps: {', '.join(ids)}")
    if as_csv:
        with sessions() as session, session.begin():
            audit.record(
                session,
                audit.cli_actor(),
                AuditAction.EXPORT,
                journey,
                detail={"step": step, "state": wanted, "via": "cli"},
            )
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(flow.CSV_HEADER)
        with sessions() as session:
            for row in flow.each_at_step(session, journey_id, step, states):
                writer.writerow(flow.csv_row(row))
        return
    with sessions() as session:
        rows: list[list[object]] = []
        total = 0
        for row in flow.each_at_step(session, journey_id, step, states):
            total += 1
            if len(rows) < SHOWN:
                rows.append(
                    [
                        row.enrollment_id,
                        row.step or "-",
                        row.email or row.account or "-",
                        row.name or "-",
                        row.state,
                        row.since.strftime("%Y-%m-%d %H:%M"),
                        row.next_run_at.strftime("%Y-%m-%d %H:%M") if row.next_run_at else "-",
                    ]
                )
    if not rows:
        click.echo(f"nobody in {journey}" + (f" at {step}" if step else "") + f" ({wanted})")
        return
    common.table(["id", "step", "who", "name", "state", "since (UTC)", "next run (UTC)"], rows)
    if total > len(rows):
        click.echo(f"... and {total - len(rows):,} more (--csv lists them all)")
