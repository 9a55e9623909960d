"""``campaigns demo``: a sample project end to end (migrate, import, tier, deploy, one pass,
the report), for a first look."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.engine import audience
from campaigns.engine.deploy import deploy as deploy_journey
from campaigns.engine.enrol import DATE_GRACE
from campaigns.exceptions import CampaignsError
from campaigns.journeys.model import Trigger
from campaigns.journeys.parse import read_source
from campaigns.journeys.segments import SegmentSet
from campaigns.store.models import Account, Contact


@click.command()
@click.option(
    "--accounts", default=60, show_default=True, help="How many sample accounts to create."
)
@click.option("--date", "on", type=click.DateTime(["%Y-%m-%d"]), help="Pretend today is this day.")
@pass_state
def demo(state: State, accounts: int, on: Any) -> None:
    """Seed sample accounts and contacts, tier them, validate and deploy the shipped
    journeys, and print a summary per tier and journey."""
    from campaigns.imports.importer import import_csv
    from campaigns.imports.samples import write_samples

    today = on.date() if on else date.today()
    click.echo(state.migrate())  # the demo is a first run: it makes the schema itself
    sessions = state.sessions()
    with tempfile.TemporaryDirectory(prefix="campaigns-demo-") as folder:
        accounts_csv, contacts_csv = write_samples(Path(folder), today, accounts=accounts)
        for kind, path in (("accounts", accounts_csv), ("contacts", contacts_csv)):
            report = import_csv(
                kind,  # type: ignore[arg-type]
                path,
                sessions,
                currencies=state.config.currencies,
            )
            for error in report.errors:
                common.err(str(error))
            click.echo(
                f"imported {kind}: {report.inserted} new, {report.updated} updated,"
                f" {report.skipped} skipped"
            )
    checked = state.project.check()
    if checked.problems:
        common.print_problems(checked.problems)
        raise CampaignsError("the shipped journeys do not validate")
    assert checked.segments is not None
    segset = checked.segments
    with sessions() as session, session.begin():
        audience.apply_tiers(session, segset, today)
        counts = {c.name: c for c in audience.count(session, segset, today)}
        click.echo("")
        click.echo(f"Touch tiers on {today.isoformat()}:")
        common.table(
            ["tier", "accounts", "contacts", "label"],
            [
                [t.name, counts[t.name].accounts, counts[t.name].contacts, t.label_for("en")]
                for t in segset.tiers
            ],
        )
        click.echo("")
        click.echo("Journeys deployed:")
        rows = []
        for journey, path in checked.journeys:
            result = deploy_journey(session, journey, read_source(path), str(path))
            eligible = _eligible(session, segset, journey, today)
            entry = journey.entry.trigger.value
            if journey.entry.trigger == Trigger.EVENT:
                entry = f"event {journey.entry.event}"
            elif journey.entry.trigger == Trigger.DATE:
                entry = (
                    f"{journey.entry.field} {-journey.entry.offset.days} days before"
                    if journey.entry.offset.days < 0
                    else f"{journey.entry.field} +{journey.entry.offset.days} days"
                )
            rows.append(
                [
                    journey.key,
                    f"v{result.version}",
                    ",".join(journey.segments),
                    entry,
                    len(journey.steps),
                    f"{eligible} {'accounts' if journey.per_account else 'contacts'}",
                ]
            )
        common.table(["journey", "version", "segments", "entry", "steps", "eligible"], rows)
    click.echo("")
    _demo_health(state, segset, on, today)
    click.echo("")
    _demo_run(state, on)
    click.echo("")
    _demo_report(state)
    click.echo("")
    click.echo(
        f"Dashboard: {state.config.base_url}/journeys once `campaigns run` serves it"
        " (create a sign-in first: `campaigns user add you@example.com`)."
    )
    click.echo(
        "Next: `campaigns simulate low_touch_nps --days 14`, `campaigns report low_touch_nps`,"
        " `campaigns run`; see README.md."
    )


HEALTH_HISTORY = 35
"""Days of health the demo works out before today, so that changes over 7 and 30 days show."""


def _demo_health(state: State, segset: SegmentSet, on: Any, today: date) -> None:
    """Usage for the past weeks and NPS answers per sample account (their trends differ),
    then the health scores of the past days and of today: every band, and some changes."""
    from datetime import UTC, datetime, time, timedelta

    from sqlalchemy import delete

    from campaigns.cli.health import show
    from campaigns.engine import health
    from campaigns.imports.samples import nps_for, usage_for
    from campaigns.store.enums import EventKind
    from campaigns.store.models import Event, JourneyVersion, UsageMetric
    from campaigns.store.models import Journey as JourneyRow

    cards = state.project.scorecards(segset)
    if cards is None:
        return
    sessions = state.sessions()
    with sessions() as session, session.begin():
        accounts = session.execute(
            select(Account.id, Account.external_id, Account.tier).where(
                Account.external_id.like("ACC-%")
            )
        ).all()
        ids = [a.id for a in accounts]
        session.execute(delete(UsageMetric).where(UsageMetric.account_id.in_(ids)))
        rows = [
            {"account_id": a.id, "metric": metric, "day": day, "value": value}
            for a in accounts
            for metric, day, value in usage_for(
                int(a.external_id[4:]) - 1, a.tier or "tech_touch", today
            )
        ]
        session.execute(insert(UsageMetric), rows)
        survey = session.execute(
            select(JourneyRow.id, JourneyVersion.definition)
            .join(JourneyVersion, JourneyVersion.id == JourneyRow.current_version_id)
            .where(JourneyRow.key == "low_touch_nps")
        ).first()
        step = next(
            (
                s["id"]
                for s in (survey.definition.get("steps", []) if survey else [])
                if isinstance(s, dict) and "survey" in (s.get("blocks") or {})
            ),
            None,
        )
        if survey is not None and step is not None:
            contacts = session.execute(
                select(Contact.id, Contact.account_id)
                .where(Contact.account_id.in_(ids))
                .order_by(Contact.account_id, Contact.id)
            ).all()
            by_account: dict[int, list[int]] = {}
            for contact_id, account_id in contacts:
                if account_id is not None:
                    by_account.setdefault(account_id, []).append(contact_id)
            numbers = {a.id: int(a.external_id[4:]) - 1 for a in accounts}
            answered = datetime.combine(today - timedelta(days=12), time(2, 0), UTC)
            keys = {
                k
                for (k,) in session.execute(
                    select(Event.dedupe_key).where(Event.dedupe_key.like("demo:nps:%"))
                )
            }
            for account_id, people in by_account.items():
                for contact_id, score in zip(
                    people, nps_for(numbers[account_id], len(people)), strict=False
                ):
                    key = f"demo:nps:{contact_id}"
                    if key in keys:
                        continue
                    session.add(
                        Event(
                            kind=EventKind.ANSWER,
                            contact_id=contact_id,
                            account_id=account_id,
                            journey_id=survey.id,
                            step_id=step,
                            value=str(score),
                            dedupe_key=key,
                            occurred_at=answered,
                        )
                    )
    now = datetime.combine(on.date(), time(1, 0), UTC) if on else common.now()
    for back in range(HEALTH_HISTORY, 0, -1):
        day = today - timedelta(days=back)
        with sessions() as session, session.begin():
            health.compute(session, cards, segset, day, datetime.combine(day, time(23), UTC))
    with sessions() as session, session.begin():
        run = health.compute(session, cards, segset, today, now)
    click.echo(
        f"Usage for the past weeks and NPS answers added; health worked out for the"
        f" {HEALTH_HISTORY} days before today and today (journeys/scorecards.yaml):"
    )
    show(run, [t.name for t in segset.tiers])


def _demo_report(state: State) -> None:
    """The report after the demo's scheduler pass: what each journey has sent so far."""
    from campaigns.insight import report as reports
    from campaigns.insight import stats

    sessions = state.sessions()
    with sessions() as session, session.begin():
        stats.rollup(session, common.now())
    with sessions() as session:
        items = reports.overview(session)
    rows = [reports.Row(item["journey"], item["counts"]) for item in items]
    units = {item["journey"]: item["unit"] for item in items}
    click.echo("Report (campaigns report): opens, clicks and answers arrive as recipients act")
    common.table(
        ["journey", "enrolled", "sent", "not sent", "tasks", "open rate", "answer rate"],
        [
            [
                r.key,
                f"{r.count('enrolled')} {units[r.key]}s",
                r.count("sent"),
                r.count("suppressed"),
                r.count("task_created"),
                common.pct(r.rate("open_rate")),
                common.pct(r.rate("answer_rate")),
            ]
            for r in rows
        ],
    )


