"""The project's schedule for RQ's cron scheduler: ``rq cron campaigns/worker/cron.py`` loads the
registrations below; ``worker.py`` applies the same with :func:`schedule`."""

from __future__ import annotations

import os
from typing import Any

from rq import cron

from campaigns import config as settings
from campaigns import defaults
from campaigns.exceptions import ConfigError
from campaigns.queue import QUEUE_NAMES
from campaigns.worker import jobs

TICK_SECONDS = 60
"""How often the scheduler pass runs. Waits are minutes to days long; a minute is plenty."""

TICK = {
    "queue_name": QUEUE_NAMES[0],
    "interval": TICK_SECONDS,
    "job_timeout": 900,
    "name": "campaigns-tick",
}
DISPATCH = {
    "queue_name": QUEUE_NAMES[0],
    "interval": defaults.DISPATCH_SECONDS,
    "job_timeout": 60,
    "result_ttl": 60,
    "name": "campaigns-dispatch",
}

EVENTS = {
    "queue_name": QUEUE_NAMES[0],
    "interval": defaults.EVENT_DELIVER_SECONDS,
    "job_timeout": 60,
    "result_ttl": 60,
    "name": "campaigns-events",
}
"""Posting the outgoing events; registered only when ``EVENT_SUBSCRIBERS`` names any."""


def subscribed(cfg: settings.Config | None = None) -> bool:
    """Whether the settings (default: the environment's) name event subscribers."""
    if cfg is not None:
        return bool(cfg.event_subscribers)
    try:  # only this setting: loading them all could write the instance's secret
        return bool(settings.parse_subscribers(os.environ.get("EVENT_SUBSCRIBERS") or ""))
    except ConfigError:  # the worker refuses such settings itself, in one line
        return False


PURGE_CONSENT = {
    "queue_name": QUEUE_NAMES[0],
    "interval": 86_400,  # daily: retention counts in days
    "job_timeout": 600,
    "name": "campaigns-purge-consent",
}

cron.register(jobs.tick, **TICK)  # type: ignore[arg-type]
cron.register(jobs.dispatch, **DISPATCH)  # type: ignore[arg-type]
cron.register(jobs.purge_consent, **PURGE_CONSENT)  # type: ignore[arg-type]
if subscribed():
    cron.register(jobs.deliver_events, **EVENTS)  # type: ignore[arg-type]


def schedule(scheduler: Any, cfg: settings.Config | None = None) -> None:
    scheduler.register(jobs.tick, **TICK)
    scheduler.register(jobs.dispatch, **DISPATCH)
    scheduler.register(jobs.purge_consent, **PURGE_CONSENT)
    if subscribed(cfg):
        scheduler.register(jobs.deliver_events, **EVENTS)
