"""``campaigns validate``, ``deploy`` and ``simulate``: the journey files, checked, loaded
as versions, and dry-run (the dry run itself is :mod:`campaigns.cli.simulate`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.engine.deploy import deploy as deploy_journey
from campaigns.exceptions import CampaignsError
from campaigns.journeys.parse import read_source


@click.command()
@click.argument("paths", nargs=-1, type=common.PathArg())
@pass_state
def validate(state: State, paths: tuple[Path, ...]) -> None:
    """Check journey files (default: every file in journeys/) and the segments and
    templates they name. Prints each problem as path:line:col; exits 1 if any."""
    for path in paths:
        if not path.exists():
            raise CampaignsError(f"{path}: no such file or folder")
    checked = state.project.check(paths)
    if checked.problems:
        common.print_problems(checked.problems)
        common.err(
            f"{len(checked.problems)} problem{'s' if len(checked.problems) != 1 else ''} found"
        )
        sys.exit(common.EXIT_PROBLEMS)
    names = ", ".join(j.key for j, _ in checked.journeys) or "no journeys"
    click.echo(
        f"ok: {len(checked.journeys)} journey{'s' if len(checked.journeys) != 1 else ''}"
        f" valid ({names})"
    )


@click.command()
@click.argument("paths", nargs=-1, type=common.PathArg())
@pass_state
def deploy(state: State, paths: tuple[Path, ...]) -> None:
    """Validate journeys and load them as new versions (unchanged files are left as they are)."""
    checked = state.project.check(paths)
    if checked.problems:
        common.print_problems(checked.problems)
        common.err("nothing deployed: fix the problems above first")
        sys.exit(common.EXIT_PROBLEMS)
    with state.sessions()() as session, session.begin():
        for journey, path in checked.journeys:
            result = deploy_journey(session, journey, read_source(path), str(path))
            what = "new version" if result.created else "unchanged"
            click.echo(f"{result.key}: version {result.version} ({what})")


@click.command()
@click.argument("journey")
@click.option(
    "--days",
    default=14,
    show_default=True,
    type=click.IntRange(1, 400),
    help="How many days to simulate.",
)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    help="When to start (UTC; default: now).",
)
@pass_state
def simulate(state: State, journey: str, days: int, start: Any) -> None:
    """Dry-run JOURNEY (a deployed journey's id, or a journey file) day by day: who would
    get which step, with segment sizes, sending windows and the frequency cap applied.
    Nothing is sent and nothing is written."""
    from datetime import UTC, datetime

    from campaigns.cli.simulate import simulate as run_simulation
    from campaigns.services import check_schema

    began = start.replace(tzinfo=UTC) if start else datetime.now(UTC)
    # The copy is made from the real database, which must be at the newest schema; nothing
    # else is opened here (no Redis client, no transport): the dry run builds its own.
    check_schema(state.config)
    report = run_simulation(state.config, journey, days, began)
    click.echo(
        f"Simulating {report.journey} for {days} day{'s' if days != 1 else ''}"
        f" from {began:%Y-%m-%d %H:%M} UTC (nothing is sent or written)"
    )
    click.echo(
        "segments: "
        + ", ".join(f"{name} {size} contacts" for name, size in report.segments.items())
    )
    rows = []
    for day in report.days:
        for label, n in sorted(day.steps.items()):
            who = day.who.get(label, [])
            sample = ", ".join(who[:3]) + (f", +{len(who) - 3}" if len(who) > 3 else "")
            rows.append([day.number, day.date.isoformat(), label, n, sample])
        if day.deferred:
            rows.append(
                [
                    day.number,
                    day.date.isoformat(),
                    "(held back: window or frequency cap)",
                    day.deferred,
                    "",
                ]
            )
    if rows:
        common.table(["day", "date", "step", "contacts", "who"], rows)
    else:
        click.echo("nobody would get anything in this period")
