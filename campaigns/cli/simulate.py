"""A dry run: move a clock forward over a journey and report, day by day, who would get which
step. Nothing is sent and nothing is written.

The engine runs for real (segments, enrolment, waits, branches, sending windows, the
frequency cap against what was really sent before) but against a throw-away copy of the
state: a backup of the SQLite file in a temporary folder, or, on PostgreSQL, one outer
transaction that is rolled back at the end. The services are built as a dry run
(:func:`campaigns.services.build`): email goes to a recording transport, webhooks to a
recording stand-in, and Redis is never connected to. Only the journey asked for runs: the
others are paused in the copy and their enrollments parked, and only its own steps are
reported.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine as SAEngine
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from campaigns import config as settings
from campaigns.channels.transports import RecordingTransport
from campaigns.clock import FakeClock
from campaigns.content.project import Project
from campaigns.engine.audience import count
from campaigns.engine.deploy import deploy
from campaigns.engine.leases import RUNNABLE
from campaigns.exceptions import UnknownJourney
from campaigns.journeys.parse import read_source
from campaigns.services import build
from campaigns.store.db import make_engine, make_sessionmaker
from campaigns.store.enums import JourneyStatus, MessageStatus
from campaigns.store.models import Enrollment, InAppMessage, Message, Task
from campaigns.store.models import Journey as JourneyRow

__all__ = ["Day", "RecordingTransport", "Simulation", "simulate"]

REPORTED = (MessageStatus.SENT, MessageStatus.SUPPRESSED, MessageStatus.BOUNCED)
"""Message states a day reports as a step taken (a deferred one is counted as held back)."""


@dataclass
class Day:
    number: int
    date: date
    steps: Counter[str] = field(default_factory=Counter)  # "step (channel)" -> count
    who: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    deferred: int = 0
    entered: int = 0


@dataclass
class Simulation:
    journey: str
    segments: dict[str, int]
    days: list[Day]


@contextmanager
def _scratch(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a copy of the state that is thrown away afterwards."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="campaigns-simulate-") as folder:
            copy = Path(folder) / "simulate.db"
            source_path = url.database or ""
            if source_path and Path(source_path).exists():
                # Read-only: the real file is only read, whatever happens here.
                source_uri = f"{Path(source_path).resolve().as_uri()}?mode=ro"
                with (
                    closing(sqlite3.connect(source_uri, uri=True)) as source,
                    closing(sqlite3.connect(copy)) as target,
                ):
                    source.backup(target)
            engine = make_engine(f"sqlite:///{copy}")
            try:
                yield make_sessionmaker(engine)
            finally:
                engine.dispose()
        return
    database: SAEngine = make_engine(database_url)
    try:
        with database.connect() as connection:
            outer = connection.begin()
            try:
                yield sessionmaker(
                    bind=connection,
                    join_transaction_mode="create_savepoint",
                    expire_on_commit=False,
                )
            finally:
                outer.rollback()
    finally:
        database.dispose()


@dataclass
class _Seen:
    """What the report has shown of the journey, so each row is reported on one day only:
    rows older than the run (``floor``) are never shown."""

    journey_id: int
    messages_floor: int
    tasks_after: int
    in_app_after: int
    messages: set[int] = field(default_factory=set)


def simulate(
    cfg: settings.Config, journey_ref: str, days: int, start: datetime, *, steps_per_day: int = 24
) -> Simulation:
    """Run ``journey_ref`` (a deployed journey's id, or a journey file) for ``days`` days."""
    with _scratch(cfg.database_url) as sessions:
        clock = FakeClock(start)
        services = build(cfg, clock, sessions=sessions, dry_run=True)
        try:
            project, engine = services.project, services.engine
            key = _journey_key(project, sessions, journey_ref)
            with sessions() as session, session.begin():
                seen, version_id = _only(session, key)
                sizes = {
                    c.name: c.contacts for c in count(session, project.segments(), start.date())
                }
                journey = engine.journey(session, version_id)
            report = Simulation(key, {name: sizes.get(name, 0) for name in journey.segments}, [])
            for number in range(1, days + 1):
                day = Day(number, clock.now().date())
                for _ in range(steps_per_day):
                    result = engine.tick()
                    day.entered += sum(result.entered.values())
                    clock.advance(timedelta(hours=24 / steps_per_day))
                with sessions() as session:
                    _collect(session, seen, day)
                report.days.append(day)
        finally:
            services.close()
    return report


def _only(session: Session, key: str) -> tuple[_Seen, int]:
    """Make ``key`` the one journey that runs in the copy: the others are paused (nobody
    enters them) and their runnable enrollments parked (no claim takes a row without a
    ``next_run_at``). Returns what the report starts from and the journey's version id."""
    journey_id, version_id = session.execute(
        select(JourneyRow.id, JourneyRow.current_version_id).where(JourneyRow.key == key)
    ).one()
    if version_id is None:
        raise UnknownJourney(f"journey '{key}' has no deployed version; deploy it first")
    session.execute(
        update(JourneyRow).where(JourneyRow.id != journey_id).values(status=JourneyStatus.PAUSED)
    )
    session.execute(
        update(JourneyRow).where(JourneyRow.id == journey_id).values(status=JourneyStatus.LIVE)
    )
    session.execute(
        update(Enrollment)
        .where(Enrollment.journey_id != journey_id, Enrollment.state.in_(RUNNABLE))
        .values(next_run_at=None)
    )
    seen = _Seen(
        journey_id,
        messages_floor=session.scalar(select(func.max(Message.id))) or 0,
        tasks_after=session.scalar(select(func.max(Task.id))) or 0,
        in_app_after=session.scalar(select(func.max(InAppMessage.id))) or 0,
    )
    return seen, version_id


def _collect(session: Session, seen: _Seen, day: Day) -> None:
    """Add to ``day`` the journey's messages, tasks and in-app messages of the run that no
    earlier day showed."""
    messages = session.scalars(
        select(Message).where(
            Message.journey_id == seen.journey_id, Message.id > seen.messages_floor
        )
    )
    for message in messages:
        if message.id in seen.messages:
            continue
        if message.status in REPORTED:
            seen.messages.add(message.id)
            status = "" if message.status == MessageStatus.SENT else f", {message.status}"
            label = f"{message.step_id} ({message.channel}{status})"
            day.steps[label] += 1
            day.who[label].append(message.to_address or "")
        elif message.status == MessageStatus.DEFERRED:
            day.deferred += 1
    for task in session.scalars(
        select(Task).where(Task.journey_id == seen.journey_id, Task.id > seen.tasks_after)
    ):
        seen.tasks_after = max(seen.tasks_after, task.id)
        day.steps[f"{task.step_id} (task for {task.owner_email or 'unassigned'})"] += 1
    for item in session.scalars(
        select(InAppMessage).where(
            InAppMessage.journey_id == seen.journey_id, InAppMessage.id > seen.in_app_after
        )
    ):
        seen.in_app_after = max(seen.in_app_after, item.id)
        day.steps[f"{item.step_id} (in_app)"] += 1


def _journey_key(project: Project, sessions: sessionmaker[Session], ref: str) -> str:
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") and path.exists():
        checked = project.check([path])
        if checked.problems:
            from campaigns.exceptions import JourneyError

            raise JourneyError(checked.problems)
        if not checked.journeys:  # segments.yaml, triggers.yaml, scorecards.yaml
            raise UnknownJourney(f"{path}: holds no journey; name a journey's file or key")
        journey, _ = checked.journeys[0]
        with sessions() as session, session.begin():
            deploy(session, journey, read_source(path), str(path))
        return journey.key
    with sessions() as session:
        keys = list(session.scalars(select(JourneyRow.key)))
    if ref not in keys:
        from campaigns.journeys.expressions import suggest

        hint = suggest(ref, keys)
        raise UnknownJourney(
            f"no deployed journey '{ref}'"
            + (f"; {hint}" if hint else "; deploy it first, or name its file")
        )
    return ref
