"""``campaigns import`` and ``segments``: the accounts and contacts, from CSV files in, and
counted by tier and segment."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.engine import audience
from campaigns.exceptions import ImportRowError


@click.command("import")
@click.argument("kind", type=click.Choice(["accounts", "contacts"]))
@click.argument("file", type=common.PathArg(dir_okay=False))
@click.option("--strict", is_flag=True, help="All or nothing: import no row if any row is bad.")
@click.option(
    "--encoding",
    default="utf-8-sig",
    show_default=True,
    help="The file's encoding, e.g. cp932 for Shift_JIS from Excel.",
)
@pass_state
def import_(state: State, kind: str, file: Path, strict: bool, encoding: str) -> None:
    """Upsert accounts or contacts from a CSV file. Bad rows are reported as FILE:LINE:
    reason and skipped; the good rows are kept (unless --strict)."""
    from campaigns.imports.importer import import_csv

    if not file.is_file():
        raise ImportRowError(f"{file}: no such file")
    sessions = state.sessions()
    size = file.stat().st_size
    hidden = not sys.stderr.isatty()
    with click.progressbar(
        length=size, label=f"importing {kind}", file=sys.stderr, hidden=hidden
    ) as bar:
        report = import_csv(
            kind,  # type: ignore[arg-type]
            file,
            sessions,
            strict=strict,
            encoding=encoding,
            progress=bar.update,
            currencies=state.config.currencies,
        )
    for warning in report.warnings:
        common.err(f"{warning} (warning)")
    for error in report.errors:
        common.err(str(error))
    verb = "imported" if report.committed else "nothing imported (--strict)"
    click.echo(
        f"{kind}: {verb}: {report.inserted} new, {report.updated} updated, {report.skipped} skipped"
    )
    if report.errors and strict:
        sys.exit(common.EXIT_PROBLEMS)


@click.command()
@click.option("--apply", "apply_", is_flag=True, help="Store each account's tier in accounts.tier.")
@click.option(
    "--date",
    "on",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Evaluate date rules as of this day (default: today).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@pass_state
def segments(state: State, apply_: bool, on: Any, fmt: str) -> None:
    """Count the accounts and contacts in every tier and segment."""
    today = on.date() if on else date.today()
    segset = state.project.segments()
    with state.sessions()() as session, session.begin():
        changed = audience.apply_tiers(session, segset, today) if apply_ else None
        counts = audience.count(session, segset, today)
        unpriced = audience.unpriced(session, segset)
    if unpriced:
        common.err(
            f"warning: {sum(unpriced.values())} account(s) in currencies without a rate"
            f" ({', '.join(f'{code} {n}' for code, n in unpriced.items())}): their arr and ltv"
            " match no rule; add the rates to CURRENCY_RATES"
        )
    if fmt == "json":
        click.echo(json.dumps([c.__dict__ for c in counts], ensure_ascii=False, indent=2))
    else:
        common.table(
            ["segment", "kind", "accounts", "contacts", "label"],
            [
                [c.name, "tier" if c.is_tier else "segment", c.accounts, c.contacts, c.label]
                for c in counts
            ],
        )
    if changed is not None:
        click.echo(f"tiers stored: {changed} account{'s' if changed != 1 else ''} changed tier")
