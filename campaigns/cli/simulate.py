"""A dry run: move a clock forward over a journey and report, day by day, who would get which
step. Nothing is sent and nothing is written.

The engine runs for real (segments, enrolment, waits, branches, sending windows, the
frequency cap against what was really sent before) but against a throw-away copy of the
state: a backup of the SQLite file, or, on PostgreSQL, one outer transaction that is rolled
back at the end. Email goes to a recording transport.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as SAEngine
from sqlalchemy import select, true
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from campaigns import config as settings
from campaigns.clock import FakeClock
from campaigns.content.project import Project
from campaigns.engine.audience import count
from campaigns.engine.deploy import deploy
from campaigns.exceptions import UnknownJourney
from campaigns.journeys.parse import read_source
from campaigns.services import build
from campaigns.store.db import make_engine, make_sessionmaker
from campaigns.store.enums import JourneyStatus, MessageStatus
from campaigns.store.models import InAppMessage, Message, Task
from campaigns.store.models import Journey as JourneyRow


class RecordingTransport:
    """Keeps what would have been sent; sends nothing."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, mail: Any) -> None:
        self.sent.append(mail)

    def abort(self) -> None:
        """Nothing is in flight: every send is a list append."""

    def close(self) -> None:
        self.sent.clear()


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
                with sqlite3.connect(source_path) as source, sqlite3.connect(copy) as target:
                    source.backup(target)
            engine = make_engine(f"sqlite:///{copy}")
            yield make_sessionmaker(engine)
            engine.dispose()
        return
    database: SAEngine = make_engine(database_url)
    with database.connect() as connection:
        outer = connection.begin()
        try:
            yield sessionmaker(
                bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
        finally:
            outer.rollback()
    database.dispose()


def simulate(
    cfg: settings.Config, journey_ref: str, days: int, start: datetime, *, steps_per_day: int = 24
) -> Simulation:
    """Run ``journey_ref`` (a deployed journey's id, or a journey file) for ``days`` days."""
    with _scratch(cfg.database_url) as sessions:
        clock = FakeClock(start)
        transport = RecordingTransport()
        services = build(cfg, clock, sessions=sessions, transport=transport, dry_run=True)
        project, engine = services.project, services.engine
        segset = project.segments()
        key = _journey_key(project, sessions, journey_ref)
        with sessions() as session, session.begin():
            # Only this journey runs in the dry run.
            for row in session.scalars(select(JourneyRow)):
                row.status = JourneyStatus.ACTIVE if row.key == key else JourneyStatus.PAUSED
            sizes = {c.name: c.contacts for c in count(session, segset, start.date())}
            version_id = session.scalars(
                select(JourneyRow.current_version_id).where(JourneyRow.key == key)
            ).one()
            assert version_id is not None
            journey = engine.journey(session, version_id)
        report = Simulation(key, {name: sizes.get(name, 0) for name in journey.segments}, [])
        seen_messages: set[int] = set()
        seen_tasks: set[int] = set()
        seen_in_app: set[int] = set()
        for number in range(1, days + 1):
            day = Day(number, clock.now().date())
            for _ in range(steps_per_day):
                result = engine.tick()
                day.entered += sum(result.entered.values())
                clock.advance(timedelta(hours=24 / steps_per_day))
            with sessions() as session:
                for message in session.scalars(
                    select(Message).where(
                        Message.id.not_in(seen_messages) if seen_messages else true()
                    )
                ):
                    if message.status in (
                        MessageStatus.SENT,
                        MessageStatus.SUPPRESSED,
                        MessageStatus.BOUNCED,
                    ):
                        seen_messages.add(message.id)
                        status = (
                            "" if message.status == MessageStatus.SENT else f", {message.status}"
                        )
                        label = f"{message.step_id} ({message.channel}{status})"
                        day.steps[label] += 1
                        day.who[label].append(message.to_address or "")
                    elif message.status == MessageStatus.DEFERRED:
                        day.deferred += 1
                for task in session.scalars(
                    select(Task).where(Task.id.not_in(seen_tasks) if seen_tasks else true())
                ):
                    seen_tasks.add(task.id)
                    label = f"{task.step_id} (task for {task.owner_email or 'unassigned'})"
                    day.steps[label] += 1
                for item in session.scalars(
                    select(InAppMessage).where(
                        InAppMessage.id.not_in(seen_in_app) if seen_in_app else true()
                    )
                ):
                    seen_in_app.add(item.id)
                    day.steps[f"{item.step_id} (in_app)"] += 1
            report.days.append(day)
        transport.close()
    return report


def _journey_key(project: Project, sessions: sessionmaker[Session], ref: str) -> str:
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") and path.exists():
        checked = project.check([path])
        if checked.problems:
            from campaigns.exceptions import JourneyError

            raise JourneyError(checked.problems)
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
