"""``campaigns consent``: a contact's consent to marketing mail, shown, recorded and purged.

``show EMAIL`` prints the current basis, the rule of the contact's country and whether
marketing mail may go, then the history; ``set EMAIL --basis ...`` records a grant (or
``--basis none``, a withdrawal), audited; ``purge`` deletes the records the retention rule
lets go (docs/compliance.md "Consent"), as the worker does daily.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.engine import consent as rules
from campaigns.exceptions import CampaignsError
from campaigns.store import audit
from campaigns.store import consent as records
from campaigns.store.enums import AuditAction, ConsentBasis
from campaigns.store.models import Account, Contact

BASES = (*(b.value for b in ConsentBasis), "none")

CONTACT = "contact"
"""The audit log's target kind: the target is the contact's id (never its address, which an
erasure must be able to remove everywhere)."""


@click.group()
def consent() -> None:
    """A contact's consent to marketing mail: show, set, purge."""


def _contact(session: Session, email: str) -> Contact:
    found = session.scalar(select(Contact).where(Contact.email == email.strip().lower()))
    if found is None:
        found = session.scalar(select(Contact).where(Contact.email == email.strip()))
    if found is None:
        raise CampaignsError(f"no contact with the address {email!r}")
    return found


@consent.command("show")
@click.argument("email")
@pass_state
def show(state: State, email: str) -> None:
    """The consent of the contact at EMAIL: basis, rule, and history (oldest first)."""
    cfg = state.config.consent_rules
    with state.sessions()() as session:
        contact = _contact(session, email)
        account = session.get(Account, contact.account_id) if contact.account_id else None
        country = rules.country_of(
            contact.country, account.country if account else None, cfg.default_country
        )
        rule = rules.rule_for(cfg, country)
        refusal = rules.refusal(cfg, country, contact.consent_basis)
        history = records.history(session, contact)
    click.echo(f"contact: {contact.email}")
    click.echo(f"basis: {contact.consent_basis or 'none'}")
    if contact.consent_basis:
        click.echo(
            f"given: {_when(contact.consent_at)}, source {contact.consent_source or '-'},"
            f" wording {contact.consent_wording or '-'}"
        )
    click.echo(f"rule: {rules.rule_text(rule)}")
    click.echo(f"marketing mail: {'may go' if refusal is None else 'not sent: ' + refusal}")
    if not contact.subscribed:
        click.echo("unsubscribed: marketing mail does not go whatever the basis")
    if not history:
        click.echo("history: none recorded")
        return
    click.echo("")
    common.table(
        ["at (UTC)", "action", "basis", "source", "wording", "by"],
        [
            [
                _when(r.at),
                r.action,
                r.basis or "-",
                r.source or "-",
                r.wording or "-",
                r.actor or "-",
            ]
            for r in history
        ],
    )


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


@consent.command("set")
@click.argument("email")
@click.option(
    "--basis",
    type=click.Choice(BASES),
    required=True,
    help="opt_in (with --source and --wording), business_relationship, published_address;"
    " none records a withdrawal.",
)
@click.option("--source", default=None, help="Where it was given: a form, a contract, a call.")
@click.option("--wording", default=None, help="The version of the words the person agreed to.")
@click.option(
    "--at",
    "at",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]),
    default=None,
    help="When it was given (UTC); default now.",
)
@pass_state
def set_(
    state: State,
    email: str,
    basis: str,
    source: str | None,
    wording: str | None,
    at: datetime | None,
) -> None:
    """Record the consent of the contact at EMAIL (audited as `consent`)."""
    if basis == ConsentBasis.OPT_IN and not (source and wording):
        raise CampaignsError(
            "an opt-in needs --source (where it was given) and --wording (the version of the"
            " words shown), e.g. --source 'trade show 2026' --wording form-v2"
        )
    for name, value in (("--source", source), ("--wording", wording)):
        if value is not None and (not value.strip() or not value.isprintable()):
            raise CampaignsError(f"{name}: write printable text on one line")
    when = at.replace(tzinfo=UTC) if at else common.now()
    chosen = None if basis == "none" else ConsentBasis(basis)
    actor = audit.cli_actor()
    with state.sessions()() as session, session.begin():
        contact = _contact(session, email)
        records.record(
            session, contact, chosen, at=when, source=source, wording=wording, actor=actor
        )
        audit.record(
            session,
            actor,
            AuditAction.CONSENT,
            str(contact.id),
            kind=CONTACT,
            detail={"basis": chosen.value if chosen else None, "source": source},
            at=common.now(),
        )
    shown = f"{basis}" if chosen else "withdrawn"
    click.echo(f"consent of {contact.email}: {shown} at {_when(when)}")


@consent.command("purge")
@pass_state
def purge(state: State) -> None:
    """Delete the consent records of erased contacts whose last send is more than
    CONSENT_RETENTION_DAYS ago (the worker runs this daily)."""
    keep = timedelta(days=state.config.consent_retention_days)
    with state.sessions()() as session, session.begin():
        done = records.purge(session, common.now(), keep)
    click.echo(
        f"consent records: {done.deleted} deleted, {done.kept} of erased contacts kept"
        f" (retention {keep.days} days after the last send)"
    )
