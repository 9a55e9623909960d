"""``campaigns health``: work out every account's health score now (the scheduler does it on
its first pass of each day), for a day, and print the bands per tier."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from typing import Any

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.exceptions import CampaignsError

BANDS = ("red", "yellow", "green")


@click.command()
@click.option(
    "--day",
    "on",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Score this day (UTC; default: today): windows end on it, a rerun replaces its scores.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@pass_state
def health(state: State, on: Any, fmt: str) -> None:
    """Compute every account's health score from journeys/scorecards.yaml, store the day's
    scores, record band changes, and print the accounts in each band per tier."""
    from campaigns.engine import health as scoring

    segset = state.project.segments()
    cards = state.project.scorecards(segset)
    if cards is None:
        raise CampaignsError(
            f"{state.config.scorecards_file}: no scorecards file (see docs/health.md)"
        )
    now = common.now()
    day = on.date() if on else now.date()
    if day < now.date():  # a past day is scored as of its end
        now = datetime.combine(day, time(23, 59, 59), UTC)
    with state.sessions()() as session, session.begin():
        run = scoring.compute(session, cards, segset, day, now)
    tiers = [t.name for t in segset.tiers]
    if fmt == "json":
        click.echo(json.dumps(as_dict(run, tiers), ensure_ascii=False, indent=2))
        return
    show(run, tiers)


def rows(run: Any, tiers: list[str]) -> list[list[Any]]:
    """One row per tier (and one for accounts without a tier): accounts per band."""
    names = [*tiers, *sorted({t for t, _ in run.bands if t is not None and t not in tiers})]
    if any(t is None for t, _ in run.bands):
        names.append(None)
    table = []
    for tier in names:
        counts = [run.bands.get((tier, band), 0) for band in (*BANDS, None)]
        if sum(counts):
            table.append([tier or "(no tier)", *counts, sum(counts)])
    return table


def show(run: Any, tiers: list[str]) -> None:
    click.echo(f"Health on {run.day.isoformat()}: {run.scored} accounts scored")
    common.table(["tier", "red", "yellow", "green", "no data", "accounts"], rows(run, tiers))
    if run.previous_day is None:
        click.echo("band changes: none (no earlier day scored)")
    else:
        click.echo(
            f"band changes since {run.previous_day.isoformat()}: {run.changed}"
            f" ({run.dropped} worse); "
            + ", ".join(f"{b} {run.events.get('health_' + b, 0)}" for b in BANDS)
        )


def as_dict(run: Any, tiers: list[str]) -> dict[str, Any]:
    return {
        "day": run.day.isoformat(),
        "scored": run.scored,
        "tiers": [
            dict(zip(["tier", *BANDS, "no_data", "accounts"], row, strict=True))
            for row in rows(run, tiers)
        ],
        "previous_day": run.previous_day.isoformat() if run.previous_day else None,
        "events": dict(sorted(run.events.items())),
    }