def _demo_run(state: State, on: Any) -> None:
    """One scheduler pass over the deployed playbooks: their first steps go out."""
    from datetime import UTC, datetime, time

    from campaigns.clock import FakeClock, SystemClock
    from campaigns.store.enums import MessageStatus
    from campaigns.store.models import InAppMessage, Task
    from campaigns.store.models import Message as MessageRow

    # With --date, the pass runs at 10:00 in Tokyo that day (01:00 UTC), so that runs of
    # the demo on different days print the same thing; otherwise now.
    clock = FakeClock(datetime.combine(on.date(), time(1, 0), UTC)) if on else SystemClock()
    services = state.services(clock)
    result = services.engine.tick()
    services.transport.close()
    with state.sessions()() as session:
        counts = dict(
            session.execute(
                select(MessageRow.status, func.count()).group_by(MessageRow.status)
            ).all()
        )
        tasks = session.scalar(select(func.count()).select_from(Task)) or 0
        in_app = session.scalar(select(func.count()).select_from(InAppMessage)) or 0
    click.echo(
        f"First steps run at {clock.now():%Y-%m-%d %H:%M} UTC:"
        f" {result.claimed} enrollments advanced"
    )
    click.echo(f"  emails sent: {counts.get(MessageStatus.SENT, 0)} (to {state.config.mail_url})")
    click.echo(
        f"  held for sending windows or the frequency cap: {counts.get(MessageStatus.DEFERRED, 0)}"
    )
    click.echo(
        f"  not sent (unsubscribed or suppressed): {counts.get(MessageStatus.SUPPRESSED, 0)}"
    )
    click.echo(f"  tasks for account owners: {tasks}; in-app messages: {in_app}")


def _eligible(session: Session, segset: SegmentSet, journey: Any, today: date) -> int:
    """Contacts in the journey's segments (accounts with one, for an account journey); for a
    date entry, those enrolment would take now."""
    query = audience.members(segset, journey.segments, today)
    if journey.entry.trigger == Trigger.DATE and journey.entry.field in (
        "renewal_date",
        "contract_start",
    ):
        column = getattr(Account, journey.entry.field)
        # A contact is due once date + offset <= today, i.e. date <= today - offset; an
        # offset before the date stops counting once the date has passed.
        query = query.where(column.is_not(None), column <= today - journey.entry.offset)
        if journey.entry.offset.total_seconds() < 0:
            query = query.where(column >= today)
        else:
            query = query.where(column >= today - journey.entry.offset - DATE_GRACE)
    if journey.per_account:
        accounts = select(func.count(func.distinct(Contact.account_id))).where(
            Contact.id.in_(query.subquery().select())
        )
        return int(session.scalar(accounts) or 0)
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
