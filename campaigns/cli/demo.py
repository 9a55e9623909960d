"""``campaigns demo``: a sample project end to end (migrate, import, tier, deploy, health,
then weeks of the shipped playbooks on a fake clock with synthetic recipients, the report),
for a first look; ``--serve`` then serves the dashboard with a demo sign-in."""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
import tempfile
from datetime import UTC, date, datetime, time, timedelta
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

DEMO_USER = "demo@example.com"
"""The dashboard sign-in ``campaigns demo --serve`` makes (an admin)."""

DEMO_PASSWORD_FILE = "demo-password"
"""Its password, generated once, in the instance folder beside the secret."""

DEMO_CONTROL_PERCENT = 10.0
"""The global control group of the demo's weeks when ``GLOBAL_CONTROL_PERCENT`` is unset: the
lift of the journeys with a goal shows against it."""

ARRIVALS_PER_WEEK = 40
"""New tech-touch customers signing up each simulated week (the onboarding's entrants)."""


@click.command()
@click.option(
    "--accounts", default=60, show_default=True, help="How many sample accounts to create."
)
@click.option("--date", "on", type=click.DateTime(["%Y-%m-%d"]), help="Pretend today is this day.")
@click.option(
    "--weeks",
    default=6,
    show_default=True,
    type=click.IntRange(0, 26),
    help="Simulated weeks of the playbooks before today (0: one pass today).",
)
@click.option(
    "--arrivals",
    default=ARRIVALS_PER_WEEK,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="New customers signing up per simulated week.",
)
@click.option("--serve", is_flag=True, help="Then serve the dashboard (as `campaigns run`).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="The dashboard's port with --serve (default: BASE_URL's, else 5000).",
)
@click.pass_context
@pass_state
def demo(
    state: State,
    ctx: click.Context,
    accounts: int,
    on: Any,
    weeks: int,
    arrivals: int,
    serve: bool,
    port: int | None,
) -> None:
    """Seed sample accounts and contacts, tier them, validate and deploy the shipped
    journeys, run them over simulated weeks with synthetic recipients, and print a summary
    per tier and journey."""
    from campaigns.cli.demo_weeks import record_sample_consent
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
    # The sample contacts opted in to marketing mail a year ago, before the simulated weeks
    # (the consent gate sends marketing mail only to contacts with a basis).
    signed_up = datetime.combine(today - timedelta(days=365), time(0, 0), UTC)
    recorded = record_sample_consent(sessions, signed_up)
    click.echo(f"recorded consent: {recorded} opt-ins")
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
    _demo_weeks(state, segset, on, weeks, arrivals, first_number=accounts)
    click.echo("")
    _demo_report(state)
    click.echo("")
    _demo_learning(state)
    click.echo("")
    if serve:
        _serve(ctx, state, port)
        return
    click.echo(
        f"Dashboard: {state.config.base_url}/journeys once `campaigns run` serves it"
        " (create a sign-in first: `campaigns user add you@example.com`), or run"
        " `campaigns demo --serve` (`make demo`)."
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


def _demo_weeks(
    state: State, segset: SegmentSet, on: Any, weeks: int, per_week: int, *, first_number: int
) -> None:
    """The shipped playbooks over ``weeks`` simulated weeks up to now (10:00 in Tokyo on
    ``--date``), hour by hour, with synthetic recipients (:mod:`campaigns.cli.demo_weeks`)."""
    from campaigns.cli.demo_weeks import BufferedHitLog, DemoWeeks, arrivals_between, import_samples
    from campaigns.clock import FakeClock
    from campaigns.services import build
    from campaigns.store.enums import MessageStatus
    from campaigns.store.models import InAppMessage, Task
    from campaigns.store.models import Message as MessageRow
    from campaigns.web import create_app

    # With --date, the weeks end at 10:00 in Tokyo that day (01:00 UTC), so that runs of the
    # demo on different days print the same thing; otherwise at the start of this hour.
    end = (
        datetime.combine(on.date(), time(1, 0), UTC)
        if on
        else common.now().replace(minute=0, second=0, microsecond=0)
    )
    start = end - timedelta(weeks=weeks)
    cfg = state.config
    if not os.environ.get("GLOBAL_CONTROL_PERCENT"):
        cfg = dataclasses.replace(cfg, global_control_percent=DEMO_CONTROL_PERCENT)
    clock = FakeClock(start)
    sessions = state.sessions()
    hits = BufferedHitLog(sessions, clock.now)
    services = build(cfg, clock, sessions=sessions, hits=hits)
    app = create_app({"CAMPAIGNS": cfg, "CLOCK": clock, "HITS": hits, "TESTING": True})
    crm = import_samples(sessions, cfg.currencies, clock)

    def sign_up(accounts: list[Any]) -> None:
        crm(accounts)
        with sessions() as session, session.begin():
            audience.apply_tiers(session, segset, clock.now().date())

    world = DemoWeeks(
        services,
        app,
        hits,
        start,
        end,
        arrivals=list(arrivals_between(start, end, first_number, per_week)),
        import_accounts=sign_up,
    )
    try:
        if weeks:
            bar: Any = click.progressbar(
                length=world.passes(),
                label=f"Simulating {weeks} week{'s' if weeks != 1 else ''}",
                file=sys.stderr,
            )
            with bar:
                result = world.run(bar.update)
        else:
            result = world.run()
            result.advanced = services.engine.tick().claimed
    finally:
        services.transport.close()
        app.extensions["campaigns.services"].close()
    with sessions() as session:
        counts = dict(
            session.execute(
                select(MessageRow.status, func.count())
                .where(MessageRow.sent_at.is_(None) | (MessageRow.status != MessageStatus.BOUNCED))
                .group_by(MessageRow.status)
            ).all()
        )
        sent = session.scalar(
            select(func.count()).where(
                MessageRow.sent_at.is_not(None),
                MessageRow.status.in_([MessageStatus.SENT, MessageStatus.BOUNCED]),
            )
        )
        bounced = session.scalar(
            select(func.count()).where(MessageRow.status == MessageStatus.BOUNCED)
        )
        tasks = session.scalar(select(func.count()).select_from(Task)) or 0
        in_app = session.scalar(select(func.count()).select_from(InAppMessage)) or 0
    if weeks:
        click.echo(
            f"Simulated {weeks} week{'s' if weeks != 1 else ''}, {start:%Y-%m-%d %H:%M} to"
            f" {end:%Y-%m-%d %H:%M} UTC, a pass every 2 hours: {result.advanced} enrollments"
            f" advanced, {result.arrivals} new customers signed up"
        )
    else:
        click.echo(
            f"First steps run at {end:%Y-%m-%d %H:%M} UTC: {result.advanced} enrollments advanced"
        )
    click.echo(f"  emails sent: {sent or 0} (to {cfg.mail_url})")
    click.echo(
        f"  held for sending windows or the frequency cap: {counts.get(MessageStatus.DEFERRED, 0)}"
    )
    click.echo(
        f"  not sent (unsubscribed or suppressed): {counts.get(MessageStatus.SUPPRESSED, 0)}"
    )
    click.echo(f"  tasks for account owners: {tasks}; in-app messages: {in_app}")
    if weeks:
        click.echo(
            f"  recipients' hits on tracking links: {result.hits}; product events:"
            f" {result.events}; bounces reported: {bounced or 0}"
        )


def _demo_learning(state: State) -> None:
    """What the weeks taught: the welcome email's allocation, the human and machine opens,
    NPS, and the lift over the global control group."""
    from campaigns.insight import report as reports
    from campaigns.insight import tuning
    from campaigns.insight.nps import summary as nps_summary
    from campaigns.store.enums import Classification, EventKind
    from campaigns.store.models import Event, Stat
    from campaigns.store.models import Journey as JourneyRow

    with state.sessions()() as session:
        opens = dict(
            session.execute(
                select(Event.classification, func.count())
                .where(Event.kind == EventKind.OPEN)
                .group_by(Event.classification)
            ).all()
        )
        onboarding = session.scalar(
            select(JourneyRow.id).where(JourneyRow.key == "tech_touch_onboarding")
        )
        history = tuning.history(session, onboarding, "welcome") if onboarding else []
        nps = nps_summary(session)
        hours: dict[int, tuple[int, int]] = {}
        for metric, count in session.execute(
            select(Stat.metric, func.sum(Stat.count))
            .where(
                Stat.journey_id == onboarding,
                Stat.step_id == "tips",
                Stat.metric.like("%@%"),
            )
            .group_by(Stat.metric)
        ):
            name, _, hour = metric.partition("@")
            sent, clicked = hours.get(int(hour), (0, 0))
            if name == "sent":
                sent += int(count)
            elif name == "clicked":
                clicked += int(count)
            hours[int(hour)] = (sent, clicked)
        lift = reports.global_lift(session)
    click.echo("What the weeks show (the dashboard has the same):")
    click.echo(
        f"  opens: {opens.get(Classification.HUMAN, 0)} by people,"
        f" {opens.get(Classification.MACHINE, 0)} by machines (Apple MPP, scanners),"
        f" {opens.get(Classification.UNKNOWN, 0)} unknown"
    )
    if history:
        latest = max(row.at for row in history)
        split = ", ".join(
            f"{row.arm} {row.share * 100:.0f}% ({row.successes} clicks of {row.trials})"
            for row in sorted(history, key=lambda r: r.arm)
            if row.at == latest
        )
        click.echo(f"  tech_touch_onboarding welcome, the tuner's split now: {split}")
    if hours:
        rates = ", ".join(
            f"{hour:02d}:00 {clicked}/{sent}"
            for hour, (sent, clicked) in sorted(hours.items())
            if sent
        )
        click.echo(f"  tech_touch_onboarding tips by the recipient's hour, clicks/sent: {rates}")
    if nps.total.n and nps.total.score is not None:
        total = nps.total
        click.echo(
            f"  NPS {total.score:+.0f} from {total.n} answers: {total.promoters} promoters,"
            f" {total.passives} passives, {total.detractors} detractors"
        )
    if lift is not None and lift.difference is not None:
        click.echo(f"  lift over the global control group: {lift.difference * 100:+.1f} points")


def _serve(ctx: click.Context, state: State, port: int | None) -> None:
    """The demo sign-in (made once, its password kept in the instance folder), then
    ``campaigns run`` until Ctrl-C."""
    from urllib.parse import urlsplit

    from campaigns.cli.run import run
    from campaigns.store.users import add_user, find_user, set_password

    folder = state.config.instance_dir
    path = folder / DEMO_PASSWORD_FILE
    if path.exists():
        password = path.read_text(encoding="utf-8").strip()
    else:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        password = secrets.token_urlsafe(12)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
    with state.sessions()() as session, session.begin():
        if find_user(session, DEMO_USER) is None:
            add_user(session, DEMO_USER, password, common.now(), name="Demo", role="admin")
        else:
            set_password(session, DEMO_USER, password)
    listen = port or urlsplit(state.config.base_url).port or 5000
    click.echo(f"Dashboard: http://127.0.0.1:{listen}/journeys")
    click.echo(f"Sign in as {DEMO_USER} with the password {password} (kept in {path})")
    ctx.invoke(run, host="127.0.0.1", port=listen, interval=30)


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
