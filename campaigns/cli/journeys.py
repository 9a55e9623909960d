"""``campaigns validate``, ``deploy`` and ``simulate``: the journey files, checked, loaded
as versions, and dry-run (the dry run itself is :mod:`campaigns.cli.simulate`); ``campaigns
journey pause|resume|archive|live|remove``, a deployed journey's lifecycle
(:mod:`campaigns.engine.lifecycle`), and ``campaigns audit``, the log of who changed what."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.engine import lifecycle
from campaigns.engine.deploy import deploy as deploy_journey
from campaigns.exceptions import CampaignsError
from campaigns.journeys.parse import read_source
from campaigns.store import audit as audit_log


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
@click.option(
    "--draft",
    is_flag=True,
    help="Store them as drafts: they run nothing until `campaigns journey live KEY`.",
)
@pass_state
def deploy(state: State, paths: tuple[Path, ...], draft: bool) -> None:
    """Validate journeys and load them as new versions (unchanged files are left as they are).
    Each deploy is recorded in the audit log."""
    checked = state.project.check(paths)
    if checked.problems:
        common.print_problems(checked.problems)
        common.err("nothing deployed: fix the problems above first")
        sys.exit(common.EXIT_PROBLEMS)
    actor, now = audit_log.cli_actor(), state.services().clock.now()
    with state.sessions()() as session, session.begin():
        for journey, path in checked.journeys:
            result = deploy_journey(session, journey, read_source(path), str(path))
            lifecycle.deployed(
                session, result.key, actor, now, result.version, result.created, str(path)
            )
            what = "new version" if result.created else "unchanged"
            if draft:
                lifecycle.stored_as_draft(session, result.key, actor, now, result.version)
                what += ", draft"
            click.echo(f"{result.key}: version {result.version} ({what})")


# ---------------------------------------------------------------------------- lifecycle


@click.group()
def journey() -> None:
    """A deployed journey's lifecycle: pause, resume, archive, make a draft live, take one
    contact or account out. Each change is recorded in the audit log (`campaigns audit`)."""


def _change(
    state: State, key: str, move: Callable[..., lifecycle.Change], done: str
) -> lifecycle.Change:
    actor, now = audit_log.cli_actor(), state.services().clock.now()
    with state.sessions()() as session, session.begin():
        change = move(session, key.strip(), actor, now)
    click.echo(f"{change.key}: {done} ({change.before} -> {change.after})")
    return change


@journey.command("pause")
@click.argument("key")
@pass_state
def journey_pause(state: State, key: str) -> None:
    """Hold every step of KEY: nobody enters and nothing is sent, not even the messages
    already written; waits keep their place."""
    _change(state, key, lifecycle.pause, "paused")


@journey.command("resume")
@click.argument("key")
@pass_state
def journey_resume(state: State, key: str) -> None:
    """Let a paused KEY go on where each enrollment was; what became due goes through the
    frequency cap, sending windows and rate limits as ever."""
    _change(state, key, lifecycle.resume, "resumed")


@journey.command("archive")
@click.argument("key")
@pass_state
def journey_archive(state: State, key: str) -> None:
    """Be done with KEY: nobody enters, its running enrollments end (exited: archived)."""
    change = _change(state, key, lifecycle.archive, "archived")
    click.echo(
        f"{change.ended} enrollment{'s' if change.ended != 1 else ''} ended,"
        f" {change.withdrawn} unsent message{'s' if change.withdrawn != 1 else ''} withdrawn"
    )


@journey.command("live")
@click.argument("key")
@pass_state
def journey_live(state: State, key: str) -> None:
    """Make the draft KEY live: it enrols and sends from the next tick."""
    _change(state, key, lifecycle.go_live, "live")


@journey.command("remove")
@click.argument("key")
@click.option("--contact", "email", metavar="EMAIL", help="The contact to take out.")
@click.option("--account", metavar="EXTERNAL_ID", help="The account to take out.")
@pass_state
def journey_remove(state: State, key: str, email: str | None, account: str | None) -> None:
    """Take one contact (--contact EMAIL) or one account (--account EXTERNAL_ID) out of KEY:
    its enrollment ends and its unsent messages are withdrawn."""
    if (email is None) == (account is None):
        raise CampaignsError("journey remove: give --contact EMAIL or --account EXTERNAL_ID")
    actor, now = audit_log.cli_actor(), state.services().clock.now()
    with state.sessions()() as session, session.begin():
        removal = lifecycle.remove(session, key.strip(), actor, now, contact=email, account=account)
    click.echo(
        f"{removal.key}: {removal.who} taken out ({removal.ended} enrollment"
        f"{'s' if removal.ended != 1 else ''} ended, {removal.withdrawn} unsent message"
        f"{'s' if removal.withdrawn != 1 else ''} withdrawn)"
    )


@click.command()
@click.option("--journey", "key", metavar="KEY", help="Only this journey's entries.")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="How many."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@pass_state
def audit(state: State, key: str | None, limit: int, as_json: bool) -> None:
    """The audit log, newest first: who deployed, paused, resumed, archived, took someone out
    of a journey, and when."""
    with state.sessions()() as session:
        if key is not None:
            lifecycle.journey_row(session, key.strip())  # an unknown journey is one clear line
        found = audit_log.entries(
            session,
            kind=audit_log.JOURNEY if key else None,
            target=key.strip() if key else None,
            limit=limit,
        )
        rows: list[dict[str, Any]] = [
            {
                "id": e.id,
                "at": _iso(e.at),
                "actor": e.actor,
                "action": e.action,
                "kind": e.target_kind,
                "target": e.target,
                "detail": e.detail,
            }
            for e in found
        ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("the audit log is empty" + (f" for {key}" if key else ""))
        return
    common.table(
        ["at", "actor", "action", "target", "detail"],
        [[r["at"], r["actor"], r["action"], r["target"], _detail(r["detail"])] for r in rows],
    )


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _detail(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items())


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
