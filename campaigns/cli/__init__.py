"""The ``campaigns`` command line. A thin edge: it parses arguments, calls the engine and
prints. Every failure is one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import click
from redis.exceptions import RedisError
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from campaigns import config as settings
from campaigns.content.project import Project
from campaigns.engine.deploy import deploy as deploy_journey
from campaigns.engine.enrol import DATE_GRACE
from campaigns.exceptions import CampaignsError, ImportRowError, JourneyError, Problem
from campaigns.journeys import segments as seg
from campaigns.journeys.dsl import read_source
from campaigns.journeys.model import Trigger
from campaigns.preflight import check_redis
from campaigns.store.db import make_engine, make_sessionmaker, migrate
from campaigns.store.models import Account

EXIT_PROBLEMS = 1  # the input has problems (validation, bad rows under --strict)
EXIT_ERROR = 2  # the command could not run (config, database, missing file)
EXIT_INTERNAL = 3  # a bug: reported in one line; CAMPAIGNS_DEBUG=1 shows the traceback


class _State:
    def __init__(self) -> None:
        self._config: settings.Config | None = None
        self._engine: Engine | None = None

    @property
    def config(self) -> settings.Config:
        if self._config is None:
            self._config = settings.load()
        return self._config

    @property
    def project(self) -> Project:
        return Project(self.config)

    def sessions(self) -> sessionmaker[Session]:
        """Open the database, bringing its schema to the newest migration first."""
        if self._engine is None:
            self._engine = make_engine(self.config.database_url)
            migrate(self._engine)
        return make_sessionmaker(self._engine)


pass_state = click.make_pass_decorator(_State, ensure=True)


def _err(message: str) -> None:
    click.echo(message, err=True)


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        _err(str(problem))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="campaigns")
def cli() -> None:
    """Journeys and email for customer-success teams: high, low and tech touch.

    Configuration comes from DATABASE_URL, REDIS_URL, MAIL_URL, SECRET_KEY and BASE_URL;
    with none set, everything runs on a SQLite file and a file outbox in this folder.
    """


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_state
def validate(state: _State, paths: tuple[Path, ...]) -> None:
    """Check journey files (default: every file in journeys/) and the segments and
    templates they name. Prints each problem as path:line:col; exits 1 if any."""
    for path in paths:
        if not path.exists():
            raise CampaignsError(f"{path}: no such file or folder")
    checked = state.project.check(paths)
    if checked.problems:
        _print_problems(checked.problems)
        _err(f"{len(checked.problems)} problem{'s' if len(checked.problems) != 1 else ''} found")
        sys.exit(EXIT_PROBLEMS)
    names = ", ".join(j.key for j, _ in checked.journeys) or "no journeys"
    click.echo(
        f"ok: {len(checked.journeys)} journey{'s' if len(checked.journeys) != 1 else ''} valid ({names})"
    )


@cli.command("import")
@click.argument("kind", type=click.Choice(["accounts", "contacts"]))
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--strict", is_flag=True, help="All or nothing: import no row if any row is bad.")
@click.option(
    "--encoding",
    default="utf-8-sig",
    show_default=True,
    help="The file's encoding, e.g. cp932 for Shift_JIS from Excel.",
)
@pass_state
def import_(state: _State, kind: str, file: Path, strict: bool, encoding: str) -> None:
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
        )
    for warning in report.warnings:
        _err(f"{warning} (warning)")
    for error in report.errors:
        _err(str(error))
    verb = "imported" if report.committed else "nothing imported (--strict)"
    click.echo(
        f"{kind}: {verb}: {report.inserted} new, {report.updated} updated, {report.skipped} skipped"
    )
    if report.errors and strict:
        sys.exit(EXIT_PROBLEMS)


@cli.command()
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
def segments(state: _State, apply_: bool, on: Any, fmt: str) -> None:
    """Count the accounts and contacts in every tier and segment."""
    today = on.date() if on else date.today()
    segset = state.project.segments()
    with state.sessions()() as session, session.begin():
        changed = seg.apply_tiers(session, segset, today) if apply_ else None
        counts = seg.count(session, segset, today)
    if fmt == "json":
        click.echo(json.dumps([c.__dict__ for c in counts], ensure_ascii=False, indent=2))
    else:
        _table(
            ["segment", "kind", "accounts", "contacts", "label"],
            [
                [c.name, "tier" if c.is_tier else "segment", c.accounts, c.contacts, c.label]
                for c in counts
            ],
        )
    if changed is not None:
        click.echo(f"tiers stored: {changed} account{'s' if changed != 1 else ''} changed tier")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_state
def deploy(state: _State, paths: tuple[Path, ...]) -> None:
    """Validate journeys and load them as new versions (unchanged files are left as they are)."""
    checked = state.project.check(paths)
    if checked.problems:
        _print_problems(checked.problems)
        _err("nothing deployed: fix the problems above first")
        sys.exit(EXIT_PROBLEMS)
    with state.sessions()() as session, session.begin():
        for journey, path in checked.journeys:
            result = deploy_journey(session, journey, read_source(path), str(path))
            what = "new version" if result.created else "unchanged"
            click.echo(f"{result.key}: version {result.version} ({what})")


@cli.command()
@pass_state
def tick(state: _State) -> None:
    """One scheduler pass: enrol new entrants, then run every step that is due.

    Runs the steps in this process; the worker's scheduler runs the same pass and hands the
    batches to the queue instead."""
    from campaigns.services import build_engine

    engine = build_engine(state.config)
    result = engine.tick()
    entered = ", ".join(f"{k} +{v}" for k, v in result.entered.items() if v) or "nobody new"
    click.echo(f"entered: {entered}")
    click.echo(
        f"ran {result.claimed} due enrollment{'s' if result.claimed != 1 else ''} in {result.batches} batch{'es' if result.batches != 1 else ''}: {result.sent} sent, {result.deferred} deferred, {result.failed} failed"
    )


@cli.command()
@click.argument("journey", required=False)
@click.option(
    "--by",
    type=click.Choice(["step", "segment", "tier", "channel", "variant", "day"]),
    default="step",
    show_default=True,
    help="How to group the rows (step: the funnel).",
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
def report(state: _State, journey: str | None, by: str, since: Any, until: Any, fmt: str) -> None:
    """Response rates: every journey's headline numbers, or JOURNEY's funnel (or its rows by
    segment, tier, channel, variant or day). Human signals only, with n and a 95% interval;
    machine opens and clicks beside them."""
    import csv
    import json

    from campaigns.insight import report as reports
    from campaigns.insight import stats

    sessions = state.sessions()
    with sessions() as session, session.begin():
        stats.rollup(session, _now())  # count what happened since the last scheduler pass
    with sessions() as session:
        if journey is None:
            document: Any = {"journeys": reports.overview(session)}
            rows = [reports.Row(item["journey"], item["counts"]) for item in document["journeys"]]
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
                    f"no journey {journey!r}; deployed: {', '.join(k for _, k, _ in reports.journeys(session)) or 'none'}"
                ) from None
            document = result.as_dict()
            rows = [*result.rows, result.totals]
    if fmt == "json":
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    headers = [
        by if journey else "journey",
        "sent",
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
            row.count("opened"),
            _pct(row.rate("open_rate")),
            row.count("clicked"),
            _pct(row.rate("click_rate")),
            row.count("answered"),
            _pct(row.rate("answer_rate")),
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
            ["group", *[f"{m}" for m in reports.COLUMNS], *[name for name, _, _ in reports.RATES]]
        )
        for row in rows:
            writer.writerow(
                [
                    row.key,
                    *[row.count(m) for m in reports.COLUMNS],
                    *[
                        f"{row.rate(name).value:.4f}" if row.rate(name).n else ""
                        for name, _, _ in reports.RATES
                    ],
                ]
            )
        return
    if journey:
        click.echo(
            f"{document['name']} ({document['journey']}): rates of human signals, with 95% intervals"
        )
    _table(headers, table)
    if journey:
        goal = document["goal"]
        if goal["rate"]["n"]:
            line = f"goal: {goal['rate']['hits']} of {goal['rate']['n']} enrolled ({_pct_dict(goal['rate'])})"
            if "lift" in goal:
                lift_ = goal["lift"]
                line += f"; holdout {_pct_dict(goal['holdout'])}; lift {lift_['difference'] * 100:+.1f} points [{lift_['low'] * 100:+.1f}, {lift_['high'] * 100:+.1f}]"
            click.echo(line)


def _pct(rate: Any) -> str:
    if not rate.n:
        return "-"
    low, high = rate.interval
    return f"{rate.value * 100:.1f}% [{low * 100:.1f}-{high * 100:.1f}]"


def _pct_dict(rate: dict[str, Any]) -> str:
    return f"{rate['value'] * 100:.1f}% [{rate['low'] * 100:.1f}-{rate['high'] * 100:.1f}]"


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@cli.command()
@click.option(
    "--follow",
    is_flag=True,
    help="Keep flushing as hits arrive (the flusher process); Ctrl-C stops.",
)
@pass_state
def flush(state: _State, follow: bool) -> None:
    """Write the tracking hits waiting in Redis (opens, clicks, answers, unsubscribes) to
    the database, classified as human, machine or unknown."""
    from campaigns.queue import connect
    from campaigns.tracking.hitlog import RedisHitLog, run_flusher

    if not state.config.redis_url:
        click.echo("REDIS_URL is unset: hits are written as they arrive; nothing to flush")
        return
    check_redis(state.config.redis_url)
    hits = RedisHitLog(connect(state.config))
    sessions = state.sessions()
    if follow:
        click.echo(f"flushing hits from Redis ({hits.pending()} waiting); Ctrl-C stops")
        try:
            run_flusher(hits, sessions)
        except KeyboardInterrupt:
            click.echo("stopping")
        return
    result = hits.flush(sessions)
    classes = (
        ", ".join(f"{count} {name}" for name, count in sorted(result.by_class.items())) or "none"
    )
    click.echo(
        f"flushed {result.written} hits ({classes}); {result.duplicates} duplicates skipped, {result.dropped} dropped, {result.reclassified} earlier hits reclassified"
    )


@cli.command()
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
def simulate(state: _State, journey: str, days: int, start: Any) -> None:
    """Dry-run JOURNEY (a deployed journey's id, or a journey file) day by day: who would
    get which step, with segment sizes, sending windows and the frequency cap applied.
    Nothing is sent and nothing is written."""
    from datetime import UTC, datetime

    from campaigns.cli.simulate import simulate as run_simulation

    began = start.replace(tzinfo=UTC) if start else datetime.now(UTC)
    state.sessions()  # migrate the real database first, so the copy has the schema
    report = run_simulation(state.config, journey, days, began)
    click.echo(
        f"Simulating {report.journey} for {days} day{'s' if days != 1 else ''} from {began:%Y-%m-%d %H:%M} UTC (nothing is sent or written)"
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
        _table(["day", "date", "step", "contacts", "who"], rows)
    else:
        click.echo("nobody would get anything in this period")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--interval",
    default=30,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds between scheduler passes.",
)
@pass_state
def run(state: _State, host: str, port: int, interval: int) -> None:
    """Everything on one machine: the web app, a worker and the scheduler, in one process.

    Uses REDIS_URL and DATABASE_URL when set; otherwise a SQLite file and an in-process
    stand-in for Redis. For production, run web.py under gunicorn and worker.py instead."""
    import threading
    import time as clock_time

    from werkzeug.serving import make_server

    from campaigns.queue import connect
    from campaigns.services import build_engine
    from campaigns.web import create_app

    cfg = state.config
    if cfg.redis_url:  # before anything starts: a dead Redis is one line, not a thread's traceback
        check_redis(cfg.redis_url)
    state.sessions()
    engine = build_engine(cfg)  # no dispatch: each pass does the due work itself
    hits = None
    if cfg.redis_url:  # the web app appends hits to Redis; without it, it writes them itself
        from campaigns.tracking.hitlog import RedisHitLog

        hits = RedisHitLog(connect(cfg))
    try:
        server = make_server(host, port, create_app(), threaded=True)
    except OSError as exc:
        raise CampaignsError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="web", daemon=True).start()
    redis_note = "Redis at REDIS_URL" if cfg.redis_url else "no REDIS_URL: all in this process"
    click.echo(
        f"campaigns running: web on http://{host}:{port}, worker and scheduler every {interval}s ({redis_note}, {_safe_url(cfg.database_url)}, mail to {cfg.mail_url}); Ctrl-C stops"
    )
    try:
        while True:
            if hits is not None:
                hits.flush(engine.sessions)
            result = engine.tick()
            if result.claimed or any(result.entered.values()):
                entered = sum(result.entered.values())
                click.echo(f"tick: {entered} entered, {result.claimed} enrollments advanced")
            clock_time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        server.shutdown()
        engine.transport.close()


@cli.command()
@click.option(
    "--accounts", default=60, show_default=True, help="How many sample accounts to create."
)
@click.option("--date", "on", type=click.DateTime(["%Y-%m-%d"]), help="Pretend today is this day.")
@pass_state
def demo(state: _State, accounts: int, on: Any) -> None:
    """Seed sample accounts and contacts, tier them, validate and deploy the shipped
    journeys, and print a summary per tier and journey."""
    from campaigns.imports.importer import import_csv
    from campaigns.imports.samples import write_samples

    today = on.date() if on else date.today()
    cfg = state.config
    click.echo(f"database: {_safe_url(cfg.database_url)}")
    sessions = state.sessions()
    with tempfile.TemporaryDirectory(prefix="campaigns-demo-") as folder:
        accounts_csv, contacts_csv = write_samples(Path(folder), today, accounts=accounts)
        for kind, path in (("accounts", accounts_csv), ("contacts", contacts_csv)):
            report = import_csv(kind, path, sessions)  # type: ignore[arg-type]
            for error in report.errors:
                _err(str(error))
            click.echo(
                f"imported {kind}: {report.inserted} new, {report.updated} updated, {report.skipped} skipped"
            )
    checked = state.project.check()
    if checked.problems:
        _print_problems(checked.problems)
        raise CampaignsError("the shipped journeys do not validate")
    assert checked.segments is not None
    segset = checked.segments
    with sessions() as session, session.begin():
        seg.apply_tiers(session, segset, today)
        counts = {c.name: c for c in seg.count(session, segset, today)}
        click.echo("")
        click.echo(f"Touch tiers on {today.isoformat()}:")
        _table(
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
                    eligible,
                ]
            )
        _table(["journey", "version", "segments", "entry", "steps", "eligible contacts"], rows)
    click.echo("")
    _demo_run(state, on)
    click.echo("")
    _demo_report(state)
    click.echo("")
    click.echo(
        f"Dashboard: {state.config.base_url}/journeys once `campaigns run` serves it (create a sign-in first: `campaigns user add you@example.com`)."
    )
    click.echo(
        "Next: `campaigns simulate low_touch_nps --days 14`, `campaigns report low_touch_nps`, `campaigns run`; see README.md."
    )


def _demo_report(state: _State) -> None:
    """The report after the demo's scheduler pass: what each journey has sent so far."""
    from campaigns.insight import report as reports
    from campaigns.insight import stats

    sessions = state.sessions()
    with sessions() as session, session.begin():
        stats.rollup(session, _now())
    with sessions() as session:
        rows = [reports.Row(item["journey"], item["counts"]) for item in reports.overview(session)]
    click.echo("Report (campaigns report): opens, clicks and answers arrive as recipients act")
    _table(
        ["journey", "enrolled", "sent", "not sent", "tasks", "open rate", "answer rate"],
        [
            [
                r.key,
                r.count("enrolled"),
                r.count("sent"),
                r.count("suppressed"),
                r.count("task_created"),
                _pct(r.rate("open_rate")),
                _pct(r.rate("answer_rate")),
            ]
            for r in rows
        ],
    )


@cli.group(invoke_without_command=True)
@click.option("--owner", help="Only this owner's tasks (an email address).")
@click.option(
    "--status",
    type=click.Choice(["open", "done", "cancelled", "all"]),
    default="open",
    show_default=True,
)
@click.option(
    "--due",
    type=click.Choice(["overdue", "today", "week"]),
    help="Only open tasks due before now, by the end of today (UTC), or within 7 days.",
)
@click.pass_context
def tasks(ctx: click.Context, owner: str | None, status: str, due: str | None) -> None:
    """Account owners' tasks (open ones, oldest due first); `campaigns tasks done ID` marks one done."""
    if ctx.invoked_subcommand is not None:
        return
    from campaigns.engine.tasks import list_tasks

    state: _State = ctx.ensure_object(_State)
    now = _now()
    with state.sessions()() as session:
        items, total = list_tasks(session, now, owner=owner, status=status, due=due, limit=500)
        rows = [
            [
                i.task.id,
                i.task.due_at.strftime("%Y-%m-%d") if i.task.due_at else "-",
                ("! " if i.overdue(now) else "") + i.task.title,
                i.account or "-",
                i.task.owner_email or "-",
                i.task.status,
            ]
            for i in items
        ]
    if not rows:
        click.echo(f"no {status if status != 'all' else ''} tasks".replace("  ", " "))
        return
    _table(["id", "due", "task", "account", "owner", "status"], rows)
    if total > len(rows):
        click.echo(f"... and {total - len(rows)} more")


@tasks.command("done")
@click.argument("task_id", type=click.IntRange(1, 2**31 - 1))
@click.option(
    "--outcome",
    default="",
    help="What came of it (kept with the task, shown on the contact's timeline).",
)
@click.option("--by", default=None, help="Who did it (an email address).")
@pass_state
def tasks_done(state: _State, task_id: int, outcome: str, by: str | None) -> None:
    """Mark task TASK_ID done: the journey waiting on it goes on at its next run."""
    from campaigns.engine.tasks import TaskError, complete_task

    with state.sessions()() as session, session.begin():
        try:
            task = complete_task(session, task_id, _now(), by=by, outcome=outcome)
        except TaskError as exc:
            _err(str(exc))
            raise SystemExit(1) from None
        click.echo(f"done: {task.title}")


@cli.group()
def user() -> None:
    """Dashboard users: add them, list them, set a password."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user.command("add")
@click.argument("email")
@click.option("--name", default="", help="The name shown in the dashboard.")
@click.option("--role", type=click.Choice(["admin", "csm"]), default="csm", show_default=True)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts) instead of asking.",
)
@pass_state
def user_add(state: _State, email: str, name: str, role: str, password_stdin: bool) -> None:
    """Add a user who can sign in to the dashboard as EMAIL."""
    from campaigns.store.users import add_user, check_password

    password = _read_password(password_stdin)
    check_password(password)  # before opening the database: a typo costs nothing
    with state.sessions()() as session, session.begin():
        added = add_user(session, email, password, _now(), name=name, role=role)
        click.echo(f"added {added.role} {added.email}")


@user.command("password")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of asking.",
)
@pass_state
def user_password(state: _State, email: str, password_stdin: bool) -> None:
    """Set a new password for EMAIL (their dashboard sessions end)."""
    from campaigns.store.users import check_password, set_password

    password = _read_password(password_stdin)
    check_password(password)
    with state.sessions()() as session, session.begin():
        changed = set_password(session, email, password)
        click.echo(f"new password set for {changed.email}; their dashboard sessions have ended")


@user.command("list")
@pass_state
def user_list(state: _State) -> None:
    """Every dashboard user: email, name, role, when added and last signed in (UTC)."""
    from campaigns.store.users import list_users

    with state.sessions()() as session:
        users = list_users(session)
    if not users:
        click.echo("no users; add one with `campaigns user add EMAIL --role admin`")
        return
    stamp = "%Y-%m-%d %H:%M"
    rows = [
        [
            u.email,
            u.name,
            u.role,
            u.created_at.strftime(stamp),
            u.last_login_at.strftime(stamp) if u.last_login_at else "never",
        ]
        for u in users
    ]
    _table(["email", "name", "role", "added", "last sign-in"], rows)


def _demo_run(state: _State, on: Any) -> None:
    """One scheduler pass over the deployed playbooks: their first steps go out."""
    from datetime import UTC, datetime, time

    from campaigns.clock import FakeClock, SystemClock
    from campaigns.services import build_engine
    from campaigns.store.models import InAppMessage, MessageStatus, Task
    from campaigns.store.models import Message as MessageRow

    # With --date, the pass runs at 10:00 in Tokyo that day (01:00 UTC), so that runs of
    # the demo on different days print the same thing; otherwise now.
    clock = FakeClock(datetime.combine(on.date(), time(1, 0), UTC)) if on else SystemClock()
    engine = build_engine(state.config, clock=clock)
    result = engine.tick()
    engine.transport.close()
    with state.sessions()() as session:
        counts = dict(
            session.execute(
                select(MessageRow.status, func.count()).group_by(MessageRow.status)
            ).all()
        )
        tasks = session.scalar(select(func.count()).select_from(Task)) or 0
        in_app = session.scalar(select(func.count()).select_from(InAppMessage)) or 0
    click.echo(
        f"First steps run at {clock.now():%Y-%m-%d %H:%M} UTC: {result.claimed} enrollments advanced"
    )
    click.echo(f"  emails sent: {counts.get(MessageStatus.SENT, 0)} (to {state.config.mail_url})")
    click.echo(
        f"  held for sending windows or the frequency cap: {counts.get(MessageStatus.DEFERRED, 0)}"
    )
    click.echo(
        f"  not sent (unsubscribed or suppressed): {counts.get(MessageStatus.SUPPRESSED, 0)}"
    )
    click.echo(f"  tasks for account owners: {tasks}; in-app messages: {in_app}")


def _eligible(session: Session, segset: seg.SegmentSet, journey: Any, today: date) -> int:
    """Contacts in the journey's segments; for a date entry, those enrolment would take now."""
    query = seg.members(segset, journey.segments, today)
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
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([_width(h)] + [_width(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        parts = []
        for value, width, sample in zip(values, widths, rows[0] if rows else values, strict=False):
            pad = " " * (width - _width(value))
            parts.append(pad + value if isinstance(sample, int) else value + pad)
        return "  ".join(parts).rstrip()

    click.echo(line(headers))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo(line(row))


def _width(text: str) -> int:
    """Display width: East Asian wide characters take two columns."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except JourneyError as exc:
        _print_problems(exc.problems)
        sys.exit(EXIT_PROBLEMS)
    except CampaignsError as exc:
        _err(f"campaigns: {exc}")
        sys.exit(EXIT_ERROR)
    except OperationalError as exc:
        _err(f"campaigns: database error: {str(exc.orig).splitlines()[0] if exc.orig else exc}")
        sys.exit(EXIT_ERROR)
    except SQLAlchemyError as exc:
        _err(f"campaigns: database error: {str(exc).splitlines()[0]}")
        sys.exit(EXIT_ERROR)
    except RedisError as exc:  # e.g. the domain rate limits' counts, when Redis went away
        lines = str(exc).strip().splitlines()
        _err(f"campaigns: Redis error: {lines[0] if lines else type(exc).__name__}")
        sys.exit(EXIT_ERROR)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``campaigns`` console script."""
    try:
        with _errors():
            cli.main(args=argv, prog_name="campaigns", standalone_mode=False)
    except click.exceptions.Abort:
        _err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:
        if os.environ.get("CAMPAIGNS_DEBUG"):
            raise
        _err(
            f"campaigns: internal error: {type(exc).__name__}: {exc} (set CAMPAIGNS_DEBUG=1 for the traceback)"
        )
        sys.exit(EXIT_INTERNAL)
