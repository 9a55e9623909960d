"""RQ jobs: plain functions RQ imports by name, and the rule for how many to ask for.

- :func:`tick`, every minute (RQ's cron, :mod:`campaigns.worker.cron`): enrol new entrants,
  ask for advance jobs for the due work, roll the report counts up.
- :func:`dispatch`, every :data:`~campaigns.defaults.DISPATCH_SECONDS`: ask for advance jobs
  for due work that no job is queued for (a worker died; Redis was flushed or restarted).
- :func:`deliver_events`, every :data:`~campaigns.defaults.EVENT_DELIVER_SECONDS` when
  ``EVENT_SUBSCRIBERS`` names any: post the due outgoing events (:mod:`campaigns.engine.hooks`).
- :func:`advance`: claim due enrollments a send batch at a time and advance them, for up to
  :data:`~campaigns.defaults.JOB_BUDGET_SECONDS`; then hand what is left to a fresh job.

Advance jobs carry no enrollment ids: each claims its own work when it starts, so a lost,
duplicated or retried job costs nothing. Each worker process builds its engine once
(database pool, compiled templates, one SMTP connection) with the composition root and
reuses it for every job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

from redis import Redis
from rq import Queue, Retry, Worker

from campaigns import config as settings
from campaigns import defaults
from campaigns.engine.core import Engine
from campaigns.engine.hooks import Deliverer
from campaigns.queue import QUEUE_NAMES

ADVANCE_QUEUE = QUEUE_NAMES[1]
"""Advance jobs have this queue to themselves, so its length says how many are waiting."""

RETRY = Retry(max=3, interval=[5, 15, 60])
"""An advance job that fails on an outage (the database or Redis away, a lost lease) is tried
again after 5 s, 15 s and a minute; the dispatcher asks for new ones meanwhile anyway."""


@dataclass(frozen=True)
class Runtime:
    config: settings.Config
    connection: Redis
    engine: Engine
    deliverer: Deliverer


@cache
def runtime() -> Runtime:
    """This worker process's engine, built on the first job (by the composition root,
    :func:`campaigns.services.build`) and kept for every later one: jobs are plain functions
    RQ calls by name, so the process is where their engine lives. Nothing replaces it."""
    from campaigns.queue import connect
    from campaigns.services import build

    cfg = settings.load()
    connection = connect(cfg)
    services = build(
        cfg,
        redis=connection,
        dispatch=lambda wanted: enqueue_advance(connection, cfg, wanted),
    )
    return Runtime(cfg, connection, services.engine, services.deliverer)


def enqueue_advance(connection: Redis, cfg: settings.Config, wanted: int) -> int:
    """Ask for advance jobs for ``wanted`` send batches of due work: at most one waiting per
    worker, counting those already waiting (running ones go on claiming by themselves).
    Returns how many were enqueued."""
    queue = Queue(ADVANCE_QUEUE, connection=connection)
    workers = max(1, Worker.count(connection=connection, queue=queue))
    missing = min(wanted, workers) - queue.count
    if missing <= 0:
        return 0
    queue.enqueue_many(
        [
            Queue.prepare_data(
                advance,
                timeout=cfg.job_timeout,
                retry=RETRY,
                result_ttl=600,
                failure_ttl=7 * 86_400,
                description="campaigns advance",
            )
            for _ in range(missing)
        ]
    )
    return missing


def budget(cfg: settings.Config) -> float:
    """Seconds an advance job works before it hands over: well inside RQ's timeout."""
    return float(min(defaults.JOB_BUDGET_SECONDS, cfg.job_timeout / 2))


def advance() -> dict[str, int]:
    """Claim and advance due enrollments until none is due or the budget is spent; then ask
    for a fresh job if work was left. Returns the counts for the job's result."""
    rt = runtime()
    result = rt.engine.work(deadline=time.monotonic() + budget(rt.config))
    if result.more:
        enqueue_advance(rt.connection, rt.config, 1)
    return {
        "claims": result.claims,
        "advanced": result.advanced,
        "sent": result.sent,
        "deferred": result.deferred,
        "failed": result.failed,
        "finished": result.finished,
    }


def dispatch() -> dict[str, int]:
    """Ask for advance jobs for the due work (see :func:`enqueue_advance`)."""
    due, asked = runtime().engine.dispatch_due()
    return {"due": due, "enqueued": asked}


def tick() -> dict[str, int]:
    """One scheduler pass: enrol, ask for advance jobs, roll up the report counts."""
    result = runtime().engine.tick()
    return {"entered": sum(result.entered.values()), "due": result.due, "enqueued": result.batches}


def deliver_events() -> dict[str, int]:
    """Post the due outgoing events, claim after claim, for up to the job's budget. A job
    that dies mid-way loses nothing: its claims run out and the next job takes them."""
    rt = runtime()
    if not rt.config.event_subscribers:
        return {"claimed": 0}
    deadline = time.monotonic() + max(1.0, defaults.EVENT_DELIVER_SECONDS * 6 - 5)
    result = rt.deliverer.run(deadline=deadline)
    return {
        "claimed": result.claimed,
        "delivered": result.delivered,
        "retried": result.retried,
        "dead": result.dead,
        "deferred": result.deferred,
    }


def purge_consent() -> dict[str, int]:
    """Daily: delete the consent records the retention rule lets go (erased contacts, last
    send more than ``CONSENT_RETENTION_DAYS`` ago; :func:`campaigns.store.consent.purge`)."""
    from datetime import timedelta

    from campaigns.store import consent

    run = runtime()
    keep = timedelta(days=run.config.consent_retention_days)
    with run.engine.sessions() as session, session.begin():
        done = consent.purge(session, run.engine.clock.now(), keep)
    return {"deleted": done.deleted, "kept": done.kept}
