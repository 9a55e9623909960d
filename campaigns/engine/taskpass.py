"""The people's part of a tick: open the tasks the trigger points call for, escalate the
overdue ones, queue the daily digests, and send what that mail is due.

One call from :meth:`campaigns.engine.core.Engine.tick`; each step is its own transaction,
so a failure in one (a broken ``triggers.yaml``: logged, the file's triggers skipped) stops
none of the others. See :mod:`campaigns.engine.triggers` and :mod:`campaigns.engine.taskmail`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from campaigns.channels import owner as owner_mail
from campaigns.channels.owner import OwnerMail
from campaigns.engine import taskmail, triggers
from campaigns.engine.results import TaskPassResult
from campaigns.engine.settings import EngineSettings
from campaigns.exceptions import JourneyError
from campaigns.journeys.segments import SegmentSet
from campaigns.journeys.triggers import TriggerSet

log = logging.getLogger("campaigns.tasks")


def run(
    sessions: sessionmaker[Session],
    now: datetime,
    channel: OwnerMail,
    load: Callable[[], TriggerSet] | None,
    segments: SegmentSet,
    settings: EngineSettings,
) -> TaskPassResult:
    """One pass (see the module's text)."""
    result = TaskPassResult()
    found = TriggerSet()
    if load is not None:
        try:
            found = load()
        except JourneyError as exc:
            log.error("the triggers file has problems; its triggers are skipped:\n%s", exc)
    place = taskmail.Place(
        time_zone=settings.task_time_zone,
        digest_hour=settings.task_digest_hour,
        default_locale=found.locale,
        escalation=found.escalation,
    )
    with sessions() as session, session.begin():
        result.opened = triggers.fire(
            session,
            found,
            segments,
            now,
            time_zone=settings.task_time_zone,
            currencies=settings.currencies,
        )
    if channel.available():
        with sessions() as session, session.begin():
            result.notices = taskmail.queue_notices(session, now, place)
    with sessions() as session, session.begin():
        result.escalations = taskmail.escalate(session, now, place)
    if channel.has(owner_mail.DIGEST_TEMPLATE):
        with sessions() as session, session.begin():
            result.digests = taskmail.queue_digests(session, now, place)
    result.sent, result.failed = taskmail.deliver(sessions, now, channel, place)
    return result
