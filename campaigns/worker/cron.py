"""The project's schedule for RQ's cron scheduler: ``rq cron campaigns/worker/cron.py`` loads the
registrations below; ``worker.py`` applies the same with :func:`schedule`."""

from __future__ import annotations

from typing import Any

from rq import cron

from campaigns import defaults
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

PURGE_CONSENT = {
    "queue_name": QUEUE_NAMES[0],
    "interval": 86_400,  # daily: retention counts in days
    "job_timeout": 600,
    "name": "campaigns-purge-consent",
}

cron.register(jobs.tick, **TICK)  # type: ignore[arg-type]
cron.register(jobs.dispatch, **DISPATCH)  # type: ignore[arg-type]
cron.register(jobs.purge_consent, **PURGE_CONSENT)  # type: ignore[arg-type]


def schedule(scheduler: Any) -> None:
    scheduler.register(jobs.tick, **TICK)
    scheduler.register(jobs.dispatch, **DISPATCH)
    scheduler.register(jobs.purge_consent, **PURGE_CONSENT)
