"""``campaigns report``: response rates as a table, JSON or CSV, the same numbers as the
dashboard's and the API's."""

from __future__ import annotations

import sys
from typing import Any

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.exceptions import CampaignsError


@click.command()
@click.argument("journey", required=False)
@click.option(
    "--by",
    type=click.Choice(["step", "segment", "tier", "channel", "variant", "day", "persona"]),
    default="step",
    show_default=True,
    help="How to group the rows (step: the funnel; persona: the emails by the persona they "
    "went to).",
)
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC) to count.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC) to count.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@pass_state
def report(state: State, journey: str | None, by: str, since: Any, until: Any, fmt: str) -> None:
    """Response rates: every journey's headline numbers, or JOURNEY's funnel (or its rows by
    segment, tier, channel, variant, day or persona). Human signals only, with n and a 95% interval;
    machine opens and clicks beside them."""
    import csv
    import json

    from campaigns.insight import report as reports
    from campaigns.insight import stats

    if journey is None:
        given = [
            f"--{name}"
            for name in ("by", "since", "until")
            if click.get_current_context().get_parameter_source(name)
            != click.core.ParameterSource.DEFAULT
        ]
        if given:  # the overview is every journey's totals to date: refuse, don't ignore
            raise common.Refused(
                f"{', '.join(given)} need a JOURNEY (the overview has no breakdown or dates):"
                f" campaigns report JOURNEY {' '.join(given)} ...; `campaigns report` lists them"
            )
    if since and until and since > until:  # an empty window would print an empty report
        raise common.Refused(
            f"--since {since:%Y-%m-%d} comes after --until {until:%Y-%m-%d}; nothing is"
            " counted between them"
        )
    sessions = state.sessions()
    with sessions() as session, session.begin():
        stats.rollup(session, common.now())  # count what happened since the last scheduler pass
    with sessions() as session:
        if journey is None:
            document: Any = {"journeys": reports.overview(session)}
            rows = [reports.Row(item["journey"], item["counts"]) for item in document["journeys"]]
            overall = reports.global_control(session)
            if overall is not None:
                document["global_control"] = overall
        else:
            try:
                result = reports.journey_report(
                    session,
                    journey,
                    by=by,
                    since=since.date() if since else None,
                    until=until.date() if until else None,
                )
            except LookupError:
                raise CampaignsError(
                    f"no journey {journey!r}; deployed: "
                    + (", ".join(k for _, k, _ in reports.journeys(session)) or "none")
                ) from None
            document = result.as_dict()
            rows = [*result.rows, result.totals]
    if fmt == "json":
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    headers = [
        by if journey else "journey",
        "sent",
        "held now",
        "opened",
        "open rate",
        "clicked",
        "click rate",
        "answered",
        "answer rate",
        "unsub",
        "machine opens",
        "machine clicks",
        "tasks done",
    ]
    table = [
        [
            row.key,
            row.count("sent"),
            row.count("held"),
            row.count("opened"),
            common.pct(row.rate("open_rate")),
            row.count("clicked"),
            common.pct(row.rate("click_rate")),
            row.count("answered"),
            common.pct(row.rate("answer_rate")),
            row.count("unsubscribed"),
            row.count("opened_machine"),
            row.count("clicked_machine"),
            f"{row.count('task_done')}/{row.count('task_created')}",
        ]
        for row in rows
    ]
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(
            [
                "group",
                *[f"{m}" for m in reports.COLUMNS],
                "held",
                *[name for name, _, _ in reports.RATES],
            ]
        )
        for row in rows:
            writer.writerow(
                [
                    row.key,
                    *[row.count(m) for m in reports.COLUMNS],
                    row.count("held"),
                    *[
                        f"{row.rate(name).value:.4f}" if row.rate(name).n else ""
                        for name, _, _ in reports.RATES
                    ],
                ]
            )
        return
    if journey:
        click.echo(
            f"{document['name']} ({document['journey']}):"
            " rates of human signals, with 95% intervals"
        )
    common.table(headers, table)
    if journey:
        counts = document["counts"]
        click.echo(
            f"entered: {counts['entered']:,} {counts['entered_unit']};"
            f" email reached {counts['recipients']:,} contacts"
            + (
                " (the steps address each account's contacts)"
                if document["unit"] == "account"
                else ""
            )
        )
        held = document["held"]
        if held["total"]:
            click.echo(f"held now: {held['total']:,} ({_reasons(held['by_reason'])})")
            for step in held["steps"]:
                click.echo(f"  {step['step']}: {step['held']:,} ({_reasons(step['by_reason'])})")
        goal = document["goal"]
        if not goal["defined"]:
            click.echo("goal: none (add goal: to the journey to measure one)")
        elif goal["rate"]["n"]:
            rate = goal["rate"]
            unit = document["counts"]["entered_unit"]
            line = f"goal: {rate['hits']} of {rate['n']} {unit} enrolled ({common.pct_dict(rate)})"
            if "lift" in goal:
                holdout = common.pct_dict(goal["holdout"])
                line += f"; holdout {holdout}; lift {_points(goal['lift'])}"
            if "control_lift" in goal:
                line += (
                    f"; global control {common.pct_dict(goal['control'])};"
                    f" lift {_points(goal['control_lift'])}"
                )
            click.echo(line)
    elif "global_control" in document:
        overall = document["global_control"]
        click.echo(
            f"all journeys with a goal: treated {_rate_line(overall['treated'])},"
            f" global control {_rate_line(overall['control'])};"
            f" lift {_points(overall['lift'])}"
        )


def _reasons(counts: dict[str, int]) -> str:
    """``sending window 2, frequency cap 1``: why messages are held, most first."""
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items(), key=lambda i: -i[1]))


def _points(lift: dict[str, Any]) -> str:
    """A lift in points with its 95% interval: ``+10.2 points [+4.1, +16.0]``."""
    return (
        f"{lift['difference'] * 100:+.1f} points"
        f" [{lift['low'] * 100:+.1f}, {lift['high'] * 100:+.1f}]"
    )


def _rate_line(rate: dict[str, Any]) -> str:
    return f"{rate['hits']} of {rate['n']} reached the goal ({common.pct_dict(rate)})"
