"""``campaigns contact export|erase EMAIL``: a person's data rights from the command line,
the same as the API's ``GET /contacts/<email>/export`` and ``DELETE /contacts/<email>``
(:mod:`campaigns.engine.rights`), audited with ``cli:<os user>`` as the actor."""

from __future__ import annotations

import json
from pathlib import Path

import click

from campaigns.cli.common import Refused, State, pass_state
from campaigns.engine import rights
from campaigns.imports.fields import CellError, parse_email
from campaigns.store import audit


def _address(email: str) -> str:
    try:
        return parse_email(email, "EMAIL")
    except CellError as exc:
        raise Refused(str(exc)) from None


@click.group()
def contact() -> None:
    """A contact's data rights: export all we hold about them, or erase them."""


@contact.command("export")
@click.argument("email")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the JSON to this file (default: standard output).",
)
@pass_state
def export(state: State, email: str, output: Path | None) -> None:
    """Print (or write) everything about the contact EMAIL as JSON: their row, account,
    consent history, enrollments, messages, events, tasks, in-app messages, suppressions and
    outgoing events."""
    address = _address(email)
    now = state.services().clock.now()
    with state.sessions()() as session:
        try:
            data = rights.export(session, address, actor=audit.cli_actor(), now=now)
        except rights.NoSuchContact:
            raise Refused(f"no contact with email {address}") from None
        text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
        if output is not None:
            output.write_text(text, encoding="utf-8")
        session.commit()  # the audit entry, once the data is out
    if output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {output}", err=True)


@contact.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def erase(state: State, email: str, yes: bool) -> None:
    """Erase the contact EMAIL: their personal data goes from every table, and the address's
    hash is kept so that it is never mailed again. Cannot be undone."""
    address = _address(email)
    if not yes:
        click.confirm(f"Erase {address} for good?", abort=True, err=True)
    now = state.services().clock.now()
    with state.sessions()() as session:
        result = rights.erase(session, address, audit.cli_actor(), now=now)
        session.commit()
    rows = ", ".join(f"{table} {n}" for table, n in sorted(result.rows.items())) or "none"
    found = "contact erased" if result.contact_found else "no contact held; address blocked"
    click.echo(f"{found} (sha256 {result.email_hash}); rows changed: {rows}")
